"""Stable Diffusion's real architectures with random weights, for timing and memory benchmarks.

Random weights cost exactly what trained ones cost (same layers, same shapes), so this measures
what a method costs on SD-1.5, SDXL, SD3 medium or FLUX.1-dev without their checkpoints, which
cannot be downloaded here. The UNet models' configurations are the ones artshield ships for
single-file checkpoints (assets/architectures, those of the published diffusers folders: SD-1.5's
860M-parameter UNet, SDXL's 2.6B-parameter UNet with its two text encoders); the flow models' are
below (FLOW_ARCHITECTURES); the tokenizers are CLIP's.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .bundle import ModelBundle
from .conventions import ModelConventions


def random_bundle(architecture: str, device: torch.device, dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> ModelBundle:
    """A bundle of `architecture` (sd15, sd2, sd2-base, sdxl) with random weights."""
    from .loader import _finish
    from .single_file import _config_folder

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="artshield-random-") as tmp:
        folder = _config_folder(architecture, Path(tmp))
        parts = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
                 "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
                 "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
                 "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer")}
        if (folder / "text_encoder_2").is_dir():
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    return _finish(parts, scheduler, f"{architecture}-random", "random", device, dtype, ModelConventions(steps=50))


def sd15_random_bundle(device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelBundle:
    return random_bundle("sd15", device, dtype, seed)


# The published diffusers configurations of Stable Diffusion 3 medium and FLUX.1-dev (their
# model_index folders' transformer, vae, text encoder and scheduler configs), for random bundles.
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              projection_dim=768, hidden_act="quick_gelu", max_position_embeddings=77, bos_token_id=0,
              eos_token_id=2, pad_token_id=1)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
              projection_dim=1280, hidden_act="gelu", max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
              pad_token_id=1)
FLOW_VAE = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16, sample_size=1024,
                use_quant_conv=False, use_post_quant_conv=False)
FLOW_ARCHITECTURES = {
    "sd3-medium": dict(
        family="sd3",
        transformer=dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                         num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                         pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192),
        vae=dict(FLOW_VAE, scaling_factor=1.5305, shift_factor=0.0609),
        scheduler=dict(shift=3.0)),
    "flux-dev": dict(
        family="flux",
        transformer=dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                         num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                         guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
        vae=dict(FLOW_VAE, scaling_factor=0.3611, shift_factor=0.1159),
        # T5 v1.1 XXL, the encoder alone
        t5=dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", is_gated_act=True, dense_act_fn="gelu_new"),
        scheduler=dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                       max_image_seq_len=4096)),
}


def flow_modules(architecture: str, tmp: Path) -> dict:
    """The parts of SD3 medium ("sd3-medium", without its optional T5, as its pipeline allows) or
    FLUX.1-dev ("flux-dev", T5-XXL's encoder included), with random weights (on the meta device
    under accelerate's init_empty_weights). CLIP's tokenizers are CLIP's own vocabulary; FLUX's T5
    tokenizer, which cannot be shipped, is a small learnt one written to `tmp` (its ids stay inside
    T5's vocabulary, so the encoder runs as it would on real ids)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import T5Config, T5EncoderModel

    from .single_file import clip_vocabulary
    from .tokenizer import write_t5_tokenizer

    spec = FLOW_ARCHITECTURES[architecture]
    clip_vocabulary(tmp / "clip")

    def clip_tokenizer(pad: str):
        return CLIPTokenizer.from_pretrained(tmp / "clip", model_max_length=77, pad_token=pad)

    parts = {"vae": AutoencoderKL(**spec["vae"]), "tokenizer": clip_tokenizer("<|endoftext|>"),
             "scheduler": FlowMatchEulerDiscreteScheduler(**spec["scheduler"])}
    if spec["family"] == "sd3":
        parts.update(transformer=SD3Transformer2DModel(**spec["transformer"]),
                     text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L)),
                     text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)),
                     tokenizer_2=clip_tokenizer("!"))
    else:
        words = ["a painting of a house", "an icon in a flat style", "a portrait, oil on canvas"]
        parts.update(transformer=FluxTransformer2DModel(**spec["transformer"]),
                     text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                     text_encoder_2=T5EncoderModel(T5Config(**spec["t5"])),
                     tokenizer_2=write_t5_tokenizer(words, tmp / "t5"))
    return parts


def flow_random_bundle(architecture: str, device: torch.device, dtype: torch.dtype = torch.float32,
                       seed: int = 0) -> ModelBundle:
    """A random-weight bundle of a flow architecture (flow_modules)."""
    from .loader import _load_flow

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="artshield-random-") as tmp:
        parts = flow_modules(architecture, Path(tmp))
        family = FLOW_ARCHITECTURES[architecture]["family"]
        return _load_flow(lambda cls, sub: parts[sub], family, f"{architecture}-random", "random", device, dtype,
                          None, has=lambda sub: sub in parts)
