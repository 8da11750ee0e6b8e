"""JPEG re-encoding: the codec's quantisation of high frequencies removes part of a perturbation.
Quality 75 (CopyrightMeter's default; Glaze's paper tested JPEG as an early countermeasure)."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..options import Limit
from .base import Purifier, PurifyConfig, from_uint8, register, to_uint8


@dataclass
class JPEGConfig(PurifyConfig):
    quality: int = 75
    limits = {"quality": Limit(1, 100)}


@register("jpeg")
class JPEG(Purifier):
    Config = JPEGConfig

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        array = to_uint8(image)
        pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(self.config.quality))
        buf.seek(0)
        with Image.open(buf) as decoded:
            return from_uint8(np.asarray(decoded))
