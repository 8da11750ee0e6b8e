"""Fast memorisation scores: no full sampling.

text_conditional_magnitude  Wen et al. (ICLR 2024): a memorised prompt pulls the noise prediction
    hard towards its training image from the very first step, so
        d = mean over steps and generations of |eps(x_t, prompt) - eps(x_t, "")|_2
    is large. One step with one to four generations reaches AUC 0.98-0.99 on SD 1.4 (a later
    re-measurement; see shared research notes). Cost: 2 UNet evaluations per generation and step.
membership_loss  for candidate images: the denoising loss at fixed timesteps and noise draws; a
    training member is reconstructed better than comparable non-members, so a lower loss means
    "more likely seen in training". The score is minus the loss, so that larger means member.
auc  the area under the ROC curve of scores against labels (Mann-Whitney, ties counted half).
"""
from __future__ import annotations

import numpy as np
import torch

from ..models import ModelBundle


@torch.no_grad()
def text_conditional_magnitude(bundle: ModelBundle, prompts: list[str], generations: int = 4, steps: int = 1,
                               sampling_steps: int | None = None, guidance: float | None = None, seed: int = 0,
                               batch_size: int = 64, progress=None) -> np.ndarray:
    """Wen et al.'s score per prompt, averaged over `generations` seeds and the first `steps` steps
    of DDIM sampling (guided like a generation, so later steps see realistic x_t)."""
    if generations < 1 or steps < 1:
        raise ValueError("generations and steps must be at least 1")
    sampling_steps = int(sampling_steps or bundle.defaults.get("steps", 50))
    guidance = float(guidance if guidance is not None else bundle.defaults.get("guidance", 7.5))
    sampler = bundle.sampler()
    sampler.set_timesteps(sampling_steps, device=bundle.device)
    unet = bundle.unet
    channels, side = unet.config.in_channels, int(unet.config.sample_size)
    uncond = bundle.embed([""])
    scores = np.zeros(len(prompts))
    # every (prompt, generation) pair is one row; rows are batched across prompts
    rows = [(i, g) for i in range(len(prompts)) for g in range(generations)]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ctx = bundle.embed([prompts[i] for i, _ in chunk])
        z = torch.stack([torch.randn(channels, side, side, generator=torch.Generator().manual_seed(seed + g))
                         for _, g in chunk]).to(bundle.device, bundle.dtype) * sampler.init_noise_sigma
        both = torch.cat([uncond.expand(len(chunk), -1, -1), ctx])
        total = torch.zeros(len(chunk))
        for t in sampler.timesteps[:steps]:
            e_u, e_c = unet(sampler.scale_model_input(torch.cat([z, z]), t), t,
                            encoder_hidden_states=both).sample.float().chunk(2)
            total += (e_c - e_u).flatten(1).norm(dim=1).cpu()
            z = sampler.step((e_u + guidance * (e_c - e_u)).to(z.dtype), t, z).prev_sample
        for (i, _), value in zip(chunk, total / steps):
            scores[i] += float(value) / generations
        if progress is not None:
            progress(len(chunk))
    return scores


@torch.no_grad()
def membership_loss(bundle: ModelBundle, images: torch.Tensor, captions: list[str] | None = None,
                    timesteps: tuple[int, ...] = (100, 200, 300, 400, 500), draws: int = 4, seed: int = 0,
                    batch_size: int = 32) -> np.ndarray:
    """Minus the mean denoising loss of each image (N, 3, H, W in [0, 1], at the model's size) under
    fixed noise draws at `timesteps`; with captions, conditioned on them (members were trained so)."""
    from ..protect.base import diffusion_target

    out = []
    captions = captions or [""] * len(images)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        z = bundle.encode(x)
        ctx = bundle.embed(captions[start:start + batch_size])
        losses = torch.zeros(len(x))
        g = torch.Generator().manual_seed(seed)
        for t_value in timesteps:
            for _ in range(draws):
                noise = torch.randn(z.shape, generator=g).to(z)
                t = torch.full((len(x),), t_value, device=bundle.device, dtype=torch.long)
                pred = bundle.unet(bundle.scheduler.add_noise(z, noise, t), t, encoder_hidden_states=ctx).sample
                target = diffusion_target(bundle, z, noise, t)
                losses += (pred.float() - target.float()).pow(2).flatten(1).mean(1).cpu()
        out.append(-(losses / (len(timesteps) * draws)))
    return torch.cat(out).numpy()


def auc(scores, labels) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
