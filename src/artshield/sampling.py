"""Image-to-image with a model bundle (SDEdit, Meng et al. 2022): noise an image's latent part of the
way, then denoise it with DDIM under a text prompt and classifier-free guidance.

`strength` in (0, 1] is the fraction of the noise schedule travelled: 0.3 keeps the picture and
changes its texture, 0.6 keeps the layout and restyles it, 1.0 starts from pure noise. Used by the
Glaze-style cloak (the style-transferred target) and by the diffusion purifiers.
"""
from __future__ import annotations

import math

import torch

from .models import ModelBundle


def sampling_settings(bundle: ModelBundle, steps: int | None, guidance: float | None) -> tuple[int, float]:
    """(steps, guidance): the given ones, else the model's; checked (steps a whole number >= 1,
    guidance finite and >= 0)."""
    steps = bundle.conventions.steps if steps is None else steps
    guidance = bundle.conventions.guidance if guidance is None else guidance
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, not {steps!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance < math.inf:
        raise ValueError(f"guidance must be a finite number of at least 0, not {guidance!r}")
    return steps, float(guidance)


@torch.no_grad()
def img2img(bundle: ModelBundle, images: torch.Tensor, prompts: list[str], strength: float,
            generator: torch.Generator, steps: int | None = None, guidance: float | None = None,
            eta: float = 0.0) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] (H and W multiples of the model's canvas unit, see models.views.canvas)
    -> (B, 3, H, W), in the order of `prompts`. eta = 0: deterministic DDIM; eta = 1: DDPM-like
    ancestral sampling (fresh noise each step, drawn from `generator`)."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    steps, guidance = sampling_settings(bundle, steps, guidance)
    if bundle.is_flow:
        return _flow_img2img(bundle, images, prompts, strength, generator, steps, guidance, eta)
    sampler = bundle.sampler()
    sampler.set_timesteps(steps, device=bundle.device)
    keep = max(1, min(steps, round(steps * strength)))
    timesteps = sampler.timesteps[steps - keep:]
    latents = bundle.encode(images)
    noise = torch.randn(latents.shape, generator=generator).to(bundle.device, latents.dtype)
    latents = sampler.add_noise(latents, noise, timesteps[:1].repeat(len(latents)))
    cond = bundle.embed(prompts)
    uncond = bundle.embed([""] * len(prompts))
    context = torch.cat([uncond, cond])
    for t in timesteps:
        if guidance == 1.0:
            pred = bundle.unet(latents, t, encoder_hidden_states=cond).sample
        else:
            pred = bundle.unet(torch.cat([latents] * 2), t, encoder_hidden_states=context).sample
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + guidance * (pred_cond - pred_uncond)
        variance_noise = torch.randn(latents.shape, generator=generator).to(latents) if eta > 0 else None
        latents = sampler.step(pred, t, latents, eta=eta, variance_noise=variance_noise).prev_sample
    return bundle.decode(latents).float()


def flow_timesteps(bundle: ModelBundle, sampler, steps: int, latent_side: tuple[int, int]) -> None:
    """Set a flow sampler's schedule as the model's pipeline does: FLUX's sigmas 1 .. 1/steps shifted
    by the resolution when its scheduler says so, SD3's scheduler's own table."""
    import numpy as np

    if bundle.family == "flux":
        from .models.flow import flux_shift

        config = sampler.config
        mu = flux_shift(config, latent_side) if config.get("use_dynamic_shifting") else None
        sampler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=bundle.device)
    else:
        sampler.set_timesteps(steps, device=bundle.device)


def _flow_img2img(bundle: ModelBundle, images, prompts, strength, generator, steps, guidance, eta) -> torch.Tensor:
    """SDEdit on a flow model: the latents moved along the straight path to the schedule's sigma at
    `strength`, then Euler steps back (SD3's and FLUX's img2img pipelines). eta > 0 re-draws the
    noise at every step (the scheduler's stochastic sampling: the flow analogue of DDPM's ancestral
    steps). FLUX has no unconditional pass: `guidance` is its embedded guidance."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sampler = FlowMatchEulerDiscreteScheduler.from_config(bundle.sampler().config, stochastic_sampling=eta > 0)
    latents = bundle.encode(images)
    flow_timesteps(bundle, sampler, steps, tuple(latents.shape[-2:]))
    keep = max(1, min(steps, round(steps * strength)))
    timesteps = sampler.timesteps[steps - keep:]
    sampler.set_begin_index(steps - keep)
    noise = torch.randn(latents.shape, generator=generator).to(bundle.device, latents.dtype)
    latents = sampler.scale_noise(latents, timesteps[:1], noise)
    cond = bundle.embed(prompts)
    guided = bundle.classifier_free and guidance != 1.0
    context = torch.cat([bundle.embed([""] * len(prompts)), cond]) if guided else cond
    embedded, bundle.unet.guidance = bundle.unet.guidance, guidance
    try:
        for t in timesteps:
            if guided:
                pred_uncond, pred_cond = bundle.unet(torch.cat([latents] * 2), t, encoder_hidden_states=context).sample.chunk(2)
                pred = pred_uncond + guidance * (pred_cond - pred_uncond)
            else:
                pred = bundle.unet(latents, t, encoder_hidden_states=cond).sample
            latents = sampler.step(pred, t, latents, generator=generator).prev_sample
    finally:
        bundle.unet.guidance = embedded
    return bundle.decode(latents).float()


def schedule(bundle: ModelBundle, steps: int):
    """The model's sampler set to `steps` steps: DDIM on a UNet model, a flow model's own schedule
    (see `flow_timesteps`)."""
    sampler = bundle.sampler()
    if bundle.is_flow:
        flow_timesteps(bundle, sampler, steps, bundle.latent_shape[1:])
    else:
        sampler.set_timesteps(steps, device=bundle.device)
    return sampler


def model_input(sampler, z: torch.Tensor, t) -> torch.Tensor:
    """The sampler's scaling of the latents fed to the model (none for flow samplers)."""
    return sampler.scale_model_input(z, t) if hasattr(sampler, "scale_model_input") else z


def start_noise_scale(sampler) -> float:
    return float(getattr(sampler, "init_noise_sigma", 1.0))


def step(bundle: ModelBundle, sampler, i: int, t, z: torch.Tensor, pred: torch.Tensor):
    """Step i of a schedule made by `schedule` from z with the model's (guided) output `pred`:
    (the next latents, the sampler's estimate of the final latents). A flow model takes the Euler
    step z + (sigma_next - sigma) v with estimate z - sigma v (FlowMatchEulerDiscreteScheduler's
    step, written out so that no step counter carries over between calls)."""
    if bundle.is_flow:
        sigma, following = (sampler.sigmas[j].to(z.device) for j in (i, i + 1))
        v = pred.float()
        return (z.float() + (following - sigma) * v).to(z.dtype), (z.float() - sigma * v).to(z.dtype)
    out = sampler.step(pred.to(z.dtype), t, z)
    return out.prev_sample, out.pred_original_sample


def guide(bundle: ModelBundle, uncond: torch.Tensor, cond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance of two outputs; FLUX, which samples without it, follows `cond`."""
    return uncond + guidance * (cond - uncond) if bundle.classifier_free else cond
