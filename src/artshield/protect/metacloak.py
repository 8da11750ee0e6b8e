"""MetaCloak (Liu et al., CVPR 2024, arXiv 2311.13127; code liuyixin-louis/MetaCloak,
robust_facecloak/attacks/algs/metacloak.py and script/methods_config.sh): a perturbation learnt
against many points of the fine-tuning it means to spoil, through the transforms it must survive.

ASPL attacks one surrogate that follows one DreamBooth run. MetaCloak first trains a surrogate
DreamBooth run on the images and keeps its weights every `interval` steps: a *pool* of models at
different stages of fine-tuning. Then, again and again, it starts from each pooled model and
alternates a few PGD steps with a few DreamBooth steps on the protected images (an unrolled
trajectory), so that the perturbation works against models early and late in training and
against the training that its own images cause:

    pool <- the UNet at steps 0, interval - 1, 2 interval - 1, ... of `pool_steps` DreamBooth steps
    repeat `trials` times, for each pooled model:
        model <- that pooled state
        repeat `calls` times:
            `pgd_steps` PGD steps maximising model's denoising loss on EOT(protected images)
            `advance_steps` DreamBooth steps of model on the protected images (a fresh AdamW)

EOT, as the code's "gau" mode: a Gaussian blur of kernel `blur_kernel` (sigma uniform in
[0.1, 2.0], torchvision's default) then a horizontal flip with probability 1/2, drawn afresh at
each PGD step.

Defaults from the released configuration (methods_config.sh and gen/metacloak.sh): budget 11/255,
6 PGD steps per call, 4 trials, a pool from 1000 DreamBooth steps every 200 (6 models),
interval / advance_steps = 100 calls per pooled model with 2 DreamBooth steps after each, learning
rate 5e-7 (the model's own DreamBooth rate where it declares one: mini), AdamW weight decay 1e-2,
gradients clipped at norm 1, no random start; so 4 x 6 x 100 x 6 = 14,400 PGD steps. `steps`
is the total of PGD steps: with fewer, the calls per pooled model shrink to
steps / (trials x pool size x pgd_steps) (at least one), so every trial still visits every
pooled model; the total is exact. The PGD step is 1.1/255 (the radius over 10, which the
project's notes record for the release).

Departures: the text encoder stays frozen (the code fine-tunes it with the UNet), there is no
prior-preservation term with generated class images, no inner "attacker" (the release runs it at
radius 0, so it does nothing), and the condition is the model's generic prompt rather than the
instance prompt ("a photo of sks person") the protector cannot know. The pool is kept on the CPU
in the model's precision. The base model is never modified.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..models.diffusion import denoising_loss
from ..options import AT_LEAST_ONE, POSITIVE, Limit, seeded
from .base import ProtectConfig, Protection, register, scored_denoising_loss
from .transforms import _uniform, blur, hflip

PAPER_LR = 5e-7


@dataclass
class MetaCloakConfig(ProtectConfig):
    budget: float = 11.0
    step: float = 1.1
    steps: int = 14_400            # PGD steps in all
    pgd_steps: int = 6
    trials: int = 4
    pool_steps: int = 1000
    interval: int = 200
    advance_steps: int = 2
    lr: float | None = None        # None: the model's dreambooth rate, else 5e-7
    blur_kernel: int = 5           # 0: no blur in the EOT
    flip: bool = True
    random_start: bool = False

    limits = {**ProtectConfig.limits, "pgd_steps": AT_LEAST_ONE, "trials": AT_LEAST_ONE,
              "pool_steps": Limit(0, 1_000_000), "interval": AT_LEAST_ONE, "advance_steps": Limit(0, 100_000),
              "lr": POSITIVE, "blur_kernel": Limit(0, 99)}

    def __post_init__(self):
        super().__post_init__()
        if self.blur_kernel and self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd (or 0 for no blur), not {self.blur_kernel}")

    def pool_points(self) -> list[int]:
        """The DreamBooth steps whose weights the pool keeps (before that step is taken)."""
        return [s for s in range(max(1, self.pool_steps)) if s == 0 or (s + 1) % self.interval == 0]


@register("metacloak")
class MetaCloak(Protection):
    Config = MetaCloakConfig
    objective_name = "denoising_loss"
    objective_goal = "up"
    maximize = True

    @property
    def lr(self) -> float:
        return self.config.lr if self.config.lr is not None else \
            self.bundle.conventions.learning_rate("dreambooth", PAPER_LR)

    def finetune(self, unet, images: torch.Tensor, steps: int, start: int, keep: list[int] | None = None,
                 pool: list | None = None) -> None:
        """`steps` AdamW steps of the denoising loss, one image per step (cycling from `start`);
        with `keep`, the weights before each step listed there are copied to `pool`."""
        unet.train().requires_grad_(True)
        params = list(unet.parameters())

        def keep_state(k):
            if keep is not None and k in keep:
                pool.append({n: v.detach().to("cpu", self.bundle.dtype, copy=True) for n, v in unet.state_dict().items()})

        self.denoising_steps(unet, params, torch.optim.AdamW(params, lr=self.lr, weight_decay=1e-2), images, steps,
                             start, clip=1.0, before=keep_state)
        unet.eval().requires_grad_(False)

    def make_pool(self, unet, images: torch.Tensor) -> list[dict]:
        cfg, pool = self.config, []
        points = cfg.pool_points()
        if cfg.pool_steps == 0:
            return [{n: v.detach().to("cpu", self.bundle.dtype, copy=True) for n, v in unet.state_dict().items()}]
        self.finetune(unet, images, cfg.pool_steps, 0, keep=points, pool=pool)
        return pool

    def calls_per_model(self, pool_size: int) -> int:
        cfg = self.config
        return max(1, cfg.steps // (cfg.trials * pool_size * cfg.pgd_steps))

    def run(self, images, generator=None, progress=None):
        cfg = self.config
        self.generator = seeded(generator)
        pgd = self.engine(images)
        unet = copy.deepcopy(self.bundle.unet).float()
        pool = self.make_pool(unet, pgd.clean_views().detach())
        self.pool_size = len(pool)
        calls = self.calls_per_model(len(pool))
        done, advanced = 0, 0
        while done < cfg.steps:
            for state in pool:
                unet.load_state_dict(state)
                unet.eval().requires_grad_(False)
                self.model = unet
                for _ in range(calls):
                    n = min(cfg.pgd_steps, cfg.steps - done)
                    if n <= 0:
                        break
                    pgd.run(lambda views: self.loss(views, pgd), maximize=True, progress=progress, steps=n, first=done)
                    done += n
                    if cfg.advance_steps and done < cfg.steps:
                        protected = pgd.views(moving=False, transform=False).detach()
                        self.finetune(unet, protected, cfg.advance_steps, advanced)
                        advanced += cfg.advance_steps
        del self.model
        return pgd.deltas()

    def eot(self, views: torch.Tensor) -> torch.Tensor:
        """The release's "gau" EOT: Gaussian blur (sigma in [0.1, 2.0]) then a random horizontal flip."""
        cfg = self.config
        if cfg.blur_kernel:
            views = blur(views, self.generator, sigma=_uniform(self.generator, 0.1, 2.0), radius=cfg.blur_kernel // 2)
        return hflip(views, self.generator) if cfg.flip else views

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        latents = self.bundle.encode(self.eot(views)).float()
        return denoising_loss(self.bundle, latents, self.context(len(views)).float(), self.generator,
                              unet=self.model).sum()

    def total_steps(self, n_images: int) -> int:
        return self.config.steps

    def score(self, views: torch.Tensor) -> torch.Tensor:
        # reported against the base model: what a mimic starts fine-tuning from
        return scored_denoising_loss(self.bundle, views, self.context(len(views)))
