"""Write the diffusers configurations artshield ships for single-file checkpoints
(src/artshield/assets/architectures/<name>/): Stable Diffusion 1.x, 2.x (768 px, v-prediction),
2.x-base (512 px, epsilon) and SDXL (base 1.0). The numbers are those of the published models'
diffusers folders (SD 1.5, SD 2.1, SD 2.1-base, SDXL base 1.0); the modules are built on the meta
device, so nothing is allocated.

    python scripts/make_architectures.py
"""
import json
import shutil
from pathlib import Path

from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig

from artshield.models.architecture import model_index

OUT = Path(__file__).resolve().parents[1] / "src" / "artshield" / "assets" / "architectures"
DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3

ARCHITECTURES = {
    "sd15": dict(size=512, prediction="epsilon", cross=768, heads=8, linear=False, upcast=False,
                 text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                           hidden_act="quick_gelu", projection_dim=768, bos_token_id=0, eos_token_id=2,
                           pad_token_id=1),
                 pad="<|endoftext|>"),
    "sd2": dict(size=768, prediction="v_prediction", cross=1024, heads=[5, 10, 20, 20], linear=True, upcast=True,
                text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                          hidden_act="gelu", projection_dim=512, bos_token_id=0, eos_token_id=2, pad_token_id=1),
                pad="!"),
    "sd2-base": dict(size=512, prediction="epsilon", cross=1024, heads=[5, 10, 20, 20], linear=True, upcast=False,
                     text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                               hidden_act="gelu", projection_dim=512, bos_token_id=0, eos_token_id=2, pad_token_id=1),
                     pad="!"),
}


SDXL_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                 hidden_act="quick_gelu", projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
SDXL_TEXT_2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                   hidden_act="gelu", projection_dim=1280, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def tokenizer_config(folder: Path, pad: str) -> None:
    folder.mkdir(parents=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": pad}, indent=1) + "\n")


def scheduler(folder: Path, prediction: str) -> None:
    DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  clip_sample=False, prediction_type=prediction, steps_offset=1).save_config(folder)


def write_sdxl(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    with init_empty_weights():
        UNet2DConditionModel(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                             block_out_channels=(320, 640, 1280),
                             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                             transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                             cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                             addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816
                             ).save_config(out / "unet")
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=1024,
                      block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025,
                      force_upcast=True).save_config(out / "vae")
    for sub, cls, kw in (("text_encoder", "CLIPTextModel", SDXL_TEXT),
                         ("text_encoder_2", "CLIPTextModelWithProjection", SDXL_TEXT_2)):
        text = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, **kw)
        text.architectures = [cls]
        text.save_pretrained(out / sub)
    scheduler(out / "scheduler", "epsilon")
    tokenizer_config(out / "tokenizer", "<|endoftext|>")
    tokenizer_config(out / "tokenizer_2", "!")
    index = {k: v for k, v in model_index(sdxl=True).items() if k != "_diffusers_version"}
    (out / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")


def write(name: str, a: dict) -> None:
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    with init_empty_weights():
        UNet2DConditionModel(sample_size=a["size"] // 8, in_channels=4, out_channels=4, layers_per_block=2,
                             block_out_channels=(320, 640, 1280, 1280), down_block_types=DOWN, up_block_types=UP,
                             cross_attention_dim=a["cross"], attention_head_dim=a["heads"],
                             use_linear_projection=a["linear"], upcast_attention=a["upcast"]).save_config(out / "unet")
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=a["size"],
                      block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215).save_config(out / "vae")
    text = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, **a["text"])
    text.architectures = ["CLIPTextModel"]
    text.save_pretrained(out / "text_encoder")
    scheduler(out / "scheduler", a["prediction"])
    tokenizer_config(out / "tokenizer", a["pad"])
    index = {k: v for k, v in model_index().items() if k != "_diffusers_version"}
    (out / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")

if __name__ == "__main__":
    for name, a in ARCHITECTURES.items():
        write(name, a)
        print("wrote", OUT / name)
    write_sdxl(OUT / "sdxl")
    print("wrote", OUT / "sdxl")
