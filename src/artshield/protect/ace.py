"""ACE, the method behind Mist-v2 (Zheng et al., arXiv 2310.04687; code psyker-team/mist-v2,
attacks/mist.py, its default mode "lunet"): a targeted attack on the UNet, with a LoRA surrogate
that learns the protected images as a mimic would.

Where AdvDM and ASPL push the denoising loss *up*, ACE pulls the UNet's prediction *toward a
target*: with z the protected image's latent, t ~ U[0, T), eps ~ N(0, I) and z_T the latent of a
fixed target image,

    min_delta  || unet_theta(sqrt(abar_t) z + sqrt(1 - abar_t) eps, t, c) - z_T ||^2

so that whatever the mimic learns from the image pulls its predictions toward the target's
pattern, the direction a LoRA can most easily adopt. The surrogate theta is the base model plus a
rank-4 LoRA on every attention projection (to_q, to_k, to_v, to_out.0), trained on the protected
images between rounds, so the attack follows the fine-tuning it means to spoil:

    LoRA <- zero update (the base model)
    repeat `rounds` times:
        `pgd_steps` PGD steps on the objective above against base + LoRA (from the current images)
        `train_steps` AdamW steps of the LoRA on the protected images (denoising loss, one image a
        step, gradients clipped at norm 1), kept for the next round

Defaults from the authors' code: budget 8/255 on [-1, 1] = 4/255 here, PGD step 5e-3 on
[-1, 1] = 0.6375/255, LoRA rank 4, AdamW lr 1e-4 with weight decay 1e-2 (a model may declare its
own LoRA rate: mini does), target Mist's textured picture (artshield draws its own pattern,
targets.texture; `--target FILE` takes any image), and 5 rounds x 30 PGD steps = 150 with 10 LoRA
steps a round (the configuration the project's notes record from the Mist-v2 release; the
argparse defaults of attacks/mist.py are 5 x 50 and one epoch over the images). PGD starts from the clean images, as in the code.

Departures: the text encoder stays frozen (the code also trains a text-encoder LoRA at 5e-6),
there is no prior-preservation term with generated class images, and the condition is the
model's generic prompt, not the code's instance prompt with its quality-tag prefix (which the
protector cannot know a mimic will use). The base model is never modified.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..models.diffusion import draws, stratified_timesteps
from ..options import AT_LEAST_ONE, POSITIVE, Limit, seeded
from . import targets
from .base import SCORE_DRAWS, SCORE_SEED, ProtectConfig, Protection, register

PAPER_LR = 1e-4


@dataclass
class ACEConfig(ProtectConfig):
    budget: float = 4.0
    step: float = 0.6375
    steps: int = 150               # PGD steps in all: rounds = ceil(steps / pgd_steps) (5)
    pgd_steps: int = 30
    train_steps: int = 10          # LoRA steps after each round
    rank: int = 4
    lr: float | None = None        # None: the model's LoRA rate, else 1e-4
    target: object = "texture"     # "texture", "grey", "zero", or a (3, H, W) image tensor
    random_start: bool = False

    limits = {**ProtectConfig.limits, "pgd_steps": AT_LEAST_ONE, "train_steps": Limit(0, 100_000),
              "rank": Limit(1, 1024), "lr": POSITIVE}

    @property
    def rounds(self) -> int:
        return -(-self.steps // self.pgd_steps)


@register("ace")
class ACE(targets.TargetLatent, Protection):
    Config = ACEConfig
    objective_name = "target_distance"     # || unet(z_t) - z_target ||^2, against the base model
    objective_goal = "down"
    maximize = False

    @property
    def lr(self) -> float:
        return self.config.lr if self.config.lr is not None else self.bundle.conventions.learning_rate("lora", PAPER_LR)

    def surrogate_unet(self):
        """A copy of the base UNet with a fresh LoRA (zero update) and its trainable parameters."""
        from ..mimic.lora import _peft_config

        unet = copy.deepcopy(self.bundle.unet).float().requires_grad_(False)
        unet.add_adapter(_peft_config(self.config.rank, float(self.config.rank)))
        params = [p.requires_grad_(False) for n, p in unet.named_parameters() if "lora_" in n]
        return unet, params

    def train_surrogate(self, unet, params, opt, images: torch.Tensor, steps: int, start: int) -> None:
        unet.train()
        for p in params:
            p.requires_grad_(True)
        self.denoising_steps(unet, params, opt, images, steps, start, clip=1.0)
        unet.eval()
        for p in params:
            p.requires_grad_(False)

    def run(self, images, generator=None, progress=None):
        cfg = self.config
        self.generator = seeded(generator)
        pgd = self.engine(images)
        unet, params = self.surrogate_unet()
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=1e-2)
        self.surrogate = unet.eval()
        for r in range(cfg.rounds):
            first = r * cfg.pgd_steps
            pgd.run(lambda views: self.loss(views, pgd), maximize=False, progress=progress,
                    steps=min(cfg.pgd_steps, cfg.steps - first), first=first)
            if cfg.train_steps and r < cfg.rounds - 1:      # the last round's training would be discarded
                protected = pgd.views(moving=False, transform=False).detach()
                self.train_surrogate(unet, params, opt, protected, cfg.train_steps, r * cfg.train_steps)
        del self.surrogate
        return pgd.deltas()

    def distance(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, unet) -> torch.Tensor:
        """Per image: the mean squared distance of the UNet's prediction at (z_t, t) to the target latent."""
        noisy = self.bundle.scheduler.add_noise(latents, noise, t)
        pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=self.context(len(latents)).to(unet.dtype)).sample
        return (pred.float() - self.target_latent().float()).pow(2).flatten(1).mean(1)

    def loss(self, views: torch.Tensor, pgd) -> torch.Tensor:
        latents = self.bundle.encode(views)
        noise, t = draws(self.bundle, tuple(latents.shape), self.generator)
        return self.distance(latents, noise, t, self.surrogate).sum()

    def total_steps(self, n_images: int) -> int:
        return self.config.steps

    @torch.no_grad()
    def score(self, views: torch.Tensor) -> torch.Tensor:
        """The target distance against the base model (what a mimic starts fine-tuning from), averaged
        over fixed stratified timesteps and noise: comparable before and after protection."""
        g = torch.Generator("cpu").manual_seed(SCORE_SEED)
        latents = self.bundle.encode(views)
        total = torch.zeros(len(views), device=self.bundle.device)
        for t in stratified_timesteps(self.bundle, SCORE_DRAWS):
            noise, tt = draws(self.bundle, tuple(latents.shape), g, t.repeat(len(views)))
            total += self.distance(latents, noise, tt, self.bundle.unet)
        return (total / SCORE_DRAWS).cpu()
