"""Tiny random-weight models of the same diffusers/transformers classes, for fast tests.

They exercise every code path of a real Stable Diffusion checkpoint (folder layout, safetensors,
tokenizer files, scheduler config) in seconds on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from .architecture import (TINY, TINY_X4, build_text_encoder, build_unet, build_upscaler_text_encoder,
                           build_upscaler_unet, build_upscaler_vae, build_vae, model_index, noise_scheduler,
                           upscaler_index, upscaler_schedulers)
from .tokenizer import write_tokenizer

TINY_CAPTIONS = ["trash can icon, papirus style", "folder icon, tango style", "printer icon, oxygen style",
                 "a painting of a house", "an icon in the style of an artist"]


def make_tiny_model(out_dir: str | Path, seed: int = 0, family: str = "sd1") -> Path:
    """Write a random-weight Stable-Diffusion-shaped diffusers folder to out_dir and return it.

    family "sd1": SD 1.x's wiring (convolutional attention projections, OpenAI CLIP's quick GELU,
    epsilon prediction); "sd2": SD 2.x's (linear projections, OpenCLIP's GELU, v-prediction);
    "sdxl": SDXL's (a second, projecting text encoder; the UNet reads both encoders' states side by
    side and the pooled embedding with the time ids)."""
    if family not in ("sd1", "sd2", "sdxl"):
        raise ValueError(f"family must be sd1, sd2 or sdxl, not {family!r}")
    out = Path(out_dir)
    torch.manual_seed(seed)
    tok = write_tokenizer(TINY_CAPTIONS, out / "tokenizer", num_merges=200, max_length=TINY.max_tokens)
    build_vae(TINY).save_pretrained(out / "vae", safe_serialization=True)
    unet = build_unet(TINY)
    text = build_text_encoder(TINY, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    scheduler = noise_scheduler()
    if family == "sd2":
        unet = UNet2DConditionModel.from_config(unet.config, use_linear_projection=True)
        text.config.hidden_act = "gelu"
        text = type(text)(text.config)
        scheduler = DDPMScheduler.from_config(scheduler.config, prediction_type="v_prediction")
    if family == "sdxl":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        second = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=TINY.max_tokens, projection_dim=8, hidden_act="gelu",
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        second.save_pretrained(out / "text_encoder_2", safe_serialization=True)
        write_tokenizer(TINY_CAPTIONS, out / "tokenizer_2", num_merges=200, max_length=TINY.max_tokens)
        unet = UNet2DConditionModel.from_config(
            unet.config, cross_attention_dim=TINY.text_width + 24, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=8 + 6 * 4)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    text.save_pretrained(out / "text_encoder", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    write_model_index(out, sdxl=family == "sdxl")
    return out


def write_model_index(out: Path, sdxl: bool = False) -> None:
    """The model_index.json that lets diffusers' own `from_pretrained` open the folder."""
    (out / "model_index.json").write_text(json.dumps(model_index(sdxl), indent=1))


def make_tiny_upscaler(out_dir: str | Path, seed: int = 0) -> Path:
    """A random-weight folder shaped like stabilityai/stable-diffusion-x4-upscaler (the classes and
    wiring of `architecture.build_upscaler_*`; only the widths are tiny)."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    tok = write_tokenizer(TINY_CAPTIONS, out / "tokenizer", num_merges=200, max_length=TINY_X4.max_tokens)
    build_upscaler_text_encoder(TINY_X4, len(tok), tok.bos_token_id, tok.eos_token_id,
                                tok.pad_token_id).save_pretrained(out / "text_encoder", safe_serialization=True)
    build_upscaler_vae(TINY_X4).save_pretrained(out / "vae", safe_serialization=True)
    build_upscaler_unet(TINY_X4, sample_size=16).save_pretrained(out / "unet", safe_serialization=True)
    latents, low_res = upscaler_schedulers()
    DDIMScheduler.from_config(latents.config).save_pretrained(out / "scheduler")
    low_res.save_pretrained(out / "low_res_scheduler")
    (out / "model_index.json").write_text(json.dumps(upscaler_index(TINY_X4.max_noise_level), indent=1))
    return out
