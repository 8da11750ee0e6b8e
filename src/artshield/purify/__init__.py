"""purify: what a mimic runs on downloaded images to strip protective perturbations.

    from artshield.purify import purify
    cleaned = purify([image], "bilateral")                    # filters need no model
    cleaned = purify([image], "diffpure", bundle=model)       # diffusion purifiers do

Purifiers (one file each, defaults from their sources): bilateral (with the AdverseCleaner
recipe), jpeg, gaussian-noise, gaussian-blur, median, noisy-upscale, diffpure, impress.
"""
from __future__ import annotations

import torch

from . import bilateral, diffpure, gaussian_blur, gaussian_noise, impress, jpeg, median, noisy_upscale  # noqa: F401
from .base import PURIFIERS, Purifier


def make_purifier(method: str, bundle=None, **options) -> Purifier:
    if method not in PURIFIERS:
        raise ValueError(f"unknown purifier {method!r}; choose one of {', '.join(PURIFIERS)}")
    cls = PURIFIERS[method]
    return cls(cls.Config.with_overrides(**options), bundle=bundle)


def purify(images: list[torch.Tensor], method: str, bundle=None, seed: int = 0, **options) -> list[torch.Tensor]:
    """Purify (C, H, W) images in [0, 1]; returns images of the same shapes, on the CPU."""
    purifier = make_purifier(method, bundle=bundle, **options)
    generator = torch.Generator("cpu").manual_seed(seed)
    return [x.cpu().float().clamp(0, 1) for x in purifier(images, generator)]


__all__ = ["PURIFIERS", "make_purifier", "purify"]
