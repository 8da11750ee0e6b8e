"""AdvUnlearn: erasure trained against the prompts that would bring the concept back (Zhang, Jia, Chen,
Liu et al., NeurIPS 2024, "Defensive Unlearning with Adversarial Training for Robust Concept Erasure
in Diffusion Models"; OPTML-Group/AdvUnlearn, train-scripts/AdvUnlearn.py).

A min-max game on the *text encoder*, with the UNet left as it is:

- inner step (the attack): a prefix of `prefix` word embeddings, free vectors in the token-embedding
  space, is put before the concept's prompt and optimised so that the UNet, reading it through the
  encoder being trained, predicts the noise the original model predicts for the plain concept
  prompt: min over the prefix of |eps(x_t, E'(prefix + c)) - eps_0(x_t, E0(c))|^2, with x_t drawn as
  in ESD (DDIM from noise toward the concept, stopped at a random step). Adam at `attack_lr` for
  `attack_steps` steps ("pgd"), or on the gradient's sign ("fast-at", the paper's cheaper variant);
- outer step (the erasure): ESD's objective on the adversarial prompt, |eps(x_t, E'(prefix + c)) -
  [eps_0(x_t) - eta (eps_0(x_t, c) - eps_0(x_t))]|^2, plus `retain_weight` times the utility term
  |eps(x_t', E'(r)) - eps_0(x_t', E0(r))|^2 on a batch of prompts to keep (the authors' COCO object
  prompts; here the model's other styles, or `preserve`). Before `warmup` of the iterations have
  passed, the plain concept prompt stands in for the adversarial one.

The paper's finding is that the text encoder is the place to do this: it keeps the utility of the
model better than the UNet under adversarial training, and the erased encoder can be put on other
models that share it. Trained are the encoder's transformer layers and final layer norm, not its
embeddings (`text_encoder_full`, component `all`). The edit holds those tensors under
"text_encoder." and loads like every edit; exported, it is a whole model with the new encoder.

Defaults are the authors' (README's command for nudity, which the style runs share): 1000
iterations, Adam lr 1e-5, 50 DDIM steps, start guidance 3, eta 1, warm-up 200 iterations, one
prefix token drawn at random, 30 attack steps at lr 1e-3 each iteration, retain weight 0.3 on 5
prompts. Deviations: the warm-up is a fraction of the iterations (0.2), so that it scales with a
model's declared iteration count; the attack's gradient is cleared before each step (the authors'
loop never clears it, so its Adam sees running sums); x_t is taken at the DDIM timestep itself
rather than a random DDPM step inside its interval, as this project's ESD does; the concept's and
the retained prompts' latents come from one batched sampling call. A model may declare its own
iterations and DDIM steps (esd_iterations, esd_ddim_steps, shared with ESD), rate
(learning_rates "advunlearn") and any other setting (erase_settings "advunlearn"; mini declares
fewer attack steps). One text encoder only (Stable Diffusion 1.x, 2.x); SDXL is refused.
"""
from __future__ import annotations

import contextlib
import copy
import re
import time
from dataclasses import dataclass

import torch

from ..errors import ArtshieldError
from ..models.weights import Edit, base_fields, text_name
from ..options import AT_LEAST_ONE, FRACTION, POSITIVE, Limit, seeded
from .attacks import context_with_rows, frozen, prefix_ids, text_model_of, word_ids
from .base import EraseConfig, Eraser, check_concepts, concept_prompts, config_dict, preserve_prompts, register
from .esd import PAPER_DDIM_STEPS, PAPER_ITERATIONS, esd_target, sample_until

PAPER_LR = 1e-5
PAPER_ATTACK_STEPS = 30
DECLARABLE = ("iterations", "lr", "ddim_steps", "attack_steps")   # what a model's erase_settings may set
# the text encoder's transformer layers and final layer norm, not its embeddings (text_encoder_full)
TRAINED = re.compile(r"^text_model\.(encoder|final_layer_norm)\.")   # names as weight files write them


@dataclass
class AdvUnlearnConfig(EraseConfig):
    eta: float = 1.0                  # negative guidance of ESD's target
    iterations: int | None = None     # None: the model's declared, else 1000
    lr: float | None = None           # None: the model's rate for advunlearn, else 1e-5
    ddim_steps: int | None = None     # None: the model's esd_ddim_steps, else 50
    start_guidance: float = 3.0
    warmup: float = 0.2               # fraction of the iterations before the first attack (200 of 1000)
    prefix: int = 1                   # adversarial tokens before the prompt (adv_prompt_num)
    attack_steps: int | None = None   # None: the model's declared, else 30
    attack_lr: float = 1e-3
    attack_method: str = "pgd"        # "pgd": Adam on the gradient; "fast-at": Adam on its sign
    attack_init: str = "random"       # "random": a fresh random token each round; "latest": the last prefix
    retain_weight: float = 0.3
    retain_batch: int = 5
    preserve: list[str] | None = None  # prompts to keep; None: the model's other styles

    limits = {**EraseConfig.limits, "eta": Limit(0, 100, low_open=True), "iterations": Limit(1, 1_000_000),
              "lr": POSITIVE, "ddim_steps": Limit(2, 1000), "start_guidance": Limit(0, 100), "warmup": FRACTION,
              "prefix": Limit(1, 16), "attack_steps": Limit(0, 10_000), "attack_lr": POSITIVE,
              "retain_weight": Limit(0), "retain_batch": AT_LEAST_ONE}

    def __post_init__(self):
        super().__post_init__()
        if self.attack_method not in ("pgd", "fast-at"):
            raise ValueError(f"attack_method must be pgd or fast-at, not {self.attack_method!r}")
        if self.attack_init not in ("random", "latest"):
            raise ValueError(f"attack_init must be random or latest, not {self.attack_init!r}")
        if self.preserve is not None and (isinstance(self.preserve, str) or
                                          not all(isinstance(p, str) for p in self.preserve)):
            raise ValueError("preserve must be a list of prompts")


def adversarial_rows(loss_of, rows: torch.Tensor, steps: int, lr: float, method: str = "pgd"):
    """The inner attack: `steps` Adam steps on `rows` (free token embeddings) that lower `loss_of(rows)`,
    on the gradient ("pgd") or its sign ("fast-at"). Returns the rows, detached, and the losses seen."""
    rows = rows.detach().clone().requires_grad_(True)
    attack = torch.optim.Adam([rows], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of(rows)
        attack.zero_grad(set_to_none=True)
        grad = torch.autograd.grad(loss, rows)[0]
        rows.grad = grad.sign() if method == "fast-at" else grad
        attack.step()
        losses.append(float(loss.detach()))
    return rows.detach(), losses


@register("advunlearn")
class AdvUnlearn(Eraser):
    Config = AdvUnlearnConfig

    def settings(self) -> dict:
        """The config with every unset value filled: the model's declared settings, else the paper's."""
        cfg, conv = self.config, self.bundle.conventions
        declared = dict(conv.erase_settings.get(self.name, {}))
        unknown = sorted(set(declared) - set(DECLARABLE))
        if unknown:
            raise ArtshieldError(f"the model declares advunlearn settings it may not set: {', '.join(unknown)} "
                                 f"(a model may declare {', '.join(DECLARABLE)})")
        out = config_dict(cfg)
        for key in DECLARABLE:
            if out[key] is None:
                out[key] = declared.get(key)
        out["iterations"] = int(out["iterations"] or conv.esd_iterations or PAPER_ITERATIONS)
        out["lr"] = float(out["lr"] or conv.learning_rate(self.name, PAPER_LR))
        out["ddim_steps"] = int(out["ddim_steps"] or conv.esd_ddim_steps or PAPER_DDIM_STEPS)
        out["attack_steps"] = int(PAPER_ATTACK_STEPS if out["attack_steps"] is None else out["attack_steps"])
        return out

    def total_steps(self, n_concepts: int) -> int:
        return self.settings()["iterations"]

    def run(self, concepts: list[str], generator: torch.Generator | None = None, progress=None) -> Edit:
        check_concepts(concepts)
        bundle = self.bundle
        if bundle.is_sdxl:
            raise ArtshieldError("advunlearn trains one text encoder (Stable Diffusion 1.x, 2.x); SDXL has two and "
                                 "is not supported yet: use esd-x, uce or rece")
        s = self.settings()
        start = time.time()
        g = seeded(generator, s["seed"])
        dev = bundle.device
        encoder = copy.deepcopy(bundle.text_encoder).float().eval().requires_grad_(False)
        params = dict(encoder.named_parameters())
        names = [n for n in params if TRAINED.match(text_name(n))]
        if not names:
            raise ArtshieldError("this text encoder has no transformer layers named encoder.layers.* "
                                 "(is it a transformers CLIPTextModel?)")
        trained = [params[n].requires_grad_(True) for n in names]

        prompts = [p for group in concept_prompts(concepts, self.templates()) for p in group]
        keep = preserve_prompts(bundle, concepts, s["preserve"])
        with torch.no_grad():      # what the original model reads: the bundle's own encoder
            original = bundle.embed(prompts).float()
            uncond = bundle.embed([""]).float()
            kept = bundle.embed(keep).float() if keep else None
        ids = [prefix_ids(bundle, p, s["prefix"]) for p in prompts]
        plain = [bundle.tokenize([p]) for p in prompts]
        keep_ids = bundle.tokenize(keep) if keep else None
        table = text_model_of(encoder).embeddings.token_embedding.weight
        vocab = torch.as_tensor(word_ids(bundle.tokenizer))

        sampler = bundle.sampler()
        sampler.set_timesteps(s["ddim_steps"], device=dev)
        unet = bundle.unet
        channels, side = unet.config.in_channels, int(unet.config.sample_size)
        autocast = (torch.autocast(dev.type, dtype=bundle.dtype) if bundle.dtype != torch.float32
                    else contextlib.nullcontext())
        opt = torch.optim.Adam(trained, lr=s["lr"])
        warmup = int(round(s["warmup"] * s["iterations"]))
        R = min(s["retain_batch"], len(keep)) if s["retain_weight"] > 0 and keep else 0
        order, at = torch.randperm(len(keep), generator=g) if R else None, 0
        rows = None
        losses, attack_losses, retain_losses = [], [], []

        def latents(contexts: torch.Tensor, k: int) -> torch.Tensor:
            """x_t after k DDIM steps toward each row of `contexts`, under the original model."""
            z = torch.randn(len(contexts), channels, side, side, generator=g).to(dev) * sampler.init_noise_sigma
            both = torch.cat([uncond.expand(len(contexts), -1, -1), contexts])
            with torch.no_grad(), autocast:
                return sample_until(bundle, unet, sampler, z, both, k, s["start_guidance"])

        def predict(z, t, context):
            with autocast:
                return unet(z, t, encoder_hidden_states=context).sample.float()

        with frozen(unet):
            for it in range(s["iterations"]):
                j = it % len(prompts)
                if it >= warmup and s["attack_steps"] > 0:      # the inner attack: a prefix that undoes the erasure
                    if rows is None or s["attack_init"] == "random":
                        picked = vocab[torch.randint(0, len(vocab), (s["prefix"],), generator=g)]
                        rows = table[picked.to(table.device)].detach().clone()

                    def undo(candidate, j=j):
                        """How far the erased model, reading the prefix, is from the original's concept."""
                        k = int(torch.randint(0, s["ddim_steps"] - 1, (1,), generator=g))
                        z = latents(original[j:j + 1], k)
                        t = sampler.timesteps[k]
                        with torch.no_grad():
                            e_p = predict(z, t, original[j:j + 1])
                        return (predict(z, t, context_with_rows(encoder, ids[j], candidate)) - e_p).pow(2).mean()

                    rows, found = adversarial_rows(undo, rows, s["attack_steps"], s["attack_lr"], s["attack_method"])
                    attack_losses += found
                k = int(torch.randint(0, s["ddim_steps"] - 1, (1,), generator=g))
                if R:
                    if at + R > len(keep):
                        order, at = torch.randperm(len(keep), generator=g), 0
                    chosen = order[at:at + R]
                    at += R
                    z = latents(torch.cat([original[j:j + 1], kept[chosen]]), k)
                else:
                    z = latents(original[j:j + 1], k)
                t = sampler.timesteps[k]
                with torch.no_grad():
                    e_0 = predict(z[:1], t, uncond)
                    e_p = predict(z[:1], t, original[j:j + 1])
                    target = esd_target(e_0, e_p, s["eta"])
                    if R:
                        kept_target = predict(z[1:], t, kept[chosen])
                context = (context_with_rows(encoder, ids[j], rows) if it >= warmup and rows is not None
                           else encoder(plain[j])[0])
                loss = (predict(z[:1], t, context) - target).pow(2).mean()
                if R:
                    retain = (predict(z[1:], t, encoder(keep_ids[chosen])[0]) - kept_target).pow(2).mean()
                    retain_losses.append(float(retain.detach()))
                    loss = loss + s["retain_weight"] * retain
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if progress is not None:
                    progress(1)

        def tail(values):
            part = values[-max(1, len(values) // 10):]
            return round(sum(part) / len(part), 6) if part else None

        tensors = {f"text_encoder.{text_name(n)}": params[n].detach().float().cpu() for n in names}
        info = {"method": self.name, "concepts": list(concepts), "prompts": prompts, "preserve": keep,
                **base_fields(bundle), "config": s, "trained": "text encoder (transformer layers, final layer norm)",
                "trained_parameters": int(sum(params[n].numel() for n in names)), "warmup_iterations": warmup,
                "final_loss": tail(losses), "final_attack_loss": tail(attack_losses),
                "final_retain_loss": tail(retain_losses), "seconds": round(time.time() - start, 2)}
        return Edit(self.name, tensors, info)
