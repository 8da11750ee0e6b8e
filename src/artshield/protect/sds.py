"""Score-distillation protections (Xue et al., "Toward effective protection against diffusion
based mimicry through score distillation", ICLR 2024, arXiv 2311.12832; code Diff-Protect).

The paper's finding: the VAE encoder, not the denoiser, is the weak point of a latent diffusion
model. So the gradient of the denoising loss is replaced by the score-distillation gradient, which
skips the UNet's Jacobian:

    grad_x  ~  (eps_theta(z_t, t, c) - eps) . dz/dx,     z = E(x + delta),

with the UNet evaluated without gradients: no activations kept for a backward pass through it.
The paper reports about half the memory and twice the speed of AdvDM on a GPU. On SD-1.5's
architecture at 512 px on a CPU, artshield measures 0.68x AdvDM's step memory and 0.83x its time
(`python -m artshield.bench.speed --sd15`, README): the VAE encoder, which both differentiate,
is most of a step there.

- `sds` (SDS+): ascend, like AdvDM: the denoising loss of the protected image goes up.
- `sds-minus` (SDS-): descend: the image becomes *easier* to denoise; the paper finds this gives
  more natural perturbations and stronger protection against SDEdit and fine-tuning.

Defaults (configs/attack/base.yaml): budget 16/255, step 1/255, 100 steps, t ~ U[0, T), starting
from the clean image (no random start).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.diffusion import diffusion_target, draws
from .base import ProtectConfig, Protection, register, scored_denoising_loss


@dataclass
class SDSConfig(ProtectConfig):
    budget: float = 16.0
    step: float = 1.0
    steps: int = 100
    random_start: bool = False     # Diff-Protect starts from the clean image


class _SDS(Protection):
    Config = SDSConfig
    objective_name = "denoising_loss"

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        latents = self.bundle.encode(views)
        noise, t = draws(self.bundle, tuple(latents.shape), self.generator)
        with torch.no_grad():
            noisy = self.bundle.scheduler.add_noise(latents, noise, t)
            pred = self.bundle.unet(noisy, t, encoder_hidden_states=self.context(len(views))).sample
            direction = pred - diffusion_target(self.bundle, latents, noise, t)
        # d/dz of <z, direction> is the SDS gradient: the UNet is never differentiated
        return (latents * direction.detach()).sum()

    def score(self, views: torch.Tensor) -> torch.Tensor:
        return scored_denoising_loss(self.bundle, views, self.context(len(views)))


@register("sds")
class SDSPlus(_SDS):
    objective_goal = "up"
    maximize = True


@register("sds-minus")
class SDSMinus(_SDS):
    objective_goal = "down"
    maximize = False
