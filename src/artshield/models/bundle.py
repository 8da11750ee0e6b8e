"""ModelBundle: the parts of a latent text-to-image diffusion model that artshield's algorithms use.

Every algorithm is written once against it, so SD-1.5 on a GPU and mini on a CPU run the same code.
"""
from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field, replace

import torch

from .conventions import ModelConventions


@dataclass
class ModelBundle:
    vae: object                       # diffusers AutoencoderKL
    unet: object                      # diffusers UNet2DConditionModel
    text_encoder: object              # transformers CLIPTextModel
    tokenizer: object                 # transformers CLIPTokenizer
    scheduler: object                 # diffusers DDPMScheduler: the training (noising) schedule
    spec: str
    source: str                       # "embedded", "folder", "hub", "edit" or "random"
    device: torch.device
    dtype: torch.dtype
    conventions: ModelConventions = field(default_factory=ModelConventions)
    architecture: str | None = None   # single files: the configuration named at load (None: detected)
    memory: dict = field(default_factory=dict)   # the memory options in force (save_memory)

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The native resolution: what the UNet was trained on, in pixels."""
        return int(self.unet.config.sample_size) * self.latent_scale

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode(self, images: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> scaled latents (B, C, H/f, W/f). Differentiable."""
        dist = self.vae.encode((images * 2 - 1).to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return z * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1]. Differentiable."""
        out = self.vae.decode(latents.to(self.device, self.dtype) / self.scaling_factor).sample
        return ((out + 1) / 2).clamp(0, 1)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> the text encoder's last hidden states, the UNet's cross-attention input."""
        return self.text_encoder(self.tokenize(prompts))[0]

    def sampler(self):
        """A DDIM sampler on the training schedule, with Stable Diffusion's convention: timesteps
        offset by one, no forced final alpha of 1."""
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.scheduler.config, steps_offset=1, set_alpha_to_one=False)

    def pipeline(self):
        """A diffusers StableDiffusionPipeline over these very modules (no copies)."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.sampler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def copy(self, unet: bool = True, text: bool = True) -> ModelBundle:
        """A bundle whose UNet (`unet`) and text encoder and tokenizer (`text`) are copies that may
        change (fine-tuning, an adaptation, an edit); the other parts, the VAE always, are shared."""
        return replace(self,
                       unet=_copy.deepcopy(self.unet) if unet else self.unet,
                       text_encoder=_copy.deepcopy(self.text_encoder) if text else self.text_encoder,
                       tokenizer=_copy.deepcopy(self.tokenizer) if text else self.tokenizer)

    def save_memory(self, gradient_checkpointing: bool = False, attention_slicing: bool = False,
                    vae_tiling: bool = False) -> ModelBundle:
        """Trade speed for memory, in place. Gradient checkpointing recomputes the UNet's and the
        VAE's activations during backward passes (protect, mimic, erase); attention slicing computes
        attention one head group at a time; VAE tiling encodes and decodes large images in
        overlapping tiles. Attention already runs through torch's fused SDPA kernel by default."""
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self.vae.enable_gradient_checkpointing()
            if hasattr(self.text_encoder, "gradient_checkpointing_enable"):
                self.text_encoder.gradient_checkpointing_enable()
        if attention_slicing:
            self.unet.set_attention_slice("auto")
        if vae_tiling:
            self.vae.enable_tiling()
        self.memory = {"gradient_checkpointing": gradient_checkpointing, "attention_slicing": attention_slicing,
                       "vae_tiling": vae_tiling}
        return self

    def describe(self) -> dict:
        out = {"spec": self.spec, "source": self.source, "device": str(self.device), "dtype": str(self.dtype),
               "image_size": self.image_size}
        if self.memory:
            out["memory_options"] = dict(self.memory)
        return out
