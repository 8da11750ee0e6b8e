"""Noisy upscaling (Hönig, Rando, Carlini and Tramèr, ICLR 2025, "Adversarial perturbations cannot
reliably protect artists from generative AI"): add Gaussian noise, then let a diffusion model
redraw the image. The paper's best black-box attack: a median success above 40 % against Glaze,
Mist and Anti-DreamBooth. Two purifiers, named for what they are:

- `noisy-upscale` (the paper's): noise sigma = 0.1, then an x4 upscaler that is *not* the attacked
  model, prompted with `prompt`, on the image at the model's training size (Hönig et al. upscale
  the training-size image: a 1536 x 1024 artwork is not decoded at 6144 x 4096), then resized back
  to the input size. `upscaler`: a local diffusers folder of a StableDiffusionUpscalePipeline (e.g.
  stabilityai/stable-diffusion-x4-upscaler); on mini it defaults to mini's own x4 upscaler
  (assets/mini-x4, trained by scripts/train_upscaler.py on the training themes only, never on the
  held-out artists); other models without one are refused. As in the paper's fork of diffusers,
  the upscaler is *told* `noise_level` = 320 but only `added_noise_level` = 0 is added to its
  input (the stock pipeline adds all it is told: `added_noise_level=20 noise_level=20` is
  diffusers' default call).
- `noisy-redraw`: noise sigma = 0.1, then the attacked model itself redraws the image at its
  native size (img2img, strength 0.25, deterministic DDIM, the model's generic prompt or
  `prompt`), resized back. Not the paper's purifier: the model that redraws is the one the mimic
  fine-tunes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..options import Limit
from ..sampling import img2img
from ._redraw import from_canvas, to_canvas
from .base import Purifier, PurifyConfig, register


@dataclass
class NoisyRedrawConfig(PurifyConfig):
    sigma: float = 0.1
    strength: float = 0.25
    prompt: str | None = None
    limits = {"sigma": Limit(0, 1), "strength": Limit(0, 1, low_open=True)}


@dataclass
class NoisyUpscaleConfig(PurifyConfig):
    sigma: float = 0.1
    prompt: str | None = None
    upscaler: str | None = None      # a local StableDiffusionUpscalePipeline folder (mini: its own)
    noise_level: int = 320           # the level the upscaler is told (Hönig et al.)
    added_noise_level: int = 0       # the level actually added to its input (Hönig et al.'s fork: none)
    upscaler_steps: int = 75
    limits = {"sigma": Limit(0, 1), "noise_level": Limit(0, 350), "added_noise_level": Limit(0, 350),
              "upscaler_steps": Limit(1, 1000)}

    def __post_init__(self):
        super().__post_init__()
        if self.added_noise_level > self.noise_level:
            raise ValueError(f"added_noise_level ({self.added_noise_level}) cannot exceed noise_level "
                             f"({self.noise_level}), the level the upscaler is told")


def _noisy(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    return (image.float().cpu() + torch.randn(image.shape, generator=generator) * sigma).clamp(0, 1)


@register("noisy-redraw")
class NoisyRedraw(Purifier):
    Config = NoisyRedrawConfig
    needs_model = True

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        prompt = self.config.prompt if self.config.prompt is not None else self.bundle.conventions.generic_prompt
        x = to_canvas(self.bundle, _noisy(image, self.config.sigma, generator))
        return from_canvas(img2img(self.bundle, x, [prompt], self.config.strength, generator), image)


@register("noisy-upscale")
class NoisyUpscale(Purifier):
    Config = NoisyUpscaleConfig
    needs_model = True

    def __init__(self, bundle=None, config=None):
        super().__init__(bundle, config)
        from diffusers import StableDiffusionUpscalePipeline

        from ..io import nonfinite

        name = self.config.upscaler or default_upscaler(bundle)
        if name is None:
            raise ValueError("needs an upscaler that is not the attacked model: upscaler=DIR, a diffusers "
                             "StableDiffusionUpscalePipeline folder; noisy-redraw redraws with the model itself")
        folder = Path(name).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ValueError(f"upscaler {name}: not a diffusers upscaler folder (no model_index.json there)")
        try:
            self.pipe = StableDiffusionUpscalePipeline.from_pretrained(folder, use_safetensors=True,
                                                                       torch_dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ValueError(f"upscaler {name}: cannot load it ({str(e).splitlines()[0]}); its weights must be "
                             ".safetensors files, pickled .bin weights are never loaded") from None
        for part in ("vae", "unet", "text_encoder"):
            if nonfinite(getattr(self.pipe, part).state_dict()):
                raise ValueError(f"upscaler {name}: its {part} weights hold NaN or infinite values")
        self.upscaler = str(folder)
        self.pipe.to(bundle.device)
        self.pipe.set_progress_bar_config(disable=True)
        # told noise_level, given only added_noise_level: the pipeline noises its input through this
        add_noise, unadded = self.pipe.low_res_scheduler.add_noise, self.config.noise_level - self.config.added_noise_level
        self.pipe.low_res_scheduler.add_noise = (
            lambda sample, noise, level: add_noise(sample, noise, (level - unadded).clamp(min=0)))

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        prompt = self.config.prompt if self.config.prompt is not None else self.bundle.conventions.generic_prompt
        # the training-size view, noised, then upscaled x4 and brought back to the input's size
        small = to_canvas(self.bundle, image)[0].cpu()
        noisy = _noisy(small, self.config.sigma, generator)
        out = self.pipe(prompt=prompt, image=noisy[None].to(self.bundle.device), noise_level=self.config.noise_level,
                        num_inference_steps=self.config.upscaler_steps, generator=generator, output_type="pt").images
        return from_canvas(out.float(), image)


MINI_UPSCALER_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini-x4"


def default_upscaler(bundle) -> str | None:
    """mini's own x4 upscaler for mini; None (the user must name one) for any other model."""
    if getattr(bundle, "spec", None) == "mini" and (MINI_UPSCALER_DIR / "model_index.json").is_file():
        return str(MINI_UPSCALER_DIR)
    return None
