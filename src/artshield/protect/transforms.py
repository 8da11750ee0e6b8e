"""Differentiable image transforms for EOT (expectation over transformation).

Each takes (B, 3, H, W) images in [0, 1] and a CPU generator for its random parameters, and
returns images of the same shape. They stand in for what happens to a picture after it is posted
or what a mimic does first (JPEG re-encoding, blur, rescaling), so that a perturbation optimised
through them survives them.

- jpeg: JPEG at a random quality in [50, 95]: YCbCr, 8x8 block DCT, quantisation by the standard
  IJG tables scaled to the quality, inverse DCT. Rounding passes the gradient straight through
  (BPDA), the usual differentiable stand-in for the codec. Chroma is not subsampled.
- blur: Gaussian blur, sigma uniform in [0.3, 1.2] pixels (a kernel of radius ceil(3 sigma) unless
  given), reflected at the border.
- resize: down to a random 50-90 % of the size (bilinear, antialiased) and back up.
- hflip: the batch mirrored left to right with probability 1/2 (MetaCloak's EOT has it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# IJG's standard quantisation tables (ITU-T T.81, Annex K)
_LUMA = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32).view(8, 8)
_CHROMA = torch.tensor([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=torch.float32).view(8, 8)


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=generator))


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32, device=device)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal: m @ m.T = I


def quality_tables(quality: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The IJG scaling of the standard tables for a quality in [1, 100]."""
    q = min(max(quality, 1.0), 100.0)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return tuple(((t * scale + 50) / 100).floor().clamp(1, 255) for t in (_LUMA, _CHROMA))


def jpeg(images: torch.Tensor, generator: torch.Generator, quality: float | None = None) -> torch.Tensor:
    quality = _uniform(generator, 50, 95) if quality is None else quality
    b, _, h, w = images.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(images, (0, pw, 0, ph), mode="replicate") * 255
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    ycc = torch.stack([0.299 * r + 0.587 * g + 0.114 * bl,
                       -0.168736 * r - 0.331264 * g + 0.5 * bl + 128,
                       0.5 * r - 0.418688 * g - 0.081312 * bl + 128], 1) - 128
    H, W = ycc.shape[-2:]
    blocks = ycc.view(b, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)  # b c i j 8 8
    m = _dct_matrix(images.device)
    coef = m @ blocks @ m.T
    luma, chroma = (t.to(images.device) for t in quality_tables(quality))
    table = torch.stack([luma, chroma, chroma]).view(1, 3, 1, 1, 8, 8)
    scaled = coef / table
    rounded = scaled + (scaled.round() - scaled).detach()  # straight-through rounding
    blocks = m.T @ (rounded * table) @ m
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, 3, H, W) + 128
    y, cb, cr = ycc[:, 0], ycc[:, 1] - 128, ycc[:, 2] - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1) / 255
    return rgb[:, :, :h, :w].clamp(0, 1)


def blur(images: torch.Tensor, generator: torch.Generator, sigma: float | None = None,
         radius: int | None = None) -> torch.Tensor:
    sigma = _uniform(generator, 0.3, 1.2) if sigma is None else sigma
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize(images: torch.Tensor, generator: torch.Generator, factor: float | None = None) -> torch.Tensor:
    factor = _uniform(generator, 0.5, 0.9) if factor is None else factor
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, round(h * factor)), max(1, round(w * factor))),
                          mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return images.flip(-1) if float(torch.rand(1, generator=generator)) < 0.5 else images


TRANSFORMS = {"jpeg": jpeg, "blur": blur, "resize": resize, "hflip": hflip}
