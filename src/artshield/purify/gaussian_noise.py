"""Additive Gaussian noise, clipped to [0, 1]: drowns a small perturbation in a larger random one
before fine-tuning. sigma 0.05 on [0, 1] values (Honig et al., ICLR 2025, noise.py: skimage's
random_noise with var = sigma^2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import Limit
from .base import Purifier, PurifyConfig, register


@dataclass
class GaussianNoiseConfig(PurifyConfig):
    sigma: float = 0.05
    limits = {"sigma": Limit(0, 1, unit="(on pixels in [0, 1])")}


@register("gaussian-noise")
class GaussianNoise(Purifier):
    Config = GaussianNoiseConfig

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(image.shape, generator=generator) * self.config.sigma
        return (image.float().cpu() + noise).clamp(0, 1)
