"""PhotoGuard's encoder attack (Salman et al., ICML 2023, arXiv 2302.06588; code MadryLab/photoguard).

Pushes the image's VAE latent toward a target latent, so that anything built on the latent
(img2img edits, and the fine-tuning that starts from it) sees the target instead of the artwork:

    min_delta  || E(x + delta) - z_target ||_2

Only the encoder is differentiated: the cheapest of the attacks. PGD with a random start and a
step that decays linearly to zero. Defaults from the img2img notebook: budget 0.06 on [-1, 1]
(7.65/255; written files change by at most 7 on the 8-bit grid), step 0.02 (2.55/255), 1000 iterations, target: the zero
latent (the notebook minimises the latent's norm). The inpainting demo uses a grey image's latent
instead (target "grey"), 200 iterations and a budget of 15/255.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import targets
from .base import ProtectConfig, Protection, register


@dataclass
class PhotoGuardConfig(ProtectConfig):
    budget: float = 7.65
    step: float = 2.55
    steps: int = 1000
    target: object = "zero"                # "zero", "grey", "texture", or a (3, H, W) image tensor


@register("photoguard")
class PhotoGuard(targets.TargetLatent, Protection):
    Config = PhotoGuardConfig
    objective_name = "latent_distance_to_target"
    objective_goal = "down"
    maximize = False
    step_decay = True

    def distance(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents.float() - self.target_latent().float()).flatten(1).norm(dim=1)

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        return self.distance(self.bundle.encode(views)).sum()

    @torch.no_grad()
    def score(self, views: torch.Tensor) -> torch.Tensor:
        return self.distance(self.bundle.encode(views)).cpu()
