"""A Glaze-style cloak (Shan et al., USENIX Security 2023, arXiv 2302.04222). Glaze itself is closed
source; this follows the paper's formulation:

    min_delta  || Phi(x + delta) - Phi(Omega(x, T)) ||^2  +  alpha * max(LPIPS(x + delta, x) - p, 0)

- Phi: the model's image feature extractor; for a latent diffusion model, the VAE encoder (its
  posterior mean), which is what fine-tuning sees of an image.
- Omega(x, T): x restyled into a target style T by the model itself (img2img, see sampling.py),
  prompt from the model's style template (mini: "icon, <T> style"; Stable Diffusion: "an artwork
  in the style of <T>").
- T: chosen from the model's known styles (mini: its training themes; otherwise a list of art
  styles) as Glaze does, far from the artist's own but not the extreme: every candidate restyles
  the batch, candidates are ranked by the mean feature distance of the restyled images to the
  originals, and the one at the 75th percentile is taken. One T for the whole batch, so a
  portfolio is cloaked consistently. `target_style` sets it by hand.
- LPIPS (AlexNet, v0.1) on the full-resolution pair is the perceptual budget p (the paper's
  abstract reports p = 0.05). An L-infinity box (16/255 by default) stays as an outer bound.

The feature term is normalised by its value on the clean image, so alpha = 10 means that one unit
of LPIPS above p weighs ten times the whole initial feature distance. Optimised with sign-PGD
steps of 0.5/255 for 200 iterations (IMPRESS's reimplementation of Glaze runs 500).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics.image import perceptual_size
from ..metrics.lpips import lpips_model
from ..sampling import img2img
from ..options import FRACTION, Limit
from .base import ProtectConfig, Protection, register

ART_STYLES = ("Vincent van Gogh", "Claude Monet", "Katsushika Hokusai", "Gustav Klimt", "Rembrandt",
              "cubism", "pointillism", "ukiyo-e", "art nouveau", "pixel art", "charcoal sketch", "pop art")


@dataclass
class GlazeConfig(ProtectConfig):
    budget: float = 16.0           # outer L-infinity bound
    step: float = 0.5
    steps: int = 200
    lpips_budget: float = 0.05     # p
    alpha: float = 10.0            # penalty weight above p
    strength: float = 0.6          # img2img strength of the style transfer Omega
    target_style: str | None = None
    percentile: float = 0.75       # which candidate to take, ranked by distance from the artwork
    limits = {**ProtectConfig.limits, "lpips_budget": FRACTION, "alpha": Limit(0), "percentile": FRACTION,
              "strength": Limit(0, 1, low_open=True)}
    random_start: bool = False     # grow from the artwork itself: a random start would spend the
                                   # perceptual budget on noise


@register("glaze")
class Glaze(Protection):
    Config = GlazeConfig
    objective_name = "feature_distance_to_cloak_target"
    objective_goal = "down"
    maximize = False

    def styles(self) -> list[str]:
        return list(self.bundle.conventions.styles or ART_STYLES)

    def style_prompt(self, style: str) -> str:
        return self.bundle.conventions.style(style)

    @torch.no_grad()
    def setup(self, pgd) -> None:
        views = pgd.views(moving=False, transform=False).detach()
        features = self.bundle.encode(views).float()
        candidates = [self.config.target_style] if self.config.target_style else self.styles()
        restyled, distances = {}, []
        for style in candidates:
            out = img2img(self.bundle, views, [self.style_prompt(style)] * len(views), self.config.strength,
                          self.generator)
            restyled[style] = out
            distances.append(float((self.bundle.encode(out).float() - features).pow(2).mean()))
        order = sorted(range(len(candidates)), key=lambda k: distances[k])
        pick = order[round(self.config.percentile * (len(order) - 1))]
        self.target_style = candidates[pick]
        self.target_images = restyled[self.target_style]
        self.target_features = self.bundle.encode(self.target_images).float()
        self.initial = (features - self.target_features).pow(2).flatten(1).mean(1).clamp_min(1e-8)
        self.lpips = lpips_model(str(self.bundle.device))
        self.clean_small = [perceptual_size(x[None], 512) for x in pgd.images]

    def feature_distance(self, views: torch.Tensor) -> torch.Tensor:
        return (self.bundle.encode(views).float() - self.target_features).pow(2).flatten(1).mean(1)

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        feature = self.feature_distance(views) / self.initial
        penalty = []
        for clean, adv in zip(self.clean_small, pgd.perturbed()):
            adv = perceptual_size(adv[None], 512)
            if adv.shape[1] == 1:
                adv, clean = adv.expand(-1, 3, -1, -1), clean.expand(-1, 3, -1, -1)
            penalty.append(torch.relu(self.lpips(adv, clean) - self.config.lpips_budget))
        return (feature + self.config.alpha * torch.cat(penalty)).sum()

    @torch.no_grad()
    def score(self, views: torch.Tensor) -> torch.Tensor:
        return self.feature_distance(views).cpu()
