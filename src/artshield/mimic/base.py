"""What every mimicry method shares: the data, the fine-tuning loop, and the saved adaptation.

A mimic fine-tunes a model on a handful of an artist's images with captions that name a new
trigger (e.g. "document open icon, sks style"), then prompts with that trigger. Each method is one
class: it decides which parameters train (a LoRA, a new token embedding, the UNet, hypernetworks)
and how they are saved; the loop is the latent diffusion training loss, as in diffusers' example
scripts: images centre-cut and resized to the model's native size, encoded once by the frozen
VAE (posterior mean), t ~ U[0, T), epsilon (or v) target, AdamW at a constant learning rate.

An adaptation is saved as OUT/adapter.safetensors (only the trained tensors) and OUT/adapter.json
(method, trigger, base model, settings); `apply_adapter` puts it on a model bundle, in place.
"""
from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..models import ModelBundle
from ..options import Overridable, registrar
from ..protect.base import diffusion_target
from ..protect.engine import fit_view

MIMICS: dict[str, type[Mimic]] = {}
register = registrar(MIMICS)
ADAPTER_FILE, INFO_FILE = "adapter.safetensors", "adapter.json"


@dataclass
class MimicConfig(Overridable):
    steps: int = 500
    lr: float | None = None            # None: the model's "<method>_lr" if it declares one, else the paper's
    batch_size: int = 4
    trigger: str = "sks"               # the word the captions and the prompts use for the artist
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or (self.lr is not None and self.lr <= 0):
            raise ValueError("steps and batch_size must be at least 1 and lr positive")


class Mimic(ABC):
    """Subclasses set Config and implement prepare (make a trainable copy and return the
    parameters to train), state (the tensors to save) and apply (put saved tensors on a bundle)."""

    name = ""
    Config = MimicConfig
    paper_lr = 1e-4
    trains_text = False            # True: the text encoder is in the graph (textual inversion)

    def __init__(self, bundle: ModelBundle, config: MimicConfig | None = None):
        self.base = bundle
        self.config = config or self.Config()
        if self.config.lr is None:
            # a model far from SD's scale may declare its own rates (mini does: see artshield_mini.json)
            self.config.lr = float(bundle.defaults.get(f"{self.name.replace('-', '_')}_lr", self.paper_lr))

    # --- per method ---------------------------------------------------------------------------
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
    def trainable_bundle(self) -> ModelBundle:
        """A copy of the base bundle whose modules may change; the base stays as it was."""
        b = self.base
        return ModelBundle(vae=b.vae, unet=copy.deepcopy(b.unet),
                           text_encoder=copy.deepcopy(b.text_encoder) if self.trains_text else b.text_encoder,
                           tokenizer=copy.deepcopy(b.tokenizer), scheduler=b.scheduler, spec=b.spec,
                           source=b.source, device=b.device, dtype=b.dtype, defaults=dict(b.defaults))

    def train(self, images: list[torch.Tensor], captions: list[str], progress=None) -> Adapter:
        if len(images) != len(captions) or not images:
            raise ValueError("mimicry needs at least one image, and one caption per image")
        cfg = self.config
        g = torch.Generator("cpu").manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        bundle = self.trainable_bundle()
        params = self.prepare(bundle)
        with torch.no_grad():
            views = torch.stack([fit_view(x.float(), bundle.image_size) for x in images]).to(bundle.device)
            latents = torch.cat([bundle.encode(v[None]) for v in views]).float()
            contexts = None if self.trains_text else bundle.embed(captions).float()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
        bundle.unet.train()
        steps_total = bundle.scheduler.config.num_train_timesteps
        losses = []
        for _ in range(cfg.steps):
            idx = torch.randint(len(images), (min(cfg.batch_size, len(images)),), generator=g)
            z = latents[idx].to(bundle.dtype)
            noise = torch.randn(z.shape, generator=g).to(z)
            t = torch.randint(0, steps_total, (len(idx),), generator=g).to(bundle.device)
            noisy = bundle.scheduler.add_noise(z, noise, t)
            ctx = bundle.embed([captions[i] for i in idx]) if self.trains_text else contexts[idx]
            pred = bundle.unet(noisy, t, encoder_hidden_states=ctx.to(bundle.dtype)).sample
            loss = (pred.float() - diffusion_target(bundle, z, noise, t).float()).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.after_step(bundle)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(1)
        bundle.unet.eval()
        tail = losses[-max(1, len(losses) // 10):]
        return Adapter(self.name, {k: v.detach().float().cpu().contiguous() for k, v in self.state(bundle).items()},
                       {"method": self.name, "trigger": cfg.trigger, "base_model": self.base.spec,
                        "config": asdict(cfg), "images": len(images), "final_loss": sum(tail) / len(tail)})

    def after_step(self, bundle: ModelBundle) -> None:
        """Hook after each optimiser step (textual inversion restores the other embeddings)."""


@dataclass
class Adapter:
    method: str
    tensors: dict[str, torch.Tensor]
    info: dict

    def save(self, folder: str | Path) -> Path:
        from ..io import write_weights

        return write_weights(self.tensors, self.info, folder, ADAPTER_FILE, INFO_FILE, self.method)

    @classmethod
    def load(cls, folder: str | Path) -> Adapter:
        folder = Path(folder)
        try:
            info = json.loads((folder / INFO_FILE).read_text())
            tensors = load_file(str(folder / ADAPTER_FILE))
            method = info["method"]
        except (OSError, ValueError, KeyError) as e:
            from ..errors import ArtshieldError

            raise ArtshieldError(f"--adapter {folder}: not an artshield adaptation ({e})") from None
        return cls(method, tensors, info)

    def apply(self, bundle: ModelBundle) -> ModelBundle:
        """Put the adaptation on `bundle`, in place, and return it."""
        MIMICS[self.method].apply(bundle, self.tensors, self.info)
        return bundle

    def prompt(self, text: str) -> str:
        """A prompt written with the trigger word, as this adaptation needs it (textual inversion
        learnt a new token in the word's place)."""
        token = self.info.get("token")
        if not token:
            return text
        from .textual_inversion import retag

        return retag(text, self.info["trigger"], token)
