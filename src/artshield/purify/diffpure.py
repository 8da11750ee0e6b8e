"""DiffPure (Nie et al., ICML 2022, arXiv 2205.07460): diffuse the image part of the way to noise,
then run the model's reverse process back. The added noise swamps the perturbation; the reverse
process redraws the picture from what the model knows.

Here on a latent diffusion model: encode, noise the latent to t* = `t_star` * T, and denoise it
with ancestral (stochastic, DDPM-like) DDIM steps, eta = 1, unconditionally (empty prompt, no
guidance), then decode. The image is redrawn at the model's native size (short side) and resized
back. t* = 0.15 is DiffPure's ImageNet setting (0.1 for CIFAR-10 L-inf, 0.5 for CelebA-HQ).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling import img2img
from ._redraw import from_canvas, to_canvas
from ..options import Limit
from .base import Purifier, PurifyConfig, register


@dataclass
class DiffPureConfig(PurifyConfig):
    t_star: float = 0.15
    steps: int = 100           # sampler grid over the whole schedule; about t_star * steps are run
    limits = {"t_star": Limit(0, 1, low_open=True), "steps": Limit(1, 1000)}


@register("diffpure")
class DiffPure(Purifier):
    Config = DiffPureConfig
    needs_model = True

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = to_canvas(self.bundle, image)
        out = img2img(self.bundle, x, [""], self.config.t_star, generator, steps=self.config.steps, guidance=1.0,
                      eta=1.0)
        return from_canvas(out, image)
