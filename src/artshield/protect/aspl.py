"""Anti-DreamBooth's ASPL (Van Le et al., ICCV 2023, arXiv 2303.15433; code VinAIResearch/Anti-DreamBooth,
attacks/aspl.py): Alternating Surrogate and Perturbation Learning.

A perturbation that fools the base model may not fool the model *being fine-tuned* on it. ASPL
keeps a surrogate that follows DreamBooth's trajectory and attacks it, round after round:

    model <- copy of the base UNet
    repeat `rounds` times:
        surrogate <- copy of model; fine-tune it `train_steps` steps on the CLEAN images
        `pgd_steps` PGD steps maximising the surrogate's denoising loss on the protected images
        fine-tune model `train_steps` steps on the PROTECTED images

Defaults from the code: 50 rounds x (3 fine-tuning + 6 PGD) steps = 300 PGD steps, budget 0.05 on
[-1, 1] (6.375/255; written files change by at most 6 on the 8-bit grid), step 0.005 (0.64/255),
t ~ U[0, T), one image per fine-tuning step, learning rate 5e-7 (the model's own DreamBooth rate
where it declares one: mini, whose scale needs a larger one). PGD starts from the clean images
and the surrogate fine-tunes on the clean images themselves, as in the authors' code. `steps`
is the number of PGD steps run in all: the last round runs the remainder when `pgd_steps` does
not divide it.

Departures: for memory, the text encoder stays frozen and there is no prior-preservation term
(Anti-DreamBooth trains both) and no gradient clipping; the base model is never modified. The
authors fine-tune the surrogate on a clean set A separate from the protected set B: give A as
`surrogate_images` (`--surrogate-images DIR`). Without it A = B, the images being protected (an
artist protecting a portfolio may have no other clean set to give), which can only make the
surrogate closer to what a mimic trains on. The condition is the model's
generic prompt, not the mimic's instance prompt, which the protector does not know.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..models.diffusion import denoising_loss
from ..options import AT_LEAST_ONE, POSITIVE, Limit, seeded
from .base import ProtectConfig, Protection, register, scored_denoising_loss


PAPER_LR = 5e-7


@dataclass
class ASPLConfig(ProtectConfig):
    budget: float = 6.375
    step: float = 0.6375
    steps: int = 300               # PGD steps in all: rounds = ceil(steps / pgd_steps) (50)
    pgd_steps: int = 6
    train_steps: int = 3
    lr: float | None = None        # None: the model's dreambooth rate, else 5e-7
    random_start: bool = False     # the authors' code starts from the clean images
    surrogate_images: object = None   # the clean set A the surrogate learns (images); None: the protected set

    limits = {**ProtectConfig.limits, "pgd_steps": AT_LEAST_ONE, "train_steps": Limit(0, 100_000), "lr": POSITIVE}

    @property
    def rounds(self) -> int:
        return -(-self.steps // self.pgd_steps)


@register("aspl")
class ASPL(Protection):
    Config = ASPLConfig
    objective_name = "denoising_loss"
    objective_goal = "up"
    maximize = True

    @property
    def lr(self) -> float:
        if self.config.lr is not None:
            return self.config.lr
        return self.bundle.conventions.learning_rate("dreambooth", PAPER_LR)

    def finetune(self, unet, images: torch.Tensor, steps: int, start: int) -> None:
        """`steps` AdamW steps of the denoising loss, one image per step, cycling through them."""
        unet.train().requires_grad_(True)
        params = list(unet.parameters())
        self.denoising_steps(unet, params, torch.optim.AdamW(params, lr=self.lr, weight_decay=1e-2), images, steps, start)
        unet.eval().requires_grad_(False)

    def run(self, images, generator=None, progress=None):
        cfg = self.config
        self.generator = seeded(generator)
        pgd = self.engine(images)
        if cfg.surrogate_images is not None:
            from ..images import as_tensors
            from ..models.views import model_views

            clean = model_views(as_tensors(list(cfg.surrogate_images))[0], self.bundle.image_size).to(
                self.bundle.device)
        else:
            clean = pgd.clean_views().detach()
        model = copy.deepcopy(self.bundle.unet).float()
        for r in range(cfg.rounds):
            surrogate = copy.deepcopy(model)
            self.finetune(surrogate, clean, cfg.train_steps, r * cfg.train_steps)
            self.surrogate = surrogate
            first = r * cfg.pgd_steps
            pgd.run(lambda views: self.loss(views, pgd), maximize=True, progress=progress,
                    steps=min(cfg.pgd_steps, cfg.steps - first), first=first)
            del surrogate, self.surrogate
            protected = pgd.views(moving=False, transform=False).detach()
            self.finetune(model, protected, cfg.train_steps, r * cfg.train_steps)
        return pgd.deltas()

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        """The denoising loss of the current round's surrogate."""
        latents = self.bundle.encode(views).float()
        return denoising_loss(self.bundle, latents, self.context(len(views)).float(), self.generator,
                              unet=self.surrogate).sum()

    def total_steps(self, n_images: int) -> int:
        return self.config.steps

    def score(self, views: torch.Tensor) -> torch.Tensor:
        # reported against the base model: what a mimic starts fine-tuning from
        return scored_denoising_loss(self.bundle, views, self.context(len(views)))
