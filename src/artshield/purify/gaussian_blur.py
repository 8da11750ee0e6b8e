"""Gaussian blur: a low-pass filter. Kernel 7 x 7 (MetaCloak's robustness transform, gauK = 7) with
sigma 0, which OpenCV turns into its fixed taps for kernels up to 7 px ([1, 3.5, 7, 9, 7, 3.5, 1] / 32
at 7, close to a Gaussian of sigma 1.4; larger kernels get sigma 0.3 ((k - 1) / 2 - 1) + 0.8), the
border reflected with the edge pixel repeated (BORDER_REFLECT)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import torch

from ..options import Limit
from .base import Purifier, PurifyConfig, from_uint8, register, to_uint8


@dataclass
class GaussianBlurConfig(PurifyConfig):
    kernel: int = 7
    sigma: float = 0.0      # 0: from the kernel size
    limits = {"kernel": Limit(1, 255, unit="(pixels; even sizes are made odd)"), "sigma": Limit(0, 100)}


@register("gaussian-blur")
class GaussianBlur(Purifier):
    Config = GaussianBlurConfig

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        k = int(self.config.kernel) | 1
        out = cv2.GaussianBlur(to_uint8(image), (k, k), self.config.sigma, borderType=cv2.BORDER_REFLECT)
        return from_uint8(out)
