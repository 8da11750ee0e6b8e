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
from .tokenizer import write_t5_tokenizer, write_tokenizer

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


def make_tiny_transformer_model(out_dir: str | Path, family: str = "sd3", seed: int = 0) -> Path:
    """Write a random-weight diffusers folder of a transformer (MMDiT) family and return it: "sd3"
    (SD3Transformer2DModel; two projecting CLIP encoders and a T5 encoder; a 16-channel VAE with a
    shift; flow matching with shift 3, as SD3-medium) or "flux" (FluxTransformer2DModel with the
    guidance embedding of the distilled models; CLIP's pooled output and T5's states; latents
    packed 2 x 2; flow matching with resolution-dependent shift, as FLUX.1-dev). Only the widths
    are tiny: diffusers' own StableDiffusion3Pipeline and FluxPipeline open the folder."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if family not in ("sd3", "flux"):
        raise ValueError(f"family must be sd3 or flux, not {family!r}")
    out = Path(out_dir)
    torch.manual_seed(seed)
    t5_width, clip_width, projection = 32, 16, 8

    def clip(folder: str, cls):
        tok = write_tokenizer(TINY_CAPTIONS, out / f"tokenizer{folder}", num_merges=200, max_length=TINY.max_tokens)
        cls(CLIPTextConfig(vocab_size=len(tok), hidden_size=clip_width, intermediate_size=2 * clip_width,
                           num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=TINY.max_tokens,
                           projection_dim=projection, hidden_act="gelu", bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            ).save_pretrained(out / f"text_encoder{folder}", safe_serialization=True)

    def t5(folder: str):
        tok = write_t5_tokenizer(TINY_CAPTIONS, out / f"tokenizer{folder}")
        T5EncoderModel(T5Config(vocab_size=len(tok), d_model=t5_width, d_kv=16, d_ff=2 * t5_width, num_layers=1,
                                num_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.pad_token_id)
                       ).save_pretrained(out / f"text_encoder{folder}", safe_serialization=True)

    latent = 16 if family == "sd3" else 4
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 16), layers_per_block=1, latent_channels=latent, norm_num_groups=8,
                  sample_size=TINY.image_size, scaling_factor=1.5305 if family == "sd3" else 0.3611,
                  shift_factor=0.0609 if family == "sd3" else 0.1159, use_quant_conv=False, use_post_quant_conv=False
                  ).save_pretrained(out / "vae", safe_serialization=True)
    side = TINY.image_size // 2                  # latent side: the VAE halves the image once
    if family == "sd3":
        clip("", CLIPTextModelWithProjection)
        clip("_2", CLIPTextModelWithProjection)
        t5("_3")
        SD3Transformer2DModel(sample_size=side, patch_size=2, in_channels=latent, num_layers=1, attention_head_dim=8,
                              num_attention_heads=2, joint_attention_dim=t5_width, caption_projection_dim=16,
                              pooled_projection_dim=2 * projection, out_channels=latent, pos_embed_max_size=side
                              ).save_pretrained(out / "transformer", safe_serialization=True)
        FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(out / "scheduler")
        parts = {"text_encoder": ("transformers", "CLIPTextModelWithProjection"),
                 "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
                 "text_encoder_3": ("transformers", "T5EncoderModel"),
                 "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "CLIPTokenizer"),
                 "tokenizer_3": ("transformers", "T5TokenizerFast"),
                 "transformer": ("diffusers", "SD3Transformer2DModel")}
        pipeline = "StableDiffusion3Pipeline"
    else:
        clip("", CLIPTextModel)
        t5("_2")
        FluxTransformer2DModel(patch_size=1, in_channels=4 * latent, num_layers=1, num_single_layers=1,
                               attention_head_dim=8, num_attention_heads=2, joint_attention_dim=t5_width,
                               pooled_projection_dim=clip_width, guidance_embeds=True, axes_dims_rope=(2, 2, 4)
                               ).save_pretrained(out / "transformer", safe_serialization=True)
        FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                        base_image_seq_len=256, max_image_seq_len=4096
                                        ).save_pretrained(out / "scheduler")
        parts = {"text_encoder": ("transformers", "CLIPTextModel"), "text_encoder_2": ("transformers", "T5EncoderModel"),
                 "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "T5TokenizerFast"),
                 "transformer": ("diffusers", "FluxTransformer2DModel")}
        pipeline = "FluxPipeline"
    index = {"_class_name": pipeline, "_diffusers_version": "0.30.0", "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], **{k: list(v) for k, v in parts.items()}}
    (out / "model_index.json").write_text(json.dumps(index, indent=1))
    return out
