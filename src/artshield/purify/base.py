"""What every purifier shares: the registry, the config base, and array conversions.

A purifier is what a mimic runs on downloaded images before fine-tuning, to strip a protective
perturbation. Each is one class with a config dataclass of documented defaults (from its source),
registered under a name. Built from a bundle (None for the filters, which need no model) and a
config, it maps a list of (C, H, W) images in [0, 1] (any sizes) to purified images of the same
shapes. Randomness comes from the CPU generator it is given.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..options import Overridable, Registry, seeded

PURIFIERS = Registry("purify")
register = PURIFIERS.register


@dataclass
class PurifyConfig(Overridable):
    """Base of the purifiers' configs."""


class Purifier(ABC):
    name = ""
    Config = PurifyConfig
    needs_model = False          # True: it runs the diffusion model (noisy-redraw, noisy-upscale, diffpure, impress)

    def __init__(self, bundle=None, config: PurifyConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()
        if self.needs_model and bundle is None:
            raise ValueError(f"{self.name} needs a model")

    def run(self, images: list[torch.Tensor], generator: torch.Generator | None = None,
            progress=None) -> list[torch.Tensor]:
        """Purified copies of (C, H, W) images in [0, 1], same shapes, on the CPU, in [0, 1]."""
        generator = seeded(generator)
        out = []
        for x in images:
            out.append(self.one(x, generator).cpu().float().clamp(0, 1))
            if progress is not None:
                progress(1)
        return out

    def total_steps(self, n_images: int) -> int:
        return n_images

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
