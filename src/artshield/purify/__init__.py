"""purify: what a mimic runs on downloaded images to strip protective perturbations.

    from artshield.purify import purify
    cleaned = purify(None, [image], "bilateral")              # filters need no model
    cleaned = purify(model, [image], "diffpure")              # diffusion purifiers do

Purifiers (one file each, defaults from their sources): bilateral (with the AdverseCleaner
recipe), jpeg, gaussian-noise, gaussian-blur, median, noisy-upscale, diffpure, impress.
"""
from __future__ import annotations

import torch

from . import bilateral, diffpure, gaussian_blur, gaussian_noise, impress, jpeg, median, noisy_upscale  # noqa: F401
from ..options import seeded
from .base import PURIFIERS, Purifier


def purify(bundle, images: list[torch.Tensor], method: str, seed: int = 0, progress=None,
           **options) -> list[torch.Tensor]:
    """Purify (C, H, W) images in [0, 1] with `bundle` (None for the filters); returns images of the
    same shapes, on the CPU."""
    return PURIFIERS.create(method, bundle, **options).run(images, seeded(None, seed), progress)


__all__ = ["PURIFIERS", "Purifier", "purify"]
