"""Shared by the diffusion purifiers: take an image to the model's canvas and back."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.views import canvas


def to_canvas(bundle, image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (1, 3, h, w) at the model's canvas size, on the model's device."""
    h, w = canvas(bundle, *image.shape[-2:])
    x = image.float()[None]
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return x.to(bundle.device)


def from_canvas(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(1, 3, h, w) -> the shape of `like` (C, H, W); grey images are averaged back to one channel."""
    out = F.interpolate(x.float().cpu(), size=like.shape[-2:], mode="bicubic", antialias=True,
                        align_corners=False).clamp(0, 1)[0]
    return out.mean(0, keepdim=True) if like.shape[0] == 1 else out
