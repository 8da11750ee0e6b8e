"""What every mimicry method shares: the data, the fine-tuning loop, and the saved adaptation.

A mimic fine-tunes a model on a handful of an artist's images with captions that name a new
trigger (e.g. "document open icon, sks style"), then prompts with that trigger. Each method is one
class: it decides which parameters train (a LoRA, a new token embedding, the UNet, hypernetworks)
and how they are saved; the loop is the latent diffusion training loss, as in diffusers' example
scripts: images centre-cut and resized to the model's native size, encoded once by the frozen
VAE (posterior mean), t ~ U[0, T), epsilon (or v) target, AdamW at a constant learning rate.

An adaptation is saved as OUT/adapter.safetensors (only the trained tensors) and OUT/adapter.json
(method, trigger, base model, settings), the folder type of models.weights; `Adapter.apply` puts
it on a model bundle, in place.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import torch
from diffusers.optimization import get_scheduler

from ..errors import ArtshieldError
from ..models import ModelBundle
from ..models.diffusion import denoising_loss
from ..models.views import model_views
from ..models.weights import WeightChange, base_fields
from ..options import POSITIVE, SEED, Limit, Overridable, Registry, seeded

MIMICS = Registry("mimic")
register = MIMICS.register


@dataclass
class MimicConfig(Overridable):
    steps: int = 500
    lr: float | None = None            # None: the model's rate for the method if it declares one, else the paper's
    batch_size: int = 4
    trigger: str = "sks"               # the word the captions and the prompts use for the artist
    seed: int = 0
    # "bf16" / "fp16": a float32 model's forward passes run under autocast (the trained parameters,
    # AdamW's state and the loss stay float32), the usual mixed precision on a GPU; mini's training on
    # a CPU with AVX-512 BF16 measured no faster with it (its tensors are small), so no preset uses it
    autocast: str | None = None
    # the learning rate over the run, as diffusers' training scripts name it: "constant", or
    # "cosine" / "linear" decay to zero; each after `warmup_steps` of linear warm-up
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    snr_gamma: float | None = None     # Min-SNR-gamma loss weighting (5 in its paper and kohya's guides); None: off
    max_grad_norm: float | None = None  # clip the gradient's norm (diffusers' scripts: 1.0); None: no clipping
    # the share of training captions replaced by the empty one (kohya's caption_dropout_rate; Stable
    # Diffusion's own training dropped 10 %): the model also learns the images under the prompt
    # classifier-free guidance subtracts, which a method that changes that prompt's encoding needs
    caption_dropout: float = 0.0

    limits = {"steps": Limit(1, 1_000_000), "lr": POSITIVE, "batch_size": Limit(1, 4096), "seed": SEED,
              "warmup_steps": Limit(0, 1_000_000), "snr_gamma": POSITIVE, "max_grad_norm": POSITIVE,
              "caption_dropout": Limit(0, 1, high_open=True)}
    schedules = ("constant", "cosine", "linear")

    def __post_init__(self):
        super().__post_init__()
        if self.autocast not in (None, "bf16", "fp16"):
            raise ValueError(f"autocast must be bf16 or fp16, not {self.autocast!r}")
        if self.lr_schedule not in self.schedules:
            raise ValueError(f"lr_schedule must be one of {', '.join(self.schedules)}, not {self.lr_schedule!r}")


class Mimic(ABC):
    """Subclasses set Config and implement prepare (make a trainable copy and return the
    parameters to train), state (the tensors to save) and apply (put saved tensors on a bundle)."""

    name = ""
    Config = MimicConfig
    paper_lr = 1e-4
    trains_text = False            # True: the text encoder is in the graph (textual inversion)
    flow_refusal: str | None = None  # why the method does not run on SD3 / FLUX (None: it does)

    def __init__(self, bundle: ModelBundle, config: MimicConfig | None = None):
        if bundle.is_flow and self.flow_refusal:
            raise ValueError(f"{self.name} does not run on {bundle.family.upper()}: {self.flow_refusal}")
        self.bundle = bundle
        self.config = config or self.Config()
        self.check_model(bundle)
        if self.config.lr is None:
            # a model far from SD's scale may declare its own rates (mini does: see artshield_mini.json)
            self.config.lr = bundle.conventions.learning_rate(self.name, self.paper_lr)

    # --- per method ---------------------------------------------------------------------------
    def check_model(self, bundle: ModelBundle) -> None:
        """Raise ValueError, before any training, where the config does not fit the model."""

    @abstractmethod
    def prepare(self, bundle: ModelBundle) -> list[torch.nn.Parameter]:
        """Make `bundle` (a trainable copy) ready and return the parameters to train."""

    @abstractmethod
    def state(self, bundle: ModelBundle) -> dict[str, torch.Tensor]:
        """The trained tensors to save."""

    @classmethod
    @abstractmethod
    def apply(cls, bundle: ModelBundle, tensors: dict[str, torch.Tensor], info: dict) -> None:
        """Put saved tensors on a bundle, in place."""

    # --- shared ---------------------------------------------------------------------------------
    def total_steps(self, n_images: int) -> int:
        return self.config.steps

    def run(self, images: list[torch.Tensor], captions: list[str], generator: torch.Generator | None = None,
            progress=None) -> Adapter:
        """Fine-tune a copy of the bundle on (C, H, W) images in [0, 1], one caption each; batches,
        timesteps and noise are drawn from `generator` (else one seeded with config.seed)."""
        if len(images) != len(captions) or not images:
            raise ValueError("mimicry needs at least one image, and one caption per image")
        cfg = self.config
        g = seeded(generator, cfg.seed)
        torch.manual_seed(cfg.seed)          # the initial values of new modules (LoRA's A, hypernetworks)
        bundle = self.bundle.copy(unet=True, text=self.trains_text)
        params = self.prepare(bundle)
        # a half-precision model trains as diffusers' scripts do: fp32 master copies of the trained
        # parameters (AdamW's epsilon and small updates vanish in fp16), forward passes under
        # autocast, and a gradient scaler for fp16; the frozen weights stay in half precision
        half = bundle.dtype != torch.float32
        for p in params:
            p.data = p.data.float()
        cast = bundle.dtype if half else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.autocast)
        autocast = torch.autocast(bundle.device.type, dtype=cast) if cast is not None else contextlib.nullcontext()
        scaler = torch.amp.GradScaler(bundle.device.type, enabled=cast == torch.float16)
        with torch.no_grad():
            views = model_views(images, bundle.image_size).to(bundle.device)
            latents = torch.cat([bundle.encode(v[None]) for v in views]).float()
            contexts = None if self.trains_text else bundle.embed(captions).float()
            empty = None if self.trains_text or not cfg.caption_dropout else bundle.embed([""]).float()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
        schedule = get_scheduler("constant_with_warmup" if cfg.lr_schedule == "constant" else cfg.lr_schedule, opt,
                                 num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
        bundle.unet.train()
        losses = []
        for _ in range(cfg.steps):
            idx = torch.randint(len(images), (min(cfg.batch_size, len(images)),), generator=g)
            # drawn only when on, so that a run without it keeps the random stream (and results) it had
            dropped = torch.rand(len(idx), generator=g) < cfg.caption_dropout if cfg.caption_dropout else None
            with autocast:
                if self.trains_text:
                    drop = [False] * len(idx) if dropped is None else dropped.tolist()
                    ctx = bundle.embed(["" if d else captions[i] for i, d in zip(idx.tolist(), drop)])
                else:
                    ctx = contexts[idx] if dropped is None else \
                        torch.where(dropped[:, None, None].to(contexts.device), empty, contexts[idx])
                loss = denoising_loss(bundle, latents[idx].to(bundle.dtype), ctx, g, reduction="mean",
                                      snr_gamma=cfg.snr_gamma)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.max_grad_norm is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            scaler.step(opt)
            scaler.update()
            schedule.step()
            self.after_step(bundle)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(1)
        bundle.unet.eval()
        tail = losses[-max(1, len(losses) // 10):]
        return Adapter(self.name, {k: v.detach().float().cpu().contiguous() for k, v in self.state(bundle).items()},
                       {"method": self.name, "trigger": cfg.trigger, **base_fields(self.bundle),
                        **({"family": self.bundle.family} if self.bundle.is_flow else {}),
                        "config": asdict(cfg), "images": len(images), "final_loss": sum(tail) / len(tail)})

    def after_step(self, bundle: ModelBundle) -> None:
        """Hook after each optimiser step (textual inversion restores the other embeddings)."""


@dataclass
class Adapter(WeightChange):
    """A saved adaptation: OUT/adapter.safetensors and OUT/adapter.json."""

    kind = "adapter"
    param = "adapter"
    what = "artshield adaptation"

    def apply(self, bundle: ModelBundle, folder: str | None = None) -> ModelBundle:
        """Put the adaptation on `bundle`, in place, and return it. An adaptation that does not fit
        the model is an ArtshieldError (naming `folder`, where it was read from)."""
        if self.method not in MIMICS:
            raise ArtshieldError(f"unknown mimicry method {self.method!r}", param="adapter", value=folder)
        try:
            MIMICS[self.method].apply(bundle, self.tensors, self.info)
        except (ValueError, RuntimeError, KeyError) as e:
            raise ArtshieldError(f"does not fit the model {bundle.spec}: {str(e).splitlines()[0]}",
                                 param="adapter", value=folder) from None
        return bundle

    def file_metadata(self) -> dict[str, str]:
        method = MIMICS[self.method] if self.method in MIMICS else None
        return method.file_metadata(self.info) if hasattr(method, "file_metadata") else {}

    def prompt(self, text: str) -> str:
        """A prompt written with the trigger word, as this adaptation needs it (textual inversion
        learnt a new token in the word's place)."""
        token = self.info.get("token")
        return retag(text, self.info["trigger"], token) if token else text


def retag(caption: str, trigger: str, token: str) -> str:
    """Put the placeholder token where the trigger word stands in a caption."""
    words = caption.split(" ")
    return " ".join(token + w[len(trigger):] if w.rstrip(",.;") == trigger else w for w in words)


def fill_captions(files: list, texts: list[str | None], template: str, trigger: str) -> list[str]:
    """One caption per image: its own text (a NAME.txt sidecar) or `template`, with {trigger} (the
    artist's word) and {name} (the file name, spaces for _ and -) filled in."""
    out = []
    for f, text in zip(files, texts):
        try:
            out.append((text or template).format(trigger=trigger, name=f.stem.replace("_", " ").replace("-", " ")))
        except (KeyError, IndexError, ValueError) as e:
            where = f.with_suffix(".txt") if text else f"caption template {template!r}"
            raise ArtshieldError(f"{where}: a caption may use only {{trigger}} and {{name}} "
                                 f"({type(e).__name__}: {e})") from None
    return out
