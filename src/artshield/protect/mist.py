"""Mist v1 (Liang et al., arXiv 2305.12683; code psyker-team/mist, mist_v3.py): AdvDM fused with a
textural loss toward a target image.

    max_delta  w * L_semantic(x + delta)  -  L_textural(x + delta)

L_semantic is AdvDM's denoising loss (see advdm.py). L_textural = || E(x + delta) - E(y) ||^2, the
squared distance of the protected image's latent to the latent of a target image y with a strong
texture, so that whatever the model learns from the image carries y's pattern. Mist's default
"fused" mode weighs them with w = 10^(rate + 3) = 1e4 (rate 1).

Mist sums L_textural over the latent's elements, whatever their number, and so does artshield:
the balance between the two terms is then Mist's own on any model and image size (on mini's
8 x 8 latents the texture term weighs 64 times less than on SD's 64 x 64, as in Mist's code).

Defaults (mist_utils.py): budget 16/255, step 1/255, 100 steps, prompt "a painting", rate 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.diffusion import denoising_loss
from . import targets
from .base import ProtectConfig, Protection, register, scored_denoising_loss

@dataclass
class MistConfig(ProtectConfig):
    budget: float = 16.0
    step: float = 1.0
    steps: int = 100
    rate: float = 1.0                      # fused weight w = 10 ** (rate + 3)
    target: object = "texture"             # "texture", "grey", or a (3, H, W) image tensor


@register("mist")
class Mist(targets.TargetLatent, Protection):
    Config = MistConfig
    objective_name = "fused_objective"     # w * denoising loss - textural loss
    objective_goal = "up"
    maximize = True

    @property
    def weight(self) -> float:
        return 10.0 ** (self.config.rate + 3)

    def textural(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents.float() - self.target_latent().float()).pow(2).flatten(1).sum(1)

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        latents = self.bundle.encode(views)
        semantic = denoising_loss(self.bundle, latents, self.context(len(views)), self.generator)
        return (self.weight * semantic - self.textural(latents)).sum()

    def components(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        semantic = scored_denoising_loss(self.bundle, views, self.context(len(views)))
        with torch.no_grad():
            textural = self.textural(self.bundle.encode(views)).cpu()
        return {"fused_objective": self.weight * semantic - textural, "denoising_loss": semantic,
                "textural_loss": textural}

    def score(self, views: torch.Tensor) -> torch.Tensor:
        return self.components(views)["fused_objective"]
