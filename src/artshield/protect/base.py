"""What every protection shares: the registry, the config base, and the scored objective.

A protection is one class with a config dataclass of documented defaults (its paper's), registered
under a name. Built from a model bundle and a config, it runs on a batch of images with a generator
and returns one full-resolution perturbation per image. It also names the objective it optimises
and can score it, so a run can report the objective before and after, and under random noise of
the same budget. The diffusion loss itself lives in models.diffusion, shared with mimicry and the
audit.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import ModelBundle
from ..models.diffusion import denoising_loss, stratified_timesteps
from ..options import Limit, Overridable, Registry, seeded
from .engine import PGD, Budget

METHODS = Registry("protect")
register = METHODS.register
SCORE_SEED = 20230601    # the fixed draws (timesteps, noise) every objective is scored with
SCORE_DRAWS = 8


@dataclass
class ProtectConfig(Overridable):
    budget: float = 8.0        # L-infinity, 0-255 pixel units
    step: float = 1.0          # PGD sign-step, 0-255 units
    steps: int = 100           # PGD iterations
    prompt: str | None = None  # text condition; None: the model's generic prompt
    eot: tuple[str, ...] = ()  # EOT transforms, see transforms.py
    random_start: bool = True

    limits = {"budget": Limit(0, 255, low_open=True, unit="(0-255 pixel units)"),
              "step": Limit(0, 255, low_open=True, unit="(0-255 pixel units)"), "steps": Limit(1, 1_000_000)}

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.eot, str) or not all(isinstance(t, str) for t in self.eot):
            raise ValueError(f"eot must be a list of transform names, not {self.eot!r}")
        self.budget_spec()          # checks the EOT names

    def budget_spec(self, decay: bool = False) -> Budget:
        return Budget(linf=self.budget, step=self.step, steps=self.steps, random_start=self.random_start,
                      decay=decay, eot=tuple(self.eot))


class Protection(ABC):
    """Base class. Subclasses set `name` (by @register), `Config`, `objective_name`, `objective_goal`
    ("up" or "down"), and implement `loss` and `score` (or override `run`)."""

    name = ""
    Config = ProtectConfig
    objective_name = ""
    objective_goal = "up"
    maximize = True            # PGD's direction on `loss`
    step_decay = False

    def __init__(self, bundle: ModelBundle, config: ProtectConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()
        self.generator = seeded(None)       # replaced by run's generator
        self.context_cache: dict[str, torch.Tensor] = {}

    # --- helpers for subclasses -------------------------------------------------------------
    @property
    def prompt(self) -> str:
        return self.config.prompt if self.config.prompt is not None else self.bundle.conventions.generic_prompt

    def context(self, batch: int, prompt: str | None = None) -> torch.Tensor:
        prompt = self.prompt if prompt is None else prompt
        if prompt not in self.context_cache:
            with torch.no_grad():
                self.context_cache[prompt] = self.bundle.embed([prompt])
        return self.context_cache[prompt].expand(batch, -1, -1)

    # --- the interface ----------------------------------------------------------------------
    def setup(self, pgd: PGD) -> None:
        """Precompute what the loss needs (targets) from the clean images."""

    @abstractmethod
    def loss(self, views: torch.Tensor, pgd: PGD) -> torch.Tensor:
        """A scalar that PGD moves in the direction of `maximize`."""

    @abstractmethod
    def score(self, views: torch.Tensor) -> torch.Tensor:
        """The objective, per image, with fixed random draws: comparable across calls."""

    def components(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective and, for composite objectives, its parts, per image."""
        return {self.objective_name: self.score(views)}

    def run(self, images: list[torch.Tensor], generator: torch.Generator | None = None,
            progress: Callable[[int], None] | None = None) -> list[torch.Tensor]:
        """One perturbation per (C, H, W) image, on the 8-bit grid within the budget; every random
        draw (start, timesteps, noise, transforms) from `generator`."""
        self.generator = seeded(generator)
        pgd = self.engine(images)
        self.setup(pgd)
        pgd.run(lambda views: self.loss(views, pgd), maximize=self.maximize, progress=progress)
        return pgd.deltas()

    def denoising_steps(self, unet, params: list, opt, images: torch.Tensor, steps: int, start: int,
                        clip: float | None = None, before=None) -> None:
        """`steps` optimiser steps of a surrogate `unet` on the denoising loss, one image per step,
        cycling through `images` from `start` (ASPL, ACE and MetaCloak train their surrogates so);
        `clip`: the gradients' norm bound; `before(k)`: called before step k."""
        from ..models.diffusion import denoising_loss

        for k in range(steps):
            if before is not None:
                before(k)
            i = (start + k) % len(images)
            with torch.no_grad():
                latents = self.bundle.encode(images[i:i + 1]).float()
            loss = denoising_loss(self.bundle, latents, self.context(1).float(), self.generator, unet=unet).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()

    def engine(self, images: list[torch.Tensor]) -> PGD:
        return PGD(images, self.config.budget_spec(self.step_decay), self.bundle.image_size, self.generator,
                   self.bundle.device)

    def total_steps(self, n_images: int) -> int:
        """Progress units `run` reports."""
        return self.config.steps


@torch.no_grad()
def scored_denoising_loss(bundle: ModelBundle, views: torch.Tensor, context: torch.Tensor, unet=None) -> torch.Tensor:
    """denoising_loss averaged over SCORE_DRAWS stratified timesteps with fixed noise: a per-image
    objective that is the same function before and after protection."""
    g = torch.Generator("cpu").manual_seed(SCORE_SEED)
    latents = bundle.encode(views)
    total = torch.zeros(len(views), device=bundle.device)
    for t in stratified_timesteps(bundle, SCORE_DRAWS):
        total += denoising_loss(bundle, latents, context, g, t.repeat(len(views)), unet=unet)
    return (total / SCORE_DRAWS).cpu()
