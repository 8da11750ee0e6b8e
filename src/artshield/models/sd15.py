"""Stable Diffusion 1.5's architecture with random weights, for timing and memory benchmarks.

Random weights cost exactly what trained ones cost (same layers, same shapes), so this measures
what a protection costs on SD-1.5 without the checkpoint, which cannot be downloaded here. The
component configurations are those of SD-1.5's published diffusers folders (UNet 860M parameters,
the 84M-parameter KL VAE with scaling factor 0.18215, CLIP ViT-L/14's 123M text tower).
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .architecture import noise_scheduler
from .bundle import ModelBundle
from .conventions import ModelConventions
from .loader import MINI_DIR


def sd15_random_bundle(device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelBundle:
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_attention_heads=12, num_hidden_layers=12,
                                        max_position_embeddings=77, hidden_act="quick_gelu"))
    # mini's tokenizer stands in for CLIP's (ids are below CLIP's vocabulary size); 77 tokens as SD
    tokenizer = CLIPTokenizer.from_pretrained(MINI_DIR / "tokenizer", model_max_length=77)
    for module in (unet, vae, text):
        module.to(device, dtype).eval().requires_grad_(False)
    return ModelBundle(vae=vae, unet=unet, text_encoder=text, tokenizer=tokenizer, scheduler=noise_scheduler(),
                       spec="sd15-random", source="random", device=device, dtype=dtype,
                       conventions=ModelConventions(steps=50))
