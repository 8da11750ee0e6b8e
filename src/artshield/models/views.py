"""How an image of any size meets a model of one native size.

- `fit_view`: the model's square view of an image: the short side resized to the model's size
  (bilinear, antialiased), then a square cut (centred, or at a given offset). Differentiable, so a
  perturbation computed through it lives at the image's full resolution. Protections optimise
  through it, mimicry and the audit read their training images through it.
- `canvas`: the size at which the model redraws a whole image (img2img, purifiers): the short
  side at the native size, the aspect ratio kept, both sides multiples of what the networks'
  downsampling needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_view(image: torch.Tensor, size: int, offset: tuple[int, int] | None = None) -> torch.Tensor:
    """(C, H, W) -> (3, size, size): short side resized to `size`, then a square cut at `offset`
    (top, left) in the resized image, centred when None. Grey images (C = 1) are repeated to RGB."""
    c, h, w = image.shape
    scale = size / min(h, w)
    rh, rw = max(size, round(h * scale)), max(size, round(w * scale))
    x = image[None]
    if (rh, rw) != (h, w):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    top, left = offset if offset is not None else ((rh - size) // 2, (rw - size) // 2)
    x = x[0, :, top:top + size, left:left + size]
    return x.expand(3, -1, -1) if c == 1 else x


def view_slack(image: torch.Tensor, size: int) -> tuple[int, int]:
    """How far the square cut can move (rows, columns) once the short side is `size`."""
    _, h, w = image.shape
    scale = size / min(h, w)
    return max(size, round(h * scale)) - size, max(size, round(w * scale)) - size


def model_views(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """A batch (B, 3, size, size) of centred views, on the CPU."""
    return torch.stack([fit_view(x.float().cpu(), size) for x in images])


def canvas(bundle, height: int, width: int) -> tuple[int, int]:
    """The size at which the model redraws an image of height x width."""
    if bundle.is_flow:            # the transformer's 2 x 2 patches (SD3's patch_size, FLUX's packing)
        unit = bundle.latent_scale * int(bundle.unet.config.get("patch_size") or 1) * (2 if bundle.family == "flux" else 1)
    else:
        unit = bundle.latent_scale * 2 ** (len(bundle.unet.config.block_out_channels) - 1)
    scale = bundle.image_size / min(height, width)
    return (max(unit, round(height * scale / unit) * unit), max(unit, round(width * scale / unit) * unit))
