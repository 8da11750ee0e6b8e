"""How visible is a perturbation? Full-reference image metrics on tensors in [0, 1].

- linf_255: the largest change of any pixel channel, in 0-255 units (the protection budget's unit)
- psnr: peak signal-to-noise ratio in dB (inf for identical images)
- ssim: structural similarity (scikit-image, Gaussian window as in Wang et al. 2004), 1 = identical
- lpips: learnt perceptual distance (see metrics/lpips.py), 0 = identical
- visibility: all four for a pair, the record every command writes
- brisque: a no-reference quality score of one image (the protect report shows it beside them)
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11   # skimage's window at sigma 1.5 with Gaussian weights: 2 * int(3.5 * 1.5 + 0.5) + 1


def linf_255(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() * 255)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.float() - b.float()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR of each pair of two (N, C, H, W) batches, (N,); identical pairs count as 100 dB."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, max_side: int = 2048) -> float:
    """SSIM of two (C, H, W) images; images under 11 pixels a side (the Gaussian window's extent at
    sigma 1.5) are compared scaled up (nearest neighbour) to 11, images over `max_side` on the long
    side at that size (so memory stays bounded whatever the image)."""
    from skimage.metrics import structural_similarity

    if max(a.shape[-2:]) > max_side:
        a, b = (perceptual_size(t.float()[None], max_side)[0] for t in (a, b))
    if min(a.shape[-2:]) < SSIM_WINDOW:
        scale = SSIM_WINDOW / min(a.shape[-2:])
        size = [max(SSIM_WINDOW, math.ceil(s * scale)) for s in a.shape[-2:]]
        a, b = (F.interpolate(t.float()[None], size=size, mode="nearest")[0] for t in (a, b))
    x = a.detach().double().cpu().permute(1, 2, 0).numpy()
    y = b.detach().double().cpu().permute(1, 2, 0).numpy()
    return float(structural_similarity(x, y, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


@torch.no_grad()
def lpips(a: torch.Tensor, b: torch.Tensor, max_side: int = 512) -> float:
    """LPIPS of two (C, H, W) images; large images are compared at max_side on the long side,
    small ones at 64 on the short side."""
    from .lpips import lpips_model

    x, y = perceptual_size(a.float()[None], max_side), perceptual_size(b.float()[None], max_side)
    if x.shape[1] == 1:
        x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
    return float(lpips_model("cpu")(x.cpu(), y.cpu())[0])


def perceptual_size(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """(N, C, H, W) images at the size a perceptual metric reads them: the long side brought down to
    `max_side` when over it, else the short side up to 64 when under it (antialiased bilinear, as
    PIL's), values clipped to [0, 1]; unchanged (the same tensor) otherwise."""
    h, w = x.shape[-2:]
    scale = max_side / max(h, w) if max(h, w) > max_side else max(64 / min(h, w), 1.0)
    if scale == 1.0:
        return x
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def visibility(changed: torch.Tensor, original: torch.Tensor, exact: bool = False) -> dict:
    """How far `changed` is from `original`, two (C, H, W) images: linf_255 and psnr_db (3 decimals),
    ssim and lpips (5 decimals); unrounded with `exact`."""
    values = {"linf_255": (linf_255(changed, original), 3), "psnr_db": (psnr(changed, original), 3),
              "ssim": (ssim(changed, original), 5), "lpips": (lpips(changed, original), 5)}
    return {k: v if exact else round(v, digits) for k, (v, digits) in values.items()}


BRISQUE_MIN_SIDE = 256      # below it, ±16/255 noise did not raise BRISQUE on every scikit-image photo tried


def brisque(image: torch.Tensor) -> float | None:
    """BRISQUE (Mittal et al., IEEE TIP 2012), the no-reference quality score of a (C, H, W) image in
    [0, 1]: lower is better, about 0-100 on photographs. It comes from the `brisque` package (the
    [quality] extra: its features and its SVM fitted on the LIVE database, which it ships); None when the
    package is not installed. brisque 0.2.0's own `score` fails on numpy 2 (its features come out as
    1-element arrays), so the same two-scale features are computed with its methods and flattened
    before its SVM scores them. None also for an image without local contrast (a flat colour), whose
    features are undefined."""
    try:
        import cv2
        import skimage.color
        from brisque import BRISQUE
    except ImportError:
        return None
    import warnings

    model = _brisque_model(BRISQUE)
    rgb = image.detach().float().cpu().clamp(0, 1)
    rgb = rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb[:3]
    gray = skimage.color.rgb2gray((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    with warnings.catch_warnings():            # a flat image's statistics divide by zero: no score, said below
        warnings.simplefilter("ignore", RuntimeWarning)
        features = [float(np.ravel(f)[0]) for scale in (gray, half)
                    for f in model.calculate_brisque_features(scale, kernel_size=7, sigma=7 / 6)]
        if not np.isfinite(features).all():   # a flat image (no local contrast) has no BRISQUE
            return None
        score = float(model.calculate_image_quality_score(np.array(features)))
    return score if math.isfinite(score) else None


@functools.lru_cache(maxsize=1)
def _brisque_model(cls):
    return cls(url=False)


def amplified_change(clean: torch.Tensor, changed: torch.Tensor, budget: float) -> torch.Tensor:
    """|change| scaled so that the full budget (in /255) is white: where and how much was changed."""
    return ((changed - clean).abs() * 255 / max(budget, 1e-6)).clamp(0, 1)
