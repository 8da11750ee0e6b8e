"""What every protection shares: the registry, the config base, and the diffusion losses.

A protection is one class with a config dataclass of documented defaults (its paper's), registered
under a name. It gets a model bundle and a batch of images, and returns one full-resolution
perturbation per image. It also names the objective it optimises and can score it, so a run can
report the objective before and after, and under random noise of the same budget.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import ModelBundle
from ..options import Overridable, registrar
from .engine import PGD, Budget

METHODS: dict[str, type[Protection]] = {}
SCORE_SEED = 20230601    # the fixed draws (timesteps, noise) every objective is scored with
SCORE_DRAWS = 8


register = registrar(METHODS)


@dataclass
class ProtectConfig(Overridable):
    budget: float = 8.0        # L-infinity, 0-255 pixel units
    step: float = 1.0          # PGD sign-step, 0-255 units
    steps: int = 100           # PGD iterations
    prompt: str | None = None  # text condition; None: the model's generic prompt
    eot: tuple[str, ...] = ()  # EOT transforms, see transforms.py
    random_start: bool = True

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        self.budget_spec()          # checks the budget, the step and the EOT names

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

    def __init__(self, bundle: ModelBundle, config: ProtectConfig | None = None, seed: int = 0):
        self.bundle = bundle
        self.config = config or self.Config()
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.context_cache: dict[str, torch.Tensor] = {}

    # --- helpers for subclasses -------------------------------------------------------------
    @property
    def prompt(self) -> str:
        return self.config.prompt if self.config.prompt is not None else generic_prompt(self.bundle)

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

    def run(self, images: list[torch.Tensor], progress: Callable[[int], None] | None = None) -> list[torch.Tensor]:
        pgd = PGD(images, self.config.budget_spec(self.step_decay), self.bundle.image_size, self.generator,
                  self.bundle.device)
        self.setup(pgd)
        pgd.run(lambda views: self.loss(views, pgd), maximize=self.maximize, progress=progress)
        return pgd.deltas()

    def total_steps(self, n_images: int) -> int:
        """Progress units `run` reports."""
        return self.config.steps


def generic_prompt(bundle: ModelBundle) -> str:
    """The prompt a protection conditions on when none is given: AdvDM's and Mist's "a painting"
    for Stable Diffusion models; the model's own generic caption where it declares one (mini)."""
    return bundle.defaults.get("generic_prompt", "a painting")


def diffusion_target(bundle: ModelBundle, latents: torch.Tensor, noise: torch.Tensor,
                     t: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to predict: the noise, or v for v-prediction models (SD 2.x)."""
    if bundle.scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        return bundle.scheduler.get_velocity(latents, noise, t)
    return noise


def draws(bundle: ModelBundle, shape: tuple, generator: torch.Generator,
          timesteps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps for a batch of latents: t ~ U[0, T) unless given."""
    noise = torch.randn(shape, generator=generator).to(bundle.device, bundle.dtype)
    if timesteps is None:
        timesteps = torch.randint(0, bundle.scheduler.config.num_train_timesteps, (shape[0],), generator=generator)
    return noise, timesteps.to(bundle.device)


def denoising_loss(bundle: ModelBundle, latents: torch.Tensor, context: torch.Tensor, generator: torch.Generator,
                   timesteps: torch.Tensor | None = None, unet=None) -> torch.Tensor:
    """The latent diffusion training loss per image, ||eps_theta(z_t, t, c) - eps||^2 averaged over
    latent elements, for one draw of (t, eps) per image."""
    noise, t = draws(bundle, tuple(latents.shape), generator, timesteps)
    noisy = bundle.scheduler.add_noise(latents, noise, t)
    unet = unet or bundle.unet
    pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=context.to(unet.dtype)).sample
    target = diffusion_target(bundle, latents, noise, t)
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def stratified_timesteps(bundle: ModelBundle, k: int) -> torch.Tensor:
    """k timesteps spread evenly over [0, T): the centres of k equal strata."""
    total = bundle.scheduler.config.num_train_timesteps
    return ((torch.arange(k) + 0.5) * total / k).long()


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
