"""purify: what a mimic runs on downloaded images to strip protective perturbations.

    from artshield.purify import purify
    cleaned = purify(None, [image], "bilateral")              # filters need no model
    cleaned = purify(model, [image], "diffpure")              # diffusion purifiers do

Purifiers (one file each, defaults from their sources): bilateral (with the AdverseCleaner
recipe), jpeg, gaussian-noise, gaussian-blur, median, noisy-redraw, noisy-upscale (with an
upscaler), diffpure, impress, and denoiser (a network trained to undo one protection:
the adaptive attack).
"""
from __future__ import annotations

from . import bilateral, denoiser, diffpure, gaussian_blur, gaussian_noise, impress, jpeg, median, noisy_upscale  # noqa: F401
from ..images import as_tensors, like_inputs
from ..options import seeded
from .base import PURIFIERS, Purifier


def purify(bundle, images: list, method: str, seed: int = 0, progress=None, **options) -> list:
    """Purify images with `bundle` (None for the filters). Images are PIL images, numpy arrays or
    (C, H, W) tensors in [0, 1]; each comes back the same kind and size (tensors on the CPU)."""
    tensors, kinds = as_tensors(images)
    return like_inputs(PURIFIERS.create(method, bundle, **options).run(tensors, seeded(None, seed), progress), kinds)


__all__ = ["PURIFIERS", "Purifier", "purify"]
