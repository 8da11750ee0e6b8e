"""LoRA (Hu et al., ICLR 2022) on the UNet's attention projections, with peft: each of to_q, to_k,
to_v and to_out.0 gets a trainable rank-r update B A (A random, B zero, so training starts from
the base model), scaled by alpha / r. Defaults as diffusers' train_text_to_image_lora.py and the
issue's mimicry setting: rank 4, alpha 4, lr 1e-4 constant (a model may declare its own
"lora_lr": mini does). Only the LoRA matrices are saved.

On SD3 and FLUX the LoRA goes on the transformer's projections that diffusers' own scripts
(train_dreambooth_lora_sd3.py, train_dreambooth_lora_flux.py) train by default: the image and
text streams' attention projections of every joint block, and on FLUX the feed-forward layers
too; the file's keys start with "transformer.", as those pipelines' `load_lora_weights` reads them."""
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
FLOW_PREFIX = "transformer."     # ... and for the transformer's, on SD3 and FLUX
JOINT_ATTENTION = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
                   "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]
FLOW_TARGETS = {"sd3": JOINT_ATTENTION,
                "flux": JOINT_ATTENTION + ["ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"]}


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


def _peft_config(rank: int, alpha: float, layers: str = "all", family: str = "sd"):
    from peft import LoraConfig

    if family in FLOW_TARGETS:
        if layers != "all":
            raise ValueError(f"layers {layers!r} names a UNet's attention layers; {family.upper()}'s joint blocks "
                             "mix text and image in one attention: use layers=all")
        return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=FLOW_TARGETS[family])
    attn = LAYERS[layers]
    targets = TARGETS if attn is None else rf".*\.{attn}\.(to_q|to_k|to_v|to_out\.0)"
    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


def denoiser(bundle):
    """The module a LoRA goes on, and its files' key prefix: the UNet ("unet."), or SD3's / FLUX's
    transformer ("transformer.")."""
    return (bundle.unet.transformer, FLOW_PREFIX) if bundle.is_flow else (bundle.unet, PREFIX)


@register("lora")
class LoRA(Mimic):
    Config = LoRAConfig
    paper_lr = 1e-4

    def check_model(self, bundle):
        _peft_config(self.config.rank, self.config.alpha, self.config.layers, bundle.family)

    def prepare(self, bundle):
        bundle.unet.requires_grad_(False)
        module, _ = denoiser(bundle)
        module.add_adapter(_peft_config(self.config.rank, self.config.alpha, self.config.layers, bundle.family))
        params = [p for n, p in bundle.unet.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        return params

    def state(self, bundle):
        from peft import get_peft_model_state_dict

        module, prefix = denoiser(bundle)
        return {prefix + k: v for k, v in get_peft_model_state_dict(module).items()}

    @classmethod
    def file_metadata(cls, info: dict) -> dict[str, str]:
        """What diffusers reads to rebuild the LoRA configuration (rank, alpha, targets)."""
        cfg = info["config"]
        family = info.get("family", "sd")
        prefix = FLOW_PREFIX if family in FLOW_TARGETS else PREFIX
        targets = _peft_config(cfg["rank"], cfg["alpha"], cfg.get("layers", "all"), family).target_modules
        return {"lora_adapter_metadata": json.dumps({f"{prefix}r": cfg["rank"], f"{prefix}lora_alpha": cfg["alpha"],
                                                     f"{prefix}target_modules": targets if isinstance(targets, str)
                                                     else sorted(targets)}, sort_keys=True)}

    @classmethod
    def apply(cls, bundle, tensors, info):
        from peft import set_peft_model_state_dict

        cfg = info["config"]
        family = info.get("family", "sd")
        if (family in FLOW_TARGETS) != bundle.is_flow or bundle.is_flow and family != bundle.family:
            raise ValueError(f"this LoRA was trained on a {family.upper()} model, not on a {bundle.family.upper()} one")
        module, prefix = denoiser(bundle)
        module.add_adapter(_peft_config(cfg["rank"], cfg["alpha"], cfg.get("layers", "all"), family))
        # files from before the "unet." prefix carry the bare peft names
        tensors = {k.removeprefix(prefix): v.to(bundle.device, bundle.dtype) for k, v in tensors.items()}
        result = set_peft_model_state_dict(module, tensors)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"LoRA tensors do not fit this model: {result.unexpected_keys[:3]}")
        bundle.unet.eval().requires_grad_(False)


def kohya_state(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, torch.Tensor]:
    """The LoRA in kohya's key layout, with one alpha per module."""
    if info.get("family", "sd") in FLOW_TARGETS:
        raise ValueError("kohya's layout is written for UNet LoRAs; an SD3 or FLUX LoRA is exported in diffusers' "
                         "layout (the adapter file itself, which their pipelines' load_lora_weights reads)")
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
    module, prefix = denoiser(bundle)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for key, down in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            name = key.removeprefix(prefix)[:-len(".lora_A.weight")]
            up = tensors[key.replace(".lora_A.", ".lora_B.")]
            weight = params[name + ".weight"]
            delta = (up.float().flatten(1) @ down.float().flatten(1)) * scale
            weight.add_(delta.reshape(weight.shape).to(weight.device, weight.dtype))
