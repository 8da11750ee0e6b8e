"""What every purifier shares: the registry, the config base, and array conversions.

A purifier is what a mimic runs on downloaded images before fine-tuning, to strip a protective
perturbation. Each is one class with a config dataclass of documented defaults (from its source),
registered under a name; it maps a list of (C, H, W) images in [0, 1] (any sizes) to purified
images of the same shapes. Randomness comes from the CPU generator it is given.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..options import Overridable, registrar
PURIFIERS: dict[str, type[Purifier]] = {}


register = registrar(PURIFIERS)


@dataclass
class PurifyConfig(Overridable):
    """Base of the purifiers' configs."""


class Purifier(ABC):
    name = ""
    Config = PurifyConfig
    needs_model = False          # True: it runs the diffusion model (noisy-upscale, diffpure, impress)

    def __init__(self, config: PurifyConfig | None = None, bundle=None):
        self.config = config or self.Config()
        self.bundle = bundle
        if self.needs_model and bundle is None:
            raise ValueError(f"{self.name} needs a model")

    def __call__(self, images: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        return [self.one(x, generator) for x in images]

    @abstractmethod
    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One (C, H, W) image in [0, 1] -> its purified copy, same shape."""


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) uint8, rounded."""
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 -> (C, H, W) float in [0, 1]."""
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255
