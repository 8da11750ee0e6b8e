"""LoRA (Hu et al., ICLR 2022) on the UNet's attention projections, with peft: each of to_q, to_k,
to_v and to_out.0 gets a trainable rank-r update B A (A random, B zero, so training starts from
the base model), scaled by alpha / r. Defaults as diffusers' train_text_to_image_lora.py and the
issue's mimicry setting: rank 4, alpha 4, lr 1e-4 constant (a model may declare its own
"lora_lr": mini does). Only the LoRA matrices are saved."""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..options import POSITIVE, Limit
from .base import Mimic, MimicConfig, register

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# which attention layers get the LoRA: every one (diffusers' scripts), or only the cross-attention
# (attn2: where the text conditions the image) or only the self-attention (attn1), for ablations
LAYERS = {"all": None, "cross": "attn2", "self": "attn1"}
PREFIX = "unet."                 # diffusers' name for the UNet's part of a pipeline LoRA file


@dataclass
class LoRAConfig(MimicConfig):
    rank: int = 4
    alpha: float = 4.0
    layers: str = "all"                # "all", "cross" (attn2 only) or "self" (attn1 only)
    limits = {**MimicConfig.limits, "rank": Limit(1, 1024), "alpha": POSITIVE}

    def __post_init__(self):
        super().__post_init__()
        if self.layers not in LAYERS:
            raise ValueError(f"layers must be one of {', '.join(LAYERS)}, not {self.layers!r}")


def _peft_config(rank: int, alpha: float, layers: str = "all"):
    from peft import LoraConfig

    attn = LAYERS[layers]
    targets = TARGETS if attn is None else rf".*\.{attn}\.(to_q|to_k|to_v|to_out\.0)"
    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


@register("lora")
class LoRA(Mimic):
    Config = LoRAConfig
    paper_lr = 1e-4

    def prepare(self, bundle):
        bundle.unet.requires_grad_(False)
        bundle.unet.add_adapter(_peft_config(self.config.rank, self.config.alpha, self.config.layers))
        params = [p for n, p in bundle.unet.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        return params

    def state(self, bundle):
        from peft import get_peft_model_state_dict

        return {PREFIX + k: v for k, v in get_peft_model_state_dict(bundle.unet).items()}

    @classmethod
    def file_metadata(cls, info: dict) -> dict[str, str]:
        """What diffusers reads to rebuild the LoRA configuration (rank, alpha, targets)."""
        cfg = info["config"]
        targets = _peft_config(cfg["rank"], cfg["alpha"], cfg.get("layers", "all")).target_modules
        return {"lora_adapter_metadata": json.dumps({f"{PREFIX}r": cfg["rank"], f"{PREFIX}lora_alpha": cfg["alpha"],
                                                     f"{PREFIX}target_modules": targets if isinstance(targets, str)
                                                     else sorted(targets)}, sort_keys=True)}

    @classmethod
    def apply(cls, bundle, tensors, info):
        from peft import set_peft_model_state_dict

        cfg = info["config"]
        bundle.unet.add_adapter(_peft_config(cfg["rank"], cfg["alpha"], cfg.get("layers", "all")))
        # files from before the "unet." prefix carry the bare peft names
        tensors = {k.removeprefix(PREFIX): v.to(bundle.device, bundle.dtype) for k, v in tensors.items()}
        result = set_peft_model_state_dict(bundle.unet, tensors)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"LoRA tensors do not fit this model: {result.unexpected_keys[:3]}")
        bundle.unet.eval().requires_grad_(False)


def kohya_state(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, torch.Tensor]:
    """The LoRA in kohya's key layout, with one alpha per module."""
    alpha = torch.tensor(float(info["config"]["alpha"]))
    out = {}
    for key, value in tensors.items():
        name = key.removeprefix(PREFIX)
        for ours, theirs in ((".lora_A.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_up.weight")):
            if name.endswith(ours):
                module = "lora_unet_" + name[:-len(ours)].replace(".", "_")
                out[module + theirs] = value
                out[module + ".alpha"] = alpha.clone()
    return out


def merge(bundle, tensors: dict[str, torch.Tensor], info: dict) -> None:
    """Fold the LoRA into the UNet's weights, in place: W += (alpha / r) B A for each module."""
    cfg = info["config"]
    scale = float(cfg["alpha"]) / int(cfg["rank"])
    params = dict(bundle.unet.named_parameters())
    with torch.no_grad():
        for key, down in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key.removeprefix(PREFIX)[:-len(".lora_A.weight")]
            up = tensors[key.replace(".lora_A.", ".lora_B.")]
            weight = params[module + ".weight"]
            delta = (up.float().flatten(1) @ down.float().flatten(1)) * scale
            weight.add_(delta.reshape(weight.shape).to(weight.device, weight.dtype))
