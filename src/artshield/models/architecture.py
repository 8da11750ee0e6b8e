"""Architectures of the embedded model and of the tiny random-weight test components.

Both are built from the same diffusers/transformers classes as Stable Diffusion 1.x, so every
algorithm in artshield runs unchanged on them and on a real SD checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


@dataclass(frozen=True)
class Size:
    """Widths of the three networks. The image side is latent side x 2**(len(vae_channels)-1)."""

    image_size: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    latent_channels: int
    unet_channels: tuple[int, ...]
    unet_layers: int
    unet_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    max_tokens: int


MINI = Size(image_size=32, vae_channels=(32, 64, 128), vae_layers=2, latent_channels=4,
            unet_channels=(96, 160, 192), unet_layers=2, unet_heads=4,
            text_width=256, text_layers=4, text_heads=4, max_tokens=24)
TINY = Size(image_size=16, vae_channels=(8, 16), vae_layers=1, latent_channels=4,
            unet_channels=(16, 32), unet_layers=1, unet_heads=2,
            text_width=16, text_layers=1, text_heads=2, max_tokens=16)


def _groups(channels: tuple[int, ...]) -> int:
    """The largest GroupNorm group count up to 32 (SD's) that divides every width."""
    return next(g for g in range(32, 0, -1) if all(c % g == 0 for c in channels))


def build_vae(size: Size) -> AutoencoderKL:
    n = len(size.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=size.vae_channels, layers_per_block=size.vae_layers,
        latent_channels=size.latent_channels, norm_num_groups=_groups(size.vae_channels),
        sample_size=size.image_size,
    )


def build_unet(size: Size) -> UNet2DConditionModel:
    n = len(size.unet_channels)
    latent = size.image_size // 2 ** (len(size.vae_channels) - 1)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(
        sample_size=latent, in_channels=size.latent_channels, out_channels=size.latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=size.unet_channels,
        layers_per_block=size.unet_layers, cross_attention_dim=size.text_width,
        # diffusers' historical naming: for this UNet class "attention_head_dim" is the head count
        attention_head_dim=size.unet_heads,
        norm_num_groups=_groups(size.unet_channels),
    )


def build_text_encoder(size: Size, vocab_size: int, bos: int, eos: int, pad: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=size.text_width, intermediate_size=4 * size.text_width,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
        max_position_embeddings=size.max_tokens, projection_dim=size.text_width,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
    )
    return CLIPTextModel(config)


def noise_scheduler() -> DDPMScheduler:
    """The noise schedule of Stable Diffusion 1.x (scaled-linear betas, epsilon prediction)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


def sampling_scheduler() -> DDIMScheduler:
    return DDIMScheduler.from_config(noise_scheduler().config, set_alpha_to_one=False, steps_offset=1)


@dataclass(frozen=True)
class UpscalerSize:
    """Widths of an x4 upscaler in the wiring of stabilityai/stable-diffusion-x4-upscaler: a VAE that
    decodes 4x larger than its latents, a UNet that reads the latents and the low-resolution image
    side by side (4 + 3 channels) and takes the noise level of that image as a class label."""

    vae_channels: tuple[int, int, int]
    vae_layers: int
    unet_channels: tuple[int, ...]
    unet_layers: int
    unet_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    max_tokens: int
    max_noise_level: int = 350


# mini's upscaler: 32 -> 128 pixels (latents 32 x 32); about 1/400 of SD's x4 upscaler. Its VAE has
# mini's VAE widths: a first try at (32, 64, 64) with one layer per block, 3,000 steps, lost the
# colour of green and purple icons (26 dB held-out PSNR, grey where green was)
MINI_X4 = UpscalerSize(vae_channels=(32, 64, 128), vae_layers=2, unet_channels=(64, 128, 128), unet_layers=1,
                       unet_heads=4, text_width=128, text_layers=2, text_heads=2, max_tokens=24)
TINY_X4 = UpscalerSize(vae_channels=(8, 16, 16), vae_layers=1, unet_channels=(16, 32), unet_layers=1,
                       unet_heads=2, text_width=16, text_layers=1, text_heads=2, max_tokens=16)
# SD's x4 upscaler: its latents are large, so its VAE is read with this scaling factor (diffusers'
# upscale pipeline resets any other value to it)
X4_SCALING_FACTOR = 0.08333


def build_upscaler_vae(size: UpscalerSize) -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=size.vae_channels,
                         layers_per_block=size.vae_layers, latent_channels=4,
                         norm_num_groups=_groups(size.vae_channels), scaling_factor=X4_SCALING_FACTOR)


def build_upscaler_unet(size: UpscalerSize, sample_size: int = 32) -> UNet2DConditionModel:
    """No attention at the full-resolution level (as SD's x4 upscaler), cross-attention below it."""
    n = len(size.unet_channels)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4 + 3, out_channels=4, block_out_channels=size.unet_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",), layers_per_block=size.unet_layers,
        cross_attention_dim=size.text_width, attention_head_dim=size.unet_heads,
        norm_num_groups=_groups(size.unet_channels), num_class_embeds=size.max_noise_level + 1)


def build_upscaler_text_encoder(size: UpscalerSize, vocab_size: int, bos: int, eos: int, pad: int) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=size.text_width, intermediate_size=4 * size.text_width,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
        max_position_embeddings=size.max_tokens, projection_dim=size.text_width,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad))


def upscaler_schedulers() -> tuple[DDPMScheduler, DDPMScheduler]:
    """(noise scheduler of the latents, noise scheduler of the low-resolution image), as in SD's x4
    upscaler: betas from 1e-4 to 0.02 spaced in square root (what LDM's configs call "linear" and
    diffusers "scaled_linear"), v-prediction for the latents."""
    latents = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="scaled_linear",
                            prediction_type="v_prediction", clip_sample=False)
    low_res = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="scaled_linear",
                            clip_sample=False)
    return latents, low_res


def upscaler_index(max_noise_level: int = 350) -> dict:
    """The model_index.json of a StableDiffusionUpscalePipeline folder (no safety checker)."""
    import diffusers

    return {"_class_name": "StableDiffusionUpscalePipeline", "_diffusers_version": diffusers.__version__,
            "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"], "low_res_scheduler": ["diffusers", "DDPMScheduler"],
            "safety_checker": [None, None], "feature_extractor": [None, None], "watermarker": [None, None],
            "max_noise_level": max_noise_level}


def model_index(sdxl: bool = False, zero_empty_prompt: bool = True) -> dict:
    """The model_index.json of a Stable Diffusion (or SDXL) folder: what diffusers' `from_pretrained`
    (and its `from_single_file` with a config folder) reads to know the parts. No safety checker."""
    import diffusers

    index = {"_class_name": "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline",
             "_diffusers_version": diffusers.__version__,
             "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDPMScheduler"], "feature_extractor": [None, None],
             "image_encoder": [None, None]}
    if sdxl:
        index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                     tokenizer_2=["transformers", "CLIPTokenizer"], force_zeros_for_empty_prompt=zero_empty_prompt)
    else:
        index.update(safety_checker=[None, None], requires_safety_checker=False)
    return index
