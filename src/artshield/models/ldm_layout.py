"""diffusers' module names -> Stable Diffusion's original (LDM) layout, for single-file export.

A1111, ComfyUI and diffusers' `from_single_file` open one `.safetensors` whose tensors are named as
in the original training code: the UNet under "model.diffusion_model.", the VAE under
"first_stage_model.", the text encoder under "cond_stage_model." (SD 1.x: transformers' CLIP
names under ".transformer."; SD 2.x: OpenCLIP's names under ".model.", with q, k and v in one
matrix). The renaming is derived from each network's diffusers configuration (blocks per level,
which levels have attention), so it holds for any width, depth or level count, and a test loads
the result back with diffusers' own `from_single_file` and compares every tensor.
"""
from __future__ import annotations

import torch

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _move(state: dict, src: str, dst: str, out: dict, rename: dict | None = None) -> None:
    """Every tensor under module `src` goes under `dst`, its first sub-name renamed by `rename`."""
    for key in [k for k in state if k.startswith(src + ".")]:
        rest = key[len(src) + 1:]
        for old, new in (rename or {}).items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
        out[f"{dst}.{rest}"] = state.pop(key)


def unet_to_ldm(state: dict, config) -> dict:
    state, out = dict(state), {}
    per = config.layers_per_block
    if not isinstance(per, int):
        raise ValueError("a UNet with a different block count per level has no single-file layout here")
    for src, dst in (("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
                     ("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2"),
                     ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")):
        _move(state, src, dst, out)
    for i in range(len(config.down_block_types)):
        for j in range(per):
            n = 1 + i * (per + 1) + j
            _move(state, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0", out, RESNET)
            _move(state, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{n}.1", out)
        _move(state, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (per + 1)}.0.op", out)
    _move(state, "mid_block.resnets.0", "middle_block.0", out, RESNET)
    _move(state, "mid_block.attentions.0", "middle_block.1", out)
    _move(state, "mid_block.resnets.1", "middle_block.2", out, RESNET)
    for i, kind in enumerate(config.up_block_types):
        for j in range(per + 1):
            n = i * (per + 1) + j
            _move(state, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0", out, RESNET)
            _move(state, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{n}.1", out)
        last = i * (per + 1) + per
        _move(state, f"up_blocks.{i}.upsamplers.0", f"output_blocks.{last}.{2 if 'CrossAttn' in kind else 1}", out)
    if state:
        raise ValueError(f"UNet tensors with no place in the original layout: {sorted(state)[:3]}")
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(state: dict, config) -> dict:
    state, out = dict(state), {}
    levels = len(config.block_out_channels)
    for part in ("encoder", "decoder"):
        _move(state, f"{part}.conv_norm_out", f"{part}.norm_out", out)
        for name in ("conv_in", "conv_out"):
            _move(state, f"{part}.{name}", f"{part}.{name}", out)
        for j in range(2):
            _move(state, f"{part}.mid_block.resnets.{j}", f"{part}.mid.block_{j + 1}", out, VAE_RESNET)
        for key in [k for k in state if k.startswith(f"{part}.mid_block.attentions.0.")]:
            rest = key[len(f"{part}.mid_block.attentions.0."):]
            module, param = rest.rsplit(".", 1)
            value = state.pop(key)
            # the original VAE's attention is 1x1 convolutions, diffusers' is linear layers
            out[f"{part}.mid.attn_1.{VAE_ATTENTION[module]}.{param}"] = (
                value[:, :, None, None] if param == "weight" and module != "group_norm" else value)
    for i in range(levels):
        for j in range(config.layers_per_block + 1):
            _move(state, f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", out, VAE_RESNET)
            _move(state, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{levels - 1 - i}.block.{j}", out,
                  VAE_RESNET)
        _move(state, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", out)
        _move(state, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{levels - 1 - i}.upsample.conv", out)
    for name in ("quant_conv", "post_quant_conv"):
        _move(state, name, name, out)
    if state:
        raise ValueError(f"VAE tensors with no place in the original layout: {sorted(state)[:3]}")
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_ldm(state: dict, prefix: str = "cond_stage_model.transformer.") -> dict:
    """SD 1.x (and SDXL's first encoder): transformers' CLIP text model, as it is, under a prefix."""
    return {prefix + k: v for k, v in state.items() if not k.endswith("position_ids")}


def open_clip_to_ldm(state: dict, layers: int, prefix: str = "cond_stage_model.model.") -> dict:
    """SD 2.x (and SDXL's second encoder): OpenCLIP's text tower names, q, k and v stacked into one
    in_proj; SDXL's projection as OpenCLIP's text_projection matrix (the transpose)."""
    p, out = "text_model.", {}
    if "text_projection.weight" in state:
        out["text_projection"] = state["text_projection.weight"].T
    out["token_embedding.weight"] = state[p + "embeddings.token_embedding.weight"]
    out["positional_embedding"] = state[p + "embeddings.position_embedding.weight"]
    out["ln_final.weight"] = state[p + "final_layer_norm.weight"]
    out["ln_final.bias"] = state[p + "final_layer_norm.bias"]
    for i in range(layers):
        src, dst = f"{p}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([state[src + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[dst + f"{b}.{kind}"] = state[src + f"{a}.{kind}"]
    return {prefix + k: v for k, v in out.items()}


def _text_state(encoder) -> dict:
    # transformers >= 5.6 names CLIPTextModel's tensors without the "text_model." level; the layout has it
    return {k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k: v
            for k, v in encoder.state_dict().items()}


def to_single_file(bundle) -> dict:
    """Every weight of a Stable Diffusion 1.x, 2.x or SDXL bundle in the original layout, contiguous,
    on the CPU."""
    out = {**unet_to_ldm(bundle.unet.state_dict(), bundle.unet.config),
           **vae_to_ldm(bundle.vae.state_dict(), bundle.vae.config)}
    if bundle.is_sdxl:
        out.update(clip_to_ldm(_text_state(bundle.text_encoder), "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(_text_state(bundle.text_encoder_2),
                                    bundle.text_encoder_2.config.num_hidden_layers, "conditioner.embedders.1.model."))
    else:
        cfg = bundle.text_encoder.config
        # SD 2.x's tower is OpenCLIP's (GELU); SD 1.x's is OpenAI CLIP's (quick GELU)
        text = _text_state(bundle.text_encoder)
        out.update(open_clip_to_ldm(text, cfg.num_hidden_layers) if cfg.hidden_act == "gelu" else clip_to_ldm(text))
    if bundle.scheduler.config.get("prediction_type") == "v_prediction":
        out["v_pred"] = torch.tensor([])
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}
