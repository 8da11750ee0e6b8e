"""Differentiable image transforms for EOT (expectation over transformation).

Each takes (B, 3, H, W) images in [0, 1] and a CPU generator for its random parameters, and
returns images of the same shape. They stand in for what happens to a picture after it is posted
or what a mimic does first (JPEG re-encoding, blur, rescaling), so that a perturbation optimised
through them survives them.

- jpeg: JPEG at a random quality in [50, 95]: YCbCr, chroma subsampled 4:2:0 as Pillow does by
  default (the bench's JPEG purifier), 8x8 block DCT, quantisation by the standard IJG tables
  scaled to the quality, inverse DCT, chroma upsampled as libjpeg does. Rounding passes the
  gradient straight through (BPDA), the usual differentiable stand-in for the codec.
- blur: Gaussian blur, sigma uniform in [0.3, 1.2] pixels (a kernel of radius ceil(3 sigma) unless
  given), reflected at the border.
- resize: down to a random 50-90 % of the size (bilinear, antialiased) and back up.
- hflip: the batch mirrored left to right with probability 1/2 (MetaCloak's EOT has it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# what the EOT transforms (and robust's differentiable members) compute, recorded in each bench cell:
# 1 until session 18 (JPEG 4:4:4, robust's blur a Gaussian of radius ceil(3 sigma) mirrored about the
# edge pixel); 2: JPEG 4:2:0 with libjpeg's resampling, robust's blur a superset of the bench's
VERSION = 2

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
    """The IJG scaling of the standard tables for a quality in [1, 100]. An integer quality takes
    libjpeg's integer arithmetic (5000 // q below 50), so its tables are those Pillow writes; a
    fractional one (the EOT draws them) scales by 5000 / q, between its neighbours'."""
    q = min(max(quality, 1.0), 100.0)
    if q < 50:
        scale = 5000 // int(q) if float(q).is_integer() else 5000 / q
    else:
        scale = 200 - 2 * q
    return tuple(((t * scale + 50) / 100).floor().clamp(1, 255) for t in (_LUMA, _CHROMA))


def _quantised(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) level-shifted planes, H and W multiples of 8, through the 8 x 8 block DCT, quantised
    by `table` with straight-through rounding, and back."""
    b, c, h, w = planes.shape
    blocks = planes.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)      # b c i j 8 8
    m = _dct_matrix(planes.device)
    scaled = (m @ blocks @ m.T) / table
    rounded = scaled + (scaled.round() - scaled).detach()      # straight-through rounding
    blocks = m.T @ (rounded * table) @ m
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def _round(x: torch.Tensor) -> torch.Tensor:
    """Rounding to whole 8-bit levels with the gradient passed straight through."""
    return x + (x.round() - x).detach()


def _floor(x: torch.Tensor) -> torch.Tensor:
    return x + (x.floor() - x).detach()


def _neighbour(c: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """c shifted by one along `dim` (step -1: each element's predecessor), the edge repeated."""
    n = c.shape[dim]
    if step < 0:
        return torch.cat([c.narrow(dim, 0, 1), c.narrow(dim, 0, n - 1)], dim)
    return torch.cat([c.narrow(dim, 1, n - 1), c.narrow(dim, n - 1, 1)], dim)


def _downsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 downsampling: the sum of each 2 x 2 block plus a bias of 1 and 2 on alternate
    output columns, divided by 4 and floored."""
    total = F.avg_pool2d(c, 2) * 4
    bias = torch.tensor([1.0, 2.0], device=c.device).repeat((c.shape[-1] // 2 + 1) // 2)[:c.shape[-1] // 2]
    return _floor((total + bias) / 4)


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" upsampling in its integer form: column sums 3 x nearer + farther row,
    then 3 x this + the neighbouring column's, plus 8 (even outputs) or 7 (odd), over 16, floored."""
    col = torch.stack([3 * c + _neighbour(c, 2, -1), 3 * c + _neighbour(c, 2, 1)], 3).flatten(2, 3)
    even = _floor((3 * col + _neighbour(col, 3, -1) + 8) / 16)
    odd = _floor((3 * col + _neighbour(col, 3, 1) + 7) / 16)
    return torch.stack([even, odd], 4).flatten(3, 4)


def jpeg(images: torch.Tensor, generator: torch.Generator, quality: float | None = None,
         subsampling: bool = True) -> torch.Tensor:
    """JPEG as Pillow writes and reads it by default: YCbCr, chroma subsampled 4:2:0 (2 x 2 sums with
    libjpeg's alternating bias), block DCT quantised by the IJG tables at `quality`, chroma brought
    back by libjpeg's "fancy" upsampling (a triangle filter, in its integer form). Each stage rounds
    to whole levels where libjpeg keeps 8-bit samples (after colour conversion, downsampling, the
    inverse DCT and upsampling), with the gradient passed straight through. `subsampling=False`: 4:4:4."""
    quality = _uniform(generator, 50, 95) if quality is None else quality
    b, _, h, w = images.shape
    unit = 16 if subsampling else 8
    ph, pw = (-h) % unit, (-w) % unit
    x = _round(F.pad(images, (0, pw, 0, ph), mode="replicate") * 255)
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    y = _round(0.299 * r + 0.587 * g + 0.114 * bl)[:, None]
    chroma = _round(torch.stack([-0.168736 * r - 0.331264 * g + 0.5 * bl,
                                 0.5 * r - 0.418688 * g - 0.081312 * bl], 1) + 128)
    luma_table, chroma_table = (t.to(images.device).view(1, 1, 1, 1, 8, 8) for t in quality_tables(quality))
    if subsampling:
        chroma = _downsample(chroma)
    chroma = _round(_quantised(chroma - 128, chroma_table) + 128).clamp(0, 255)
    if subsampling:
        chroma = _fancy_upsample(chroma)
    y = _round(_quantised(y - 128, luma_table) + 128).clamp(0, 255)[:, 0]
    cb, cr = chroma[:, 0] - 128, chroma[:, 1] - 128
    rgb = _round(torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)) / 255
    return rgb[:, :, :h, :w].clamp(0, 1)


def _symmetric(images: torch.Tensor, r: int) -> torch.Tensor:
    """Padding by r on every side, mirrored with the edge pixel repeated (OpenCV's BORDER_REFLECT)."""
    x = torch.cat([images[..., :r].flip(-1), images, images[..., -r:].flip(-1)], -1)
    return torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], -2)


# OpenCV's 7-tap kernel for GaussianBlur(ksize 7, sigma 0): a fixed table, not a sampled Gaussian
OPENCV_7 = (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)


def blur(images: torch.Tensor, generator: torch.Generator, sigma: float | None = None,
         radius: int | None = None, border: str = "reflect", taps=None) -> torch.Tensor:
    """A separable Gaussian (or the 1-D kernel `taps`). border "reflect": mirrored about the edge pixel
    (torch's, OpenCV's BORDER_REFLECT_101); "symmetric": the edge pixel repeated (OpenCV's
    BORDER_REFLECT, the bench's gaussian-blur)."""
    if border not in ("reflect", "symmetric"):
        raise ValueError(f"blur border must be 'reflect' or 'symmetric', not {border!r}")
    if taps is not None:
        k = torch.tensor(taps, dtype=images.dtype, device=images.device)
        radius = len(taps) // 2
    else:
        sigma = _uniform(generator, 0.3, 1.2) if sigma is None else sigma
        radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
        t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = images.shape[1]
    x = _symmetric(images, radius) if border == "symmetric" else \
        F.pad(images, (radius, radius, radius, radius), mode="reflect")
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
