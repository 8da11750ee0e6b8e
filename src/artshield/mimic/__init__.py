"""mimic: the fine-tuning a mimic runs on an artist's images, saved as an adaptation.

    from artshield.mimic import mimic
    adapter = mimic(model, images, captions, "lora", steps=300)
    adapter.save("out/lora"); Adapter.load("out/lora").apply(model)

Methods (one file each): lora, textual-inversion, dreambooth, hypernetwork.
"""
from __future__ import annotations

from . import dreambooth, hypernetwork, lora, textual_inversion  # noqa: F401
from .base import MIMICS, Adapter, Mimic


def make_mimic(bundle, method: str, **options) -> Mimic:
    if method not in MIMICS:
        raise ValueError(f"unknown mimicry method {method!r}; choose one of {', '.join(MIMICS)}")
    cls = MIMICS[method]
    return cls(bundle, cls.Config.with_overrides(**options))


def mimic(bundle, images, captions, method: str = "lora", progress=None, **options) -> Adapter:
    """Fine-tune on (C, H, W) images in [0, 1] with one caption each; the bundle is not changed."""
    return make_mimic(bundle, method, **options).train(images, captions, progress=progress)


__all__ = ["MIMICS", "Adapter", "make_mimic", "mimic"]
