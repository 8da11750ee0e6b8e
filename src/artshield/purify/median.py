"""Median filter: each pixel becomes the median of its k x k neighbourhood, which removes isolated
extreme values (salt-and-pepper-like perturbation) while keeping edges. No canonical default was
found in the protection literature; k = 3, the smallest, changes clean art least."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import torch

from ..options import Limit
from .base import Purifier, PurifyConfig, from_uint8, register, to_uint8


@dataclass
class MedianConfig(PurifyConfig):
    kernel: int = 3
    limits = {"kernel": Limit(1, 255, unit="(pixels; even sizes are made odd)")}


@register("median")
class Median(Purifier):
    Config = MedianConfig

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return from_uint8(cv2.medianBlur(to_uint8(image), int(self.config.kernel) | 1))
