"""Target images for the targeted protections (Mist's textural loss, PhotoGuard's encoder attack).

Mist pulls the protected image's latent toward the latent of a fixed, strongly textured picture
(its MIST.png). artshield draws its own: `texture` is a deterministic high-contrast pattern
(concentric rings crossed with diagonal stripes) made in code at any size, so no image file is
needed. A user may pass any image instead (--target FILE).
"""
from __future__ import annotations

import math

import torch

from ..models.views import fit_view


def texture(size: int) -> torch.Tensor:
    """A (3, size, size) black-and-white pattern in [0, 1]; its period scales with size."""
    r = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(r, r, indexing="ij")
    period = 8 / max(size, 8) * 2          # about 8 pixels per cycle at every size
    rings = torch.sin(torch.sqrt(x ** 2 + y ** 2) * math.pi / period)
    stripes = torch.sin((x + y) * math.pi / period)
    pattern = ((rings * stripes) > 0).float()
    return pattern.expand(3, -1, -1).clone()


def grey(size: int) -> torch.Tensor:
    return torch.full((3, size, size), 0.5)


def resized(image: torch.Tensor, size: int) -> torch.Tensor:
    """A (3, H, W) target image resized and centre-cut to (3, size, size)."""
    return fit_view(image, size).clamp(0, 1)


def latent(bundle, target) -> torch.Tensor:
    """The (1, C, h, w) latent of a target: "zero" (the zero latent), a named pattern, or a
    (3, H, W) image tensor, at the model's resolution."""
    if isinstance(target, str) and target == "zero":
        return torch.zeros(1, *bundle.latent_shape, device=bundle.device, dtype=bundle.dtype)
    size = bundle.image_size
    image = named(target, size) if isinstance(target, str) else resized(target, size)
    with torch.no_grad():
        return bundle.encode(image[None].to(bundle.device))


def named(name: str, size: int) -> torch.Tensor:
    if name == "texture":
        return texture(size)
    if name == "grey":
        return grey(size)
    raise ValueError(f"unknown target {name!r} (texture, grey, zero, or an image)")


class TargetLatent:
    """Mixin for protections that pull an image's latent toward `config.target`'s (Mist's textural
    term, PhotoGuard's encoder attack): the target's latent is computed once, on first use."""

    _target: torch.Tensor | None = None

    def target_latent(self) -> torch.Tensor:
        if self._target is None:
            self._target = latent(self.bundle, self.config.target)
        return self._target
