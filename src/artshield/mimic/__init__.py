"""mimic: the fine-tuning a mimic runs on an artist's images, saved as an adaptation.

    from artshield.mimic import mimic
    adapter = mimic(model, images, captions, "lora", steps=300)
    adapter.save("out/lora"); Adapter.load("out/lora").apply(model.copy())

Methods (one file each): lora, textual-inversion, dreambooth, hypernetwork.
"""
from __future__ import annotations

from ..images import as_tensors
from . import dreambooth, hypernetwork, lora, textual_inversion  # noqa: F401
from .base import MIMICS, Adapter, Mimic, fill_captions, retag


def mimic(bundle, images, captions, method: str = "lora", progress=None, **options) -> Adapter:
    """Fine-tune on images (PIL, numpy arrays or (C, H, W) tensors in [0, 1]) with one caption each;
    the bundle is not changed. Options override the method's config (steps, lr, batch_size,
    trigger, seed, and its own)."""
    return MIMICS.create(method, bundle, **options).run(as_tensors(images)[0], captions, progress=progress)


__all__ = ["MIMICS", "Adapter", "Mimic", "fill_captions", "mimic", "retag"]
