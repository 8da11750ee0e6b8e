"""LoRA (Hu et al., ICLR 2022) on the UNet's attention projections, with peft: each of to_q, to_k,
to_v and to_out.0 gets a trainable rank-r update B A (A random, B zero, so training starts from
the base model), scaled by alpha / r. Defaults as diffusers' train_text_to_image_lora.py and the
issue's mimicry setting: rank 4, alpha 4, lr 1e-4 constant (a model may declare its own
"lora_lr": mini does). Only the LoRA matrices are saved."""
from __future__ import annotations

from dataclasses import dataclass

from ..options import POSITIVE, Limit
from .base import Mimic, MimicConfig, register

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class LoRAConfig(MimicConfig):
    rank: int = 4
    alpha: float = 4.0
    limits = {**MimicConfig.limits, "rank": Limit(1, 1024), "alpha": POSITIVE}


def _peft_config(rank: int, alpha: float):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TARGETS)


@register("lora")
class LoRA(Mimic):
    Config = LoRAConfig
    paper_lr = 1e-4

    def prepare(self, bundle):
        bundle.unet.requires_grad_(False)
        bundle.unet.add_adapter(_peft_config(self.config.rank, self.config.alpha))
        params = [p for n, p in bundle.unet.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        return params

    def state(self, bundle):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(bundle.unet)

    @classmethod
    def apply(cls, bundle, tensors, info):
        from peft import set_peft_model_state_dict

        cfg = info["config"]
        bundle.unet.add_adapter(_peft_config(cfg["rank"], cfg["alpha"]))
        result = set_peft_model_state_dict(bundle.unet, {k: v.to(bundle.device, bundle.dtype) for k, v in tensors.items()})
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"LoRA tensors do not fit this model: {result.unexpected_keys[:3]}")
        bundle.unet.eval().requires_grad_(False)
