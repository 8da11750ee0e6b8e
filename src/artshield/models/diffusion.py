"""The diffusion primitives every method family shares: noise draws, the training target, and the
one latent-diffusion loss.

    loss = || unet(z_t, t, c) - target ||^2,   z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps,
    target = eps (epsilon prediction), v = sqrt(abar_t) eps - sqrt(1 - abar_t) z (v-prediction),
             or z (sample prediction), as the model's scheduler config says,

with t ~ U[0, T) and eps ~ N(0, I) drawn from a CPU generator, so the same seed gives the same
draws on every device. A flow-matching model (SD3, FLUX; models/flow.py) has
z_t = (1 - sigma) z + sigma eps, target = eps - z, and t = 1000 sigma drawn as its diffusers
training script draws it. Protections ascend it (AdvDM, Mist, ASPL), mimicry descends it (LoRA,
DreamBooth, textual inversion, hypernetworks), and the audit scores training membership with it:
one function, so a change reaches all three.
"""
from __future__ import annotations

import torch

from .bundle import ModelBundle


def prediction_type(bundle: ModelBundle) -> str:
    return bundle.scheduler.config.get("prediction_type", "epsilon")


def diffusion_target(bundle: ModelBundle, latents: torch.Tensor, noise: torch.Tensor,
                     t: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to predict, as its scheduler says: the noise (epsilon, SD 1.x),
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) z (v_prediction, SD 2.x at 768 px), or the clean
    latents themselves (sample); for a flow model, the velocity eps - z."""
    kind = prediction_type(bundle)
    if kind == "flow":
        return noise - latents
    if kind == "v_prediction":
        return bundle.scheduler.get_velocity(latents, noise, t)
    if kind == "sample":
        return latents
    if kind != "epsilon":
        raise ValueError(f"prediction type {kind!r} is not supported (epsilon, v_prediction, sample or flow)")
    return noise


def predicted_noise(bundle: ModelBundle, prediction: torch.Tensor, noisy: torch.Tensor, t) -> torch.Tensor:
    """The noise a UNet output stands for at (noisy, t), whatever the prediction type: methods
    defined on noise predictions (the audit's noise magnitude) read every model the same way."""
    kind = prediction_type(bundle)
    if kind == "epsilon":
        return prediction
    if kind == "flow":               # z_t = (1 - s) z + s eps and v = eps - z give eps = z_t + (1 - s) v
        sigma = bundle.scheduler.sigma(t).to(noisy.device).reshape(-1, *[1] * (noisy.ndim - 1))
        return noisy + (1 - sigma) * prediction
    abar = bundle.scheduler.alphas_cumprod.to(noisy.device)[torch.as_tensor(t, device=noisy.device).long()]
    abar = abar.reshape(-1, *[1] * (noisy.ndim - 1)).float()
    if kind == "v_prediction":
        return abar.sqrt() * prediction + (1 - abar).sqrt() * noisy
    if kind == "sample":
        return (noisy - abar.sqrt() * prediction) / (1 - abar).sqrt()
    raise ValueError(f"prediction type {kind!r} is not supported (epsilon, v_prediction, sample or flow)")


def draws(bundle: ModelBundle, shape: tuple, generator: torch.Generator,
          timesteps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps for a batch of latents: t ~ U[0, T) unless given (a flow model: its
    training-time draw). Noise first, then t."""
    noise = torch.randn(shape, generator=generator).to(bundle.device, bundle.dtype)
    if timesteps is None and prediction_type(bundle) == "flow":
        timesteps = bundle.scheduler.sample_timesteps(shape[0], generator)
    elif timesteps is None:
        timesteps = torch.randint(0, bundle.scheduler.config.num_train_timesteps, (shape[0],), generator=generator)
    return noise, timesteps.to(bundle.device)


def denoising_loss(bundle: ModelBundle, latents: torch.Tensor, context: torch.Tensor, generator: torch.Generator,
                   timesteps: torch.Tensor | None = None, unet=None, reduction: str = "image",
                   snr_gamma: float | None = None) -> torch.Tensor:
    """The latent diffusion training loss for one draw of (t, eps) per latent.

    reduction "image": the squared error averaged over each latent's elements, shape (B,);
    "mean": averaged over the whole batch, a scalar (what a training step descends).
    `unet` replaces the bundle's (a trainable copy, a surrogate). `snr_gamma`: Min-SNR-gamma
    weighting (Hang et al., ICCV 2023; diffusers' and kohya's `snr_gamma` / `min_snr_gamma`), each
    latent's error weighted by min(SNR_t, gamma) / SNR_t (epsilon), / (SNR_t + 1) (v) or 1 (sample)."""
    noise, t = draws(bundle, tuple(latents.shape), generator, timesteps)
    noisy = bundle.scheduler.add_noise(latents, noise, t)
    unet = unet or bundle.unet
    pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=context.to(unet.dtype)).sample
    error = (pred.float() - diffusion_target(bundle, latents, noise, t).float()).pow(2).flatten(1).mean(1)
    if snr_gamma is not None:
        error = error * min_snr_weights(bundle, t, snr_gamma).to(error.device)
    if reduction == "mean":
        return error.mean()
    if reduction != "image":
        raise ValueError(f"reduction must be 'image' or 'mean', not {reduction!r}")
    return error


def min_snr_weights(bundle: ModelBundle, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights at timesteps t, for the model's prediction type."""
    if prediction_type(bundle) == "flow":
        raise ValueError("Min-SNR weighting is defined for DDPM-trained models, not flow matching (SD3, FLUX)")
    abar = bundle.scheduler.alphas_cumprod.float()[t.long().cpu()]
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    kind = prediction_type(bundle)
    return clipped / (snr + 1) if kind == "v_prediction" else clipped / snr if kind == "epsilon" else clipped


def stratified_timesteps(bundle: ModelBundle, k: int) -> torch.Tensor:
    """k timesteps spread evenly over [0, T): the centres of k equal strata (a flow model: of its
    training table)."""
    if prediction_type(bundle) == "flow":
        return bundle.scheduler.spread(k)
    total = bundle.scheduler.config.num_train_timesteps
    return ((torch.arange(k) + 0.5) * total / k).long()
