"""Inference-time mitigation of memorisation: Wen et al. (ICLR 2024), the prompt-embedding adjustment.

A memorised prompt pulls the first denoising step hard towards its training image: the text-
conditional noise magnitude d = |eps(x_T, e) - eps(x_T, "")|_2 is large (see detect.py). Before
generating, the adjustment takes the prompt's text-encoder states e and, on the very starting
latent x_T the image will be sampled from, runs AdamW on e (every token state but the first, the
begin-of-text token, which is the same for every prompt) to lower d, and stops as soon as d is at
or under the target. The image is then generated from the adjusted states with the ordinary
sampler and guidance. A prompt whose magnitude is already at or under the target is left exactly
as it is, so ordinary prompts are not touched.

The authors' settings (their inference_mem.py): AdamW at learning rate 0.05, at most 10 steps, a
target of 3 on Stable Diffusion 1.4 (latents of 4 x 64 x 64). The magnitude is an L2 norm over the
latent, so it grows with the square root of the latent's size; the default target here is their 3
rescaled that way (mini's 4 x 8 x 8 latent: 0.375). A target chosen on a model's own ordinary
prompts (e.g. a high quantile of d over captions it was not trained on) is better: pass it.

Each image is adjusted on its own starting latent (the authors adjust one prompt for a batch of
latents together), so image i of a call with seed s still starts from the noise of seed s + i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..models import ModelBundle
from ..models.diffusion import predicted_noise
from ..options import POSITIVE, Limit, Overridable

WEN_TARGET = 3.0                 # the authors' --optim_target_loss on SD 1.4
WEN_LATENT_ELEMENTS = 4 * 64 * 64


@dataclass
class MitigateConfig(Overridable):
    target: float | None = None     # the magnitude to reach; None: Wen's 3 rescaled to the latent (default_target)
    lr: float = 0.05                # AdamW's learning rate (the authors')
    iterations: int = 10            # most optimiser steps per image (the authors')

    limits = {"target": POSITIVE, "lr": POSITIVE, "iterations": Limit(1, 10_000)}


def latent_side(bundle: ModelBundle, size: int | None = None) -> int:
    """The latent's side at image size `size` (default the model's), as the pipeline computes it."""
    return (size or bundle.image_size) // 2 ** (len(bundle.vae.config.block_out_channels) - 1)


def default_target(bundle: ModelBundle, size: int | None = None) -> float:
    """Wen et al.'s target of 3 on a 4 x 64 x 64 latent, scaled by the square root of this model's
    latent size (at image size `size`, default the model's)."""
    side = latent_side(bundle, size)
    elements = bundle.unet.config.in_channels * side * side
    return WEN_TARGET * math.sqrt(elements / WEN_LATENT_ELEMENTS)


def starting_noise(bundle: ModelBundle, seeds: list[int], size: int | None = None) -> torch.Tensor:
    """The unscaled starting noise of the images seeded `seeds`, drawn exactly as the diffusers
    pipeline draws it from one CPU generator per image (so the images match `generate`'s)."""
    side = latent_side(bundle, size)
    shape = (1, bundle.unet.config.in_channels, side, side)
    return torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=bundle.dtype)
                      for s in seeds]).to(bundle.device)


def magnitude(bundle: ModelBundle, sampler, latents: torch.Tensor, context: torch.Tensor,
              uncond: torch.Tensor) -> torch.Tensor:
    """Per row, |eps(x, context) - eps(x, uncond)|_2 at the sampler's first timestep, on the scaled
    starting latents `latents` (float32, differentiable in `context`)."""
    t = sampler.timesteps[0]
    n = len(latents)
    x = sampler.scale_model_input(torch.cat([latents, latents]), t)
    both = torch.cat([uncond.expand(n, -1, -1), context.to(uncond.dtype)])
    # a hypernetwork leaves guidance's unconditional rows to the base model, as in generation
    extra = {"unconditional_rows": n} if getattr(bundle.unet, "hypernetworks", None) is not None else None
    p_u, p_c = bundle.unet(x, t, encoder_hidden_states=both, cross_attention_kwargs=extra).sample.float().chunk(2)
    e_u, e_c = (predicted_noise(bundle, p, latents.float(), t) for p in (p_u, p_c))
    return (e_c - e_u).flatten(1).norm(dim=1)


def adjust(bundle: ModelBundle, context: torch.Tensor, noise: torch.Tensor, sampler, config: MitigateConfig,
           target: float) -> tuple[torch.Tensor, list[dict]]:
    """The adjusted text context of each row (states of the prompts, (N, tokens, width)) on the
    starting noise `noise` (unscaled, as `starting_noise` gives it), and per row a record: the
    magnitude before and after, the optimiser steps taken, and whether it reached the target.

    Rows are optimised together (their losses are independent and AdamW works element by element);
    a row's states are kept as they were at the first step where its magnitude was at or under the
    target, as the authors stop there."""
    latents = noise.float() * sampler.init_noise_sigma
    uncond = bundle.embed([""]).detach()
    fixed = context[:, :1].detach()
    free = context[:, 1:].detach().clone().float().requires_grad_(True)
    optimiser = torch.optim.AdamW([free], lr=config.lr)
    kept = free.detach().clone()
    done = torch.zeros(len(context), dtype=torch.bool)
    steps = torch.zeros(len(context), dtype=torch.long)
    first = None
    with torch.enable_grad():
        for step in range(config.iterations + 1):
            d = magnitude(bundle, sampler, latents, torch.cat([fixed.float(), free], dim=1), uncond)
            values = d.detach().cpu()
            if first is None:
                first = values.clone()
            reached = (values <= target) & ~done
            kept[reached.to(kept.device)] = free.detach()[reached.to(kept.device)]
            steps[reached] = step
            done |= reached
            if bool(done.all()) or step == config.iterations:
                break
            (grad,) = torch.autograd.grad(d.sum(), [free])
            free.grad = grad
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
    rest = ~done
    kept[rest.to(kept.device)] = free.detach()[rest.to(kept.device)]
    steps[rest] = config.iterations
    with torch.no_grad():
        final = magnitude(bundle, sampler, latents, torch.cat([fixed.float(), kept], dim=1), uncond).cpu()
    records = [{"magnitude_before": round(float(a), 5), "magnitude_after": round(float(b), 5),
                "steps": int(s), "reached_target": bool(b <= target + 1e-6), "adjusted": bool(s > 0)}
               for a, b, s in zip(first, final, steps)]
    return torch.cat([fixed, kept.to(context.dtype)], dim=1).detach(), records
