"""Edge-preserving smoothing: the bilateral filter, and the AdverseCleaner recipe built on it.

The bilateral filter (Tomasi and Manduchi 1998) replaces each pixel by a weighted mean of its
5 x 5 neighbourhood, with weights

    w(n, m) = exp(-alpha (n^2 + m^2)) * exp(-beta (f(i, j) - f(i + n, j + m))^2),

near in position (alpha) and near in value (beta): flat areas are smoothed, so a small
perturbation goes, while edges stay. OpenCV's bilateralFilter computes it, with
alpha = 1 / (2 sigma_space^2) and beta = 1 / (2 sigma_color^2) (values in 0-255).

AdverseCleaner (lllyasviel, 2023; the widely copied "de-Glaze" script) repeats it 64 times with
d = 5, sigma_color = sigma_space = 8, then applies a guided filter (He et al., ECCV 2010) 4 times
with the *original* image as the guide (radius 4, eps 16 on 0-255 values), which brings back
edges the repeated smoothing blurred. These are the defaults; passes = 1 and guided_passes = 0
give the single filter.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..options import POSITIVE, Limit
from .base import Purifier, PurifyConfig, from_uint8, register, to_uint8


@dataclass
class BilateralConfig(PurifyConfig):
    diameter: int = 5
    sigma_color: float = 8.0       # 0-255 units
    sigma_space: float = 8.0       # pixels
    passes: int = 64
    guided_passes: int = 4
    guided_radius: int = 4
    guided_eps: float = 16.0       # 0-255 units, squared scale as in AdverseCleaner
    limits = {"diameter": Limit(1, 31), "sigma_color": Limit(0, 1000, low_open=True),
              "sigma_space": Limit(0, 1000, low_open=True), "passes": Limit(0, 1000), "guided_passes": Limit(0, 100),
              "guided_radius": Limit(1, 64), "guided_eps": POSITIVE}


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter, per channel with each channel of the guide; float arrays (H, W, C)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a):                 # OpenCV drops a single channel's axis: put it back
        return cv2.boxFilter(a, -1, size, borderType=cv2.BORDER_REFLECT).reshape(a.shape)

    mean_i, mean_p = box(guide), box(source)
    cov = box(guide * source) - mean_i * mean_p
    var = box(guide * guide) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


@register("bilateral")
class Bilateral(Purifier):
    Config = BilateralConfig

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if image.shape[0] == 1:
            # AdverseCleaner reads every file in colour (cv2.imread), a grey one as three equal channels;
            # OpenCV's filter on one channel weighs value differences three times less than on those
            # three, so the grey image goes through as colour and comes back as one of its equal channels
            return self.one(image.expand(3, -1, -1), generator)[:1]
        c = self.config
        original = to_uint8(image)
        x = original
        for _ in range(c.passes):
            x = cv2.bilateralFilter(x, c.diameter, c.sigma_color, c.sigma_space)
        if c.guided_passes:
            y = x.astype(np.float32)
            for _ in range(c.guided_passes):
                y = guided_filter(original.astype(np.float32), y, c.guided_radius, c.guided_eps)
            x = np.clip(np.round(y), 0, 255).astype(np.uint8)
        return from_uint8(x)
