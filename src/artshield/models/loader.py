"""Load a Stable-Diffusion-family model into one bundle, whatever its source.

    load_model("mini")                     the embedded scale model (the default)
    load_model("/path/to/diffusers/dir")   a local diffusers folder (vae/, unet/, text_encoder/, ...)
    load_model("org/name")                 a hub id: from the local cache, else from the hub

Every algorithm in artshield is written once against ModelBundle, so SD-1.5 on a GPU and mini
on a CPU run the same code.
"""
from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from ..errors import ArtshieldError

MINI_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini"
REQUIRED_PARTS = ("vae", "unet", "text_encoder", "tokenizer")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelBundle:
    """The parts of a latent text-to-image diffusion model that artshield's algorithms use."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDPMScheduler          # the training (noising) schedule
    spec: str
    source: str                       # "embedded", "folder" or "hub"
    device: torch.device
    dtype: torch.dtype
    defaults: dict = field(default_factory=dict)  # sampling defaults: steps, guidance

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The native resolution: what the UNet was trained on, in pixels."""
        return int(self.unet.config.sample_size) * self.latent_scale

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> scaled latents (B, C, H/f, W/f). Differentiable."""
        dist = self.vae.encode((images * 2 - 1).to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return z * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1]. Differentiable."""
        out = self.vae.decode(latents.to(self.device, self.dtype) / self.scaling_factor).sample
        return ((out + 1) / 2).clamp(0, 1)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> the text encoder's last hidden states, the UNet's cross-attention input."""
        return self.text_encoder(self.tokenize(prompts))[0]

    def sampler(self) -> DDIMScheduler:
        # Stable Diffusion's DDIM convention: timesteps offset by one, no forced final alpha of 1
        return DDIMScheduler.from_config(self.scheduler.config, steps_offset=1, set_alpha_to_one=False)

    def pipeline(self):
        """A diffusers StableDiffusionPipeline over these very modules (no copies)."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.sampler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def describe(self) -> dict:
        return {"spec": self.spec, "source": self.source, "device": str(self.device), "dtype": str(self.dtype),
                "image_size": self.image_size}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ArtshieldError(f"--device {device}: no CUDA device is available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ArtshieldError(f"--device {device}: not a device name (use auto, cpu or cuda)") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connection within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_model(spec: str = "mini", device: str = "auto", dtype: torch.dtype | None = None) -> ModelBundle:
    """Load a model bundle; raises ArtshieldError with one clear sentence when it cannot."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" and spec != "mini" else torch.float32
    if spec == "mini":
        if not (MINI_DIR / "unet").is_dir():
            raise ArtshieldError(f"the embedded model is missing from {MINI_DIR}; reinstall artshield")
        bundle = _load_folder(MINI_DIR, "mini", "embedded", dev, dtype)
        info = json.loads((MINI_DIR / "artshield_mini.json").read_text())
        bundle.defaults.update(info.get("sampling", {}))
        bundle.defaults.update(info.get("conventions", {}))
        return bundle
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "edit.json").is_file():
        return _load_edit(path, spec, dev, dtype)
    if path.exists():
        if not path.is_dir():
            raise ArtshieldError(f"--model {spec}: expected a diffusers folder (with vae/, unet/, text_encoder/, "
                                 "tokenizer/), not a single file")
        return _load_folder(path, spec, "folder", dev, dtype)
    if HUB_ID.match(spec):
        return _load_hub(spec, dev, dtype)
    raise ArtshieldError(f"--model {spec}: no such folder, and not a hub id of the form org/name "
                         "(use --model mini or a local diffusers folder)")


def _load_edit(path: Path, spec: str, device: torch.device, dtype: torch.dtype, depth: int = 0) -> ModelBundle:
    """A folder written by artshield erase: its base model with the edited UNet tensors on it."""
    from ..erase.base import Edit

    edit = Edit.load(path)
    base = edit.info["base_model"]
    if depth > 8 or Path(base).expanduser().resolve() == path.resolve():
        raise ArtshieldError(f"--model {spec}: its edit.json names a chain of base models that does not end")
    base_path = Path(base).expanduser()
    if base_path.is_dir() and (base_path / "edit.json").is_file():
        bundle = _load_edit(base_path, base, device, dtype, depth + 1)
    else:
        try:
            bundle = load_model(base, device, dtype)
        except ArtshieldError as e:
            raise ArtshieldError(f"--model {spec}: its base model cannot be loaded: {e}") from None
    edit.apply(bundle)
    bundle.spec, bundle.source = spec, "edit"
    return bundle


def _load_parts(load, spec: str) -> dict:
    try:
        return {
            "vae": load(AutoencoderKL, "vae"),
            "unet": load(UNet2DConditionModel, "unet"),
            "text_encoder": load(CLIPTextModel, "text_encoder"),
            "tokenizer": load(CLIPTokenizer, "tokenizer"),
        }
    except ArtshieldError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtshieldError(f"--model {spec}: cannot load it: {first}") from None


def _scheduler(load) -> DDPMScheduler:
    try:
        return DDPMScheduler.from_config(load(DDPMScheduler, "scheduler").config)
    except (OSError, ValueError, KeyError):
        # a folder without a scheduler: Stable Diffusion 1.x's training schedule
        return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             num_train_timesteps=1000, clip_sample=False)


def _finish(parts: dict, scheduler, spec: str, source: str, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    for name in ("vae", "unet", "text_encoder"):
        module = parts[name]
        if module.dtype != dtype:
            module.to(dtype=dtype)
        module.to(device).eval().requires_grad_(False)
    return ModelBundle(**parts, scheduler=scheduler, spec=spec, source=source, device=device, dtype=dtype,
                       defaults={"steps": 30, "guidance": 7.5})


def _load_folder(path: Path, spec: str, source: str, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    missing = [p for p in REQUIRED_PARTS if not (path / p).is_dir()]
    if missing:
        raise ArtshieldError(f"--model {spec}: not a diffusers Stable Diffusion folder (missing {', '.join(missing)}/)")
    # only safetensors weights are read: use_safetensors=True refuses pickled .bin/.ckpt files
    def load(cls, sub):
        if cls is CLIPTokenizer:
            return cls.from_pretrained(path / sub)
        if cls is DDPMScheduler:
            return cls.from_pretrained(path / sub)
        return cls.from_pretrained(path / sub, torch_dtype=dtype, use_safetensors=True)

    return _finish(_load_parts(load, spec), _scheduler(load), spec, source, device, dtype)


def _load_hub(spec: str, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    def loader(local_only: bool):
        def load(cls, sub):
            kw = {"subfolder": sub, "local_files_only": local_only}
            if cls not in (CLIPTokenizer, DDPMScheduler):
                kw.update(torch_dtype=dtype, use_safetensors=True)
            return cls.from_pretrained(spec, **kw)
        return load

    try:  # the local Hugging Face cache first: works offline
        cached = loader(True)
        return _finish(_load_parts(cached, spec), _scheduler(cached), spec, "hub", device, dtype)
    except ArtshieldError:
        pass
    if not hub_reachable():
        raise ArtshieldError(f"--model {spec}: the Hugging Face hub cannot be reached from this machine and the "
                             "model is not in the local cache; use --model mini or a local diffusers folder")
    online = loader(False)
    return _finish(_load_parts(online, spec), _scheduler(online), spec, "hub", device, dtype)
