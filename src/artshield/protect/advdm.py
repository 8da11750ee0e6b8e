"""AdvDM (Liang et al., ICML 2023, arXiv 2302.04578): make the image hard for the model to learn.

Maximises the latent diffusion training loss of the image,

    max_delta  E_{t ~ U[0, T), eps} || eps_theta(z_t(E(x + delta), eps), t, c) - eps ||^2,

with one random (t, eps) per image and step (a Monte-Carlo estimate of the expectation), through
the VAE encoder and the UNet. Fine-tuning on the protected image then fits a latent the model
finds hard to denoise, which spoils Textual Inversion, DreamBooth and LoRA on it.

Defaults, from the Mist code that carries AdvDM (mist_v3.py / mist_utils.py): budget 16/255,
step 1/255, 100 steps, prompt "a painting". We use the encoder's posterior mean where Mist samples
the posterior; the difference is the VAE's small posterior spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.diffusion import denoising_loss
from .base import ProtectConfig, Protection, register, scored_denoising_loss


@dataclass
class AdvDMConfig(ProtectConfig):
    budget: float = 16.0
    step: float = 1.0
    steps: int = 100


@register("advdm")
class AdvDM(Protection):
    Config = AdvDMConfig
    objective_name = "denoising_loss"
    objective_goal = "up"
    maximize = True

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        latents = self.bundle.encode(views)
        return denoising_loss(self.bundle, latents, self.context(len(views)), self.generator).sum()

    def score(self, views: torch.Tensor) -> torch.Tensor:
        return scored_denoising_loss(self.bundle, views, self.context(len(views)))
