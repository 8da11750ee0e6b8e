"""ESD: Erasing Concepts from Diffusion Models (Gandikota, Materzynska, Fiotto-Kaufman, Bau; ICCV 2023).

The edited UNet's conditional prediction for a concept c is regressed onto a negatively guided
prediction of the frozen original model,

    target = eps*(x_t, t) - eta * (eps*(x_t, c, t) - eps*(x_t, t)),

with the MSE loss, on latents x_t that the model being edited samples itself: DDIM from pure noise,
conditioned on c with guidance `start_guidance`, stopped after a random number of steps. No images
are needed, only the concept's text. The target is an affine combination of model outputs whose
weights sum to one, so it means the same in epsilon and in v parameterisation: v-prediction
models (SD 2.x) are handled by the same line.

Variants differ only in the weights that train:
    esd-x         every cross-attention projection (attn2 q, k, v, out): prompt-specific; the
                  paper's choice for artists' styles and specific objects
    esd-u         every weight outside cross-attention, except the time embedding and the output
                  layer (as in the paper's script): global; for broad concepts such as nudity
    esd-x-strict  attn2 to_k and to_v only, the weights UCE edits

On SD3 and FLUX (a flow model's prediction is a velocity; the target is the same affine mix of
two of them) the groups are the attention projections of the blocks where text meets the image (the joint
blocks, both streams; FLUX's single-stream blocks too) (esd-x), the
text stream's key and value projections (esd-x-strict), and the rest of the blocks (esd-u): see
erase/base.py. x_t is sampled on the model's own flow schedule; FLUX, which has no unconditional
pass when it samples, is sampled conditionally under its embedded guidance, and its target uses
its prediction for the empty prompt as the unconditional one. No paper has validated ESD's
settings on these models.

Defaults are the paper's for SD 1.4 (eta 1, 1000 iterations, Adam at lr 1e-5, batch 1, 50 DDIM
steps, start guidance 3). The frozen model is not a second UNet: it is the same module called with
the original values of the trained tensors (torch.func.functional_call), so memory grows by one
copy of the trained tensors only (ESD-x on SD 1.x: 44M parameters; ESD-u: about 815M).

Scaling to another model. What matters is how far the trained weights move, roughly
iterations x lr relative to the scale the model was trained at. SD 1.4 was trained at lr 1e-4
and ESD uses a tenth of that for 1000 steps. A small model trained at a higher rate (mini: 3e-4,
on 64-image batches) declares its own rates (ModelConventions.learning_rates "esd-x", "esd-u"),
esd_iterations and esd_ddim_steps; they were measured on it (see docs/results/erase/).
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass

import torch
from torch.func import functional_call

from ..models.weights import Edit, base_fields
from ..options import POSITIVE, Limit, seeded
from ..sampling import schedule, start_noise_scale, step
from .base import EraseConfig, Eraser, check_concepts, concept_prompts, config_dict, register, select_parameters

VARIANT_GROUPS = {"esd-x": "cross-attention", "esd-u": "non-cross-attention", "esd-x-strict": "cross-attention-kv"}


@dataclass
class ESDConfig(EraseConfig):
    eta: float = 1.0                  # negative guidance strength; "ESD-u-3" in the paper is eta = 3
    iterations: int | None = None     # None: the model's esd_iterations if declared, else 1000
    lr: float | None = None           # None: the model's rate for the variant if declared, else 1e-5
    batch_size: int = 1
    ddim_steps: int | None = None     # the sampling schedule x_t is drawn from; None: the model's
                                      # esd_ddim_steps if declared, else 50
    start_guidance: float = 3.0       # guidance while sampling x_t from the edited model

    limits = {**EraseConfig.limits, "eta": Limit(0, 100, low_open=True), "iterations": Limit(1, 1_000_000),
              "lr": POSITIVE, "batch_size": Limit(1, 1024), "ddim_steps": Limit(2, 1000),
              "start_guidance": Limit(0, 100)}


def esd_target(e_uncond: torch.Tensor, e_cond: torch.Tensor, eta: float) -> torch.Tensor:
    """The frozen model's prediction guided away from the concept."""
    return e_uncond - eta * (e_cond - e_uncond)


PAPER_ITERATIONS, PAPER_LR, PAPER_DDIM_STEPS = 1000, 1e-5, 50


def sample_until(bundle, unet, sampler, z: torch.Tensor, both: torch.Tensor, k: int, guidance: float) -> torch.Tensor:
    """x_t after the first k DDIM steps of `sampler` from z, with classifier-free guidance on `both`
    (the unconditional contexts, then the conditional ones, one each per row of z): where ESD and
    AdvUnlearn draw the latents they train on. `unet` is the bundle's or a trainable copy of it. A
    flow model takes sampling.step's Euler steps (no step counter carries over from one draw to the
    next); FLUX, which has no unconditional pass, follows the conditional prediction under its
    embedded guidance."""
    for i, t in enumerate(sampler.timesteps[:k]):
        if not bundle.classifier_free:
            pred = unet(z, t, encoder_hidden_states=both[len(z):]).sample.float()
        else:
            e_u, e_c = unet(torch.cat([z, z]), t, encoder_hidden_states=both).sample.float().chunk(2)
            pred = e_u + guidance * (e_c - e_u)
        z = step(bundle, sampler, i, t, z, pred)[0] if bundle.is_flow else sampler.step(pred, t, z).prev_sample
    return z


class ESD(Eraser):
    Config = ESDConfig

    def settings(self) -> tuple[int, float, int]:
        """(iterations, lr, ddim_steps): the config's, else the model's declared ones, else the paper's."""
        cfg, conv = self.config, self.bundle.conventions
        iterations = cfg.iterations or conv.esd_iterations or PAPER_ITERATIONS
        lr = cfg.lr or conv.learning_rate(self.name, PAPER_LR)
        ddim_steps = cfg.ddim_steps or conv.esd_ddim_steps or PAPER_DDIM_STEPS
        return int(iterations), float(lr), int(ddim_steps)

    def total_steps(self, n_concepts: int) -> int:
        return self.settings()[0]

    def run(self, concepts: list[str], generator: torch.Generator | None = None, progress=None) -> Edit:
        check_concepts(concepts)
        cfg, bundle = self.config, self.bundle
        iterations, lr, ddim_steps = self.settings()
        start = time.time()
        g = seeded(generator, cfg.seed)
        dev = bundle.device
        # fp32 master weights; half-precision models run the forward passes under autocast
        unet = copy.deepcopy(bundle.unet).float().eval().requires_grad_(False)
        names = select_parameters(unet, VARIANT_GROUPS[self.name])
        params = dict(unet.named_parameters())
        trained = [params[n].requires_grad_(True) for n in names]
        original = {n: params[n].detach().clone() for n in names}

        prompts = [p for group in concept_prompts(concepts, self.templates()) for p in group]
        with torch.no_grad():
            contexts = bundle.embed(prompts).float()
            uncond = bundle.embed([""]).float()
        sampler = schedule(bundle, ddim_steps)
        channels, side, _ = bundle.latent_shape
        autocast = (torch.autocast(dev.type, dtype=bundle.dtype) if bundle.dtype != torch.float32
                    else contextlib.nullcontext())
        opt = torch.optim.Adam(trained, lr=lr)
        B = cfg.batch_size
        losses = []
        for it in range(iterations):
            ctx = contexts[it % len(prompts)][None].expand(B, -1, -1)
            both = torch.cat([uncond.expand(B, -1, -1), ctx])
            k = int(torch.randint(0, ddim_steps - 1, (1,), generator=g))   # DDIM steps before x_t
            z = torch.randn(B, channels, side, side, generator=g).to(dev) * start_noise_scale(sampler)
            with torch.no_grad(), autocast:
                z = sample_until(bundle, unet, sampler, z, both, k, cfg.start_guidance)
                t = sampler.timesteps[k]
                ref = functional_call(unet, original, (torch.cat([z, z]), t), {"encoder_hidden_states": both})
                e_u, e_c = ref.sample.float().chunk(2)
                target = esd_target(e_u, e_c, cfg.eta)
            with autocast:
                pred = unet(z, t, encoder_hidden_states=ctx).sample
            loss = (pred.float() - target).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(1)
        tail = losses[-max(1, len(losses) // 10):]
        tensors = {n: params[n].detach().float().cpu() for n in names}   # fp32, whatever the model's dtype
        info = {"method": self.name, "concepts": list(concepts), "prompts": prompts, **base_fields(bundle),
                "config": {**config_dict(cfg), "iterations": iterations, "lr": lr, "ddim_steps": ddim_steps},
                "trained_parameters": int(sum(params[n].numel() for n in names)),
                "final_loss": sum(tail) / len(tail), "seconds": round(time.time() - start, 2)}
        return Edit(self.name, tensors, info)


@register("esd-x")
class ESDX(ESD):
    pass


@register("esd-u")
class ESDU(ESD):
    pass


@register("esd-x-strict")
class ESDXStrict(ESD):
    pass
