"""Stable Diffusion's real architectures with random weights, for timing and memory benchmarks.

Random weights cost exactly what trained ones cost (same layers, same shapes), so this measures
what a method costs on SD-1.5 or SDXL without their checkpoints, which cannot be downloaded here.
The configurations are the ones artshield ships for single-file checkpoints (assets/architectures,
those of the published diffusers folders: SD-1.5's 860M-parameter UNet, SDXL's 2.6B-parameter
UNet with its two text encoders), and the tokenizers are CLIP's.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .bundle import ModelBundle
from .conventions import ModelConventions


def random_bundle(architecture: str, device: torch.device, dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> ModelBundle:
    """A bundle of `architecture` (sd15, sd2, sd2-base, sdxl) with random weights."""
    from .loader import _finish
    from .single_file import _config_folder

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="artshield-random-") as tmp:
        folder = _config_folder(architecture, Path(tmp))
        parts = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
                 "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
                 "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
                 "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer")}
        if (folder / "text_encoder_2").is_dir():
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    return _finish(parts, scheduler, f"{architecture}-random", "random", device, dtype, ModelConventions(steps=50))


def sd15_random_bundle(device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelBundle:
    return random_bundle("sd15", device, dtype, seed)
