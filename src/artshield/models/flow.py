"""Flow-matching transformer models (Stable Diffusion 3 / 3.5 and FLUX.1) behind the UNet's call shape.

Every algorithm in artshield calls `bundle.unet(latents, t, encoder_hidden_states=context).sample`
and `bundle.scheduler.add_noise(latents, noise, t)`, and trains against `diffusion_target`. For a
flow model the same calls mean:

- **time** t is the transformer's own timestep, sigma * 1000 (what diffusers' pipelines pass to
  SD3's transformer and, divided by 1000, to FLUX's), a float tensor;
- **noising** is the straight path x_t = (1 - sigma) z + sigma eps (rectified flow);
- **the target** is the velocity eps - z ("flow" prediction: `diffusion_target`);
- **training time** follows diffusers' own training scripts (`train_dreambooth_lora_sd3.py`,
  `train_dreambooth_lora_flux.py`): u drawn logit-normal (0, 1) for SD3 (the SD3 paper's rf/lognorm)
  or uniform for FLUX (that script's default weighting "none"), then sigma read from the
  scheduler's 1000-entry table at index floor(u * 1000); the table carries the scheduler's shift
  (SD3: 3.0) unless the scheduler shifts by resolution at sampling time (FLUX.1-dev), where the
  training table is unshifted, as in that script.

`FlowDenoiser` wraps the transformer so that it takes one context tensor per prompt, like SDXL's
UNet here: the token rows followed by one row that carries the pooled text embedding. FLUX's
latents are packed into 2 x 2 patches and given their position ids inside the wrapper, and its
guidance-distilled models get their embedded guidance (`guidance`, 3.5 as FluxPipeline's default).
The wrapper's parameters are the transformer's, named `transformer.<name>`: the names diffusers'
LoRA files use for these pipelines.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import FrozenDict

FAMILIES = ("sd3", "flux")
TRAINING_TIME = {"sd3": "logit-normal", "flux": "uniform"}


class FlowSchedule:
    """The training (noising) schedule of a flow-matching model, in the shape artshield's DDPM
    schedule has: `config` (num_train_timesteps, prediction_type "flow"), `add_noise`, and the draw of
    training times (`sample_timesteps`). `sampler_config` is the diffusers scheduler's own config
    (FlowMatchEulerDiscreteScheduler), for sampling."""

    def __init__(self, sampler_config: dict, family: str):
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        self.sampler_config = dict(sampler_config)
        self.family = family
        total = int(self.sampler_config.get("num_train_timesteps", 1000))
        shift = 1.0 if self.sampler_config.get("use_dynamic_shifting") else float(self.sampler_config.get("shift", 1.0))
        # a diffusers FrozenDict: read as config.num_train_timesteps or config.get(...), like a scheduler's
        self.config = FrozenDict(num_train_timesteps=total, prediction_type="flow", shift=shift,
                                 time_sampling=TRAINING_TIME[family])
        plain = torch.linspace(1, total, total).flip(0) / total          # 1, ..., 1/total
        self.sigmas = shift * plain / (1 + (shift - 1) * plain)          # index 0: pure noise

    @property
    def num_train_timesteps(self) -> int:
        return self.config["num_train_timesteps"]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma for transformer timesteps t (sigma * 1000)."""
        return torch.as_tensor(t).float() / self.num_train_timesteps

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(t).to(latents.device).reshape(-1, *[1] * (latents.ndim - 1))
        return ((1 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)

    def velocity(self, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The flow target eps - z."""
        return noise - latents

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training timesteps (sigma * 1000), drawn as the family's diffusers training script draws them."""
        if self.config["time_sampling"] == "logit-normal":
            u = torch.sigmoid(torch.randn(n, generator=generator))
        else:
            u = torch.rand(n, generator=generator)
        index = (u * self.num_train_timesteps).long().clamp(max=self.num_train_timesteps - 1)
        return self.sigmas[index] * self.num_train_timesteps

    def spread(self, k: int) -> torch.Tensor:
        """k timesteps at the centres of k equal strata of the training table (small to large noise)."""
        index = ((torch.arange(k) + 0.5) * self.num_train_timesteps / k).long()
        return self.sigmas.flip(0)[index] * self.num_train_timesteps


@dataclass
class DenoiserOutput:
    sample: torch.Tensor


class FlowDenoiser(torch.nn.Module):
    """A flow transformer with the UNet's call shape: (latents (B, C, H, W), t, context) -> `.sample`
    (B, C, H, W), the predicted velocity. `context` is (B, tokens + 1, width): the token rows and,
    last, a row whose first `pooled_projection_dim` entries are the pooled text embedding."""

    def __init__(self, transformer: torch.nn.Module, family: str, guidance: float = 3.5):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        self.transformer = transformer
        self.family = family
        self.guidance = float(guidance)

    @property
    def config(self):
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def pooled_dim(self) -> int:
        return int(self.transformer.config.pooled_projection_dim)

    @property
    def guidance_embedded(self) -> bool:
        return self.family == "flux" and bool(self.transformer.config.get("guidance_embeds", False))

    def enable_gradient_checkpointing(self) -> None:
        self.transformer.enable_gradient_checkpointing()

    def __getattr__(self, name: str):
        # the transformer's own methods (diffusers' PEFT integration: add_adapter, set_adapters,
        # disable_adapters, ...) are the wrapper's: the parameters they touch are the same
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "transformer" or name.startswith("__"):
                raise
            return getattr(super().__getattr__("transformer"), name)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, **_) -> DenoiserOutput:
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device).float().reshape(-1)
        t = (t.expand(b) if t.numel() == 1 else t).to(sample.dtype)
        tokens = encoder_hidden_states[:, :-1]
        pooled = encoder_hidden_states[:, -1, :self.pooled_dim]
        if self.family == "sd3":
            out = self.transformer(hidden_states=sample, encoder_hidden_states=tokens, pooled_projections=pooled,
                                   timestep=t, return_dict=False)[0]
            return DenoiserOutput(out)
        packed, ids = pack(sample)
        text_ids = torch.zeros(tokens.shape[1], 3, device=sample.device, dtype=sample.dtype)
        guidance = torch.full((b,), self.guidance, device=sample.device) if self.guidance_embedded else None
        out = self.transformer(hidden_states=packed, encoder_hidden_states=tokens, pooled_projections=pooled,
                               timestep=t / 1000, img_ids=ids, txt_ids=text_ids, guidance=guidance,
                               return_dict=False)[0]
        return DenoiserOutput(unpack(out, sample.shape))


def pack(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLUX's layout: (B, C, H, W) -> (B, H/2 * W/2, 4C) patches and their (H/2 * W/2, 3) position ids
    (0, row, column), as FluxPipeline makes them."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"FLUX latents need an even height and width, not {h} x {w}")
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), 4 * c)
    ids = torch.zeros(h // 2, w // 2, 3, device=latents.device, dtype=latents.dtype)
    ids[..., 1] += torch.arange(h // 2, device=latents.device, dtype=latents.dtype)[:, None]
    ids[..., 2] += torch.arange(w // 2, device=latents.device, dtype=latents.dtype)[None, :]
    return patches, ids.reshape(-1, 3)


def unpack(patches: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of `pack`."""
    b, c, h, w = shape
    return patches.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def flux_shift(config: dict, latent_side: tuple[int, int]) -> float:
    """FLUX.1-dev's resolution-dependent shift mu for latents of (h, w) (FluxPipeline's
    calculate_shift: linear in the number of 2 x 2 patches between base and max)."""
    seq = (latent_side[0] // 2) * (latent_side[1] // 2)
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    return seq * slope + base - slope * base_len
