"""DreamBooth (Ruiz et al., CVPR 2023): fine-tune the whole UNet on the artist's images captioned
with a rare trigger word. diffusers' train_dreambooth.py defaults: lr 5e-6, 400 steps, batch 1
(Anti-DreamBooth's victim uses 5e-7 and 1000 steps on SD 2.1). The model's "dreambooth_lr" (mini
declares one: its scale needs a larger rate) replaces 5e-6 when lr is not given.

Prior preservation (prior_images > 0, off by default): the base model first generates that many
images of the class prompt (the model's generic prompt unless given), and they join the training
set with the class prompt, so that each step fits the artist and keeps the class; diffusers draws
instance and class images 1:1 with weight 1, here they are drawn in proportion to their numbers.
The whole UNet's weights are saved."""
from __future__ import annotations

from dataclasses import dataclass

from ..options import Limit
from .base import Mimic, MimicConfig, register


@dataclass
class DreamBoothConfig(MimicConfig):
    steps: int = 400
    batch_size: int = 1
    prior_images: int = 0
    prior_prompt: str | None = None
    limits = {**MimicConfig.limits, "prior_images": Limit(0, 10_000)}


@register("dreambooth")
class DreamBooth(Mimic):
    Config = DreamBoothConfig
    paper_lr = 5e-6

    def run(self, images, captions, generator=None, progress=None):
        if self.config.prior_images > 0:
            from ..generate import generate

            prompt = self.config.prior_prompt or self.bundle.conventions.generic_prompt
            prior = generate(self.bundle, [prompt] * self.config.prior_images, seed=self.config.seed + 10_000)
            images, captions = list(images) + list(prior), list(captions) + [prompt] * len(prior)
        return super().run(images, captions, generator, progress)

    def prepare(self, bundle):
        bundle.unet.requires_grad_(True)
        return list(bundle.unet.parameters())

    def state(self, bundle):
        return bundle.unet.state_dict()

    @classmethod
    def apply(cls, bundle, tensors, info):
        missing, unexpected = bundle.unet.load_state_dict({k: v.to(bundle.dtype) for k, v in tensors.items()},
                                                          strict=False)
        if missing or unexpected:
            raise ValueError(f"DreamBooth weights do not fit this model ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected tensors)")
