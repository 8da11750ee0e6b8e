"""DreamBooth (Ruiz et al., CVPR 2023): fine-tune the whole UNet on the artist's images captioned
with a rare trigger word. diffusers' train_dreambooth.py defaults: lr 5e-6, 400 steps, batch 1
(Anti-DreamBooth's victim uses 5e-7 and 1000 steps on SD 2.1). The model's "dreambooth_lr" (mini
declares one: its scale needs a larger rate) replaces 5e-6 when lr is not given.

Prior preservation (prior_images > 0, off by default): the base model first generates that many
images of the class prompt (the model's generic prompt unless given), and they join the training
set with the class prompt, so that each step fits the artist and keeps the class; diffusers draws
instance and class images 1:1 with weight 1, here they are drawn in proportion to their numbers.
With train_text_encoder (off by default, as in diffusers' script; Anti-DreamBooth's victim turns it
on, with prior preservation) the text encoders are fine-tuned with the UNet at the same rate, and
saved beside it under "text_encoder." / "text_encoder_2.". The whole UNet's weights are saved."""
from __future__ import annotations

from dataclasses import dataclass

from ..options import Limit
from .base import Mimic, MimicConfig, register


ENCODERS = ("text_encoder", "text_encoder_2")


@dataclass
class DreamBoothConfig(MimicConfig):
    steps: int = 400
    batch_size: int = 1
    prior_images: int = 0
    prior_prompt: str | None = None
    train_text_encoder: bool = False
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

    @property
    def trains_text(self) -> bool:          # the text encoder in the graph: the base embeds every batch
        return self.config.train_text_encoder

    def encoders(self, bundle) -> tuple[str, ...]:
        """The text encoders trained with train_text_encoder: the CLIP ones (FLUX: its one CLIP,
        not T5), as diffusers' DreamBooth scripts for each family train them."""
        if not self.config.train_text_encoder:
            return ()
        return ("text_encoder",) if bundle.family == "flux" else ENCODERS

    def prepare(self, bundle):
        bundle.unet.requires_grad_(True)
        params = list(bundle.unet.parameters())
        for name in self.encoders(bundle):
            if getattr(bundle, name) is not None:
                getattr(bundle, name).requires_grad_(True)
                params += list(getattr(bundle, name).parameters())
        return params

    def state(self, bundle):
        out = dict(bundle.unet.state_dict())
        for name in self.encoders(bundle):
            if getattr(bundle, name) is not None:
                out.update({f"{name}.{k}": v for k, v in getattr(bundle, name).state_dict().items()})
        return out

    @classmethod
    def apply(cls, bundle, tensors, info):
        parts = {name: {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
                 for name in ENCODERS}
        unet = {k: v for k, v in tensors.items() if not k.startswith(tuple(n + "." for n in ENCODERS))}
        for name, module, part in [("unet", bundle.unet, unet)] + [(n, getattr(bundle, n), parts[n]) for n in ENCODERS]:
            if name != "unet" and not part:
                continue                     # a UNet-only DreamBooth leaves the text encoders as they are
            if module is None:
                raise ValueError(f"DreamBooth weights for {name}, which this model does not have")
            missing, unexpected = module.load_state_dict({k: v.to(bundle.dtype) for k, v in part.items()},
                                                         strict=False)
            if missing or unexpected:
                raise ValueError(f"DreamBooth weights do not fit this model's {name} ({len(missing)} missing, "
                                 f"{len(unexpected)} unexpected tensors)")
