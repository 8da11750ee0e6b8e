"""diffusers' transformer names -> the original layouts of Stable Diffusion 3 and FLUX, for
single-file export.

The files people trade (Stability's `sd3_medium*.safetensors`, Black Forest Labs'
`flux1-dev.safetensors` and the fine-tunes built on them, what ComfyUI loads) name the transformer
as the authors' training code does: SD3's `joint_blocks.N.{x_block,context_block}` with q, k and v
in one `qkv` matrix; FLUX's `double_blocks` (`img_attn.qkv`, `txt_attn.qkv`) and `single_blocks`
(q, k, v and the MLP's input in one `linear1`). The final modulation (and SD3's last context
modulation) holds shift then scale where diffusers holds scale then shift. Each function here is
the exact inverse of diffusers' own reader (`from_single_file`), which a test holds it to tensor by
tensor; the shapes come from the tensors, so every width and depth is written.
"""
from __future__ import annotations

import torch

SD3_PREFIX = "model.diffusion_model."


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    """(scale, shift) -> (shift, scale) along the first dimension, and back."""
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _pairs(state: dict, out: dict, renames: list[tuple[str, str]]) -> None:
    """Every tensor of diffusers' module `src` (weight, bias, scale...) under the original `dst`."""
    for src, dst in renames:
        for key in [k for k in state if k.startswith(src + ".")]:
            out[dst + key[len(src):]] = state.pop(key)


def _fused(state: dict, out: dict, parts: list[str], dst: str) -> None:
    """Projections diffusers keeps apart (q, k, v...) in one original matrix, in that order."""
    for leaf in ("weight", "bias"):
        if f"{parts[0]}.{leaf}" in state:
            out[f"{dst}.{leaf}"] = torch.cat([state.pop(f"{p}.{leaf}") for p in parts], dim=0)


def _done(state: dict, family: str) -> None:
    if state:
        raise ValueError(f"{len(state)} {family} tensors have no place in the original layout "
                         f"(first: {sorted(state)[0]})")


def sd3_transformer_to_original(state: dict, prefix: str = SD3_PREFIX) -> dict:
    """An SD3Transformer2DModel's state dict (SD3, 3.5 medium and large) in Stability's layout."""
    state, out = dict(state), {}
    if "pos_embed.pos_embed" in state:
        out["pos_embed"] = state.pop("pos_embed.pos_embed")
    _pairs(state, out, [("pos_embed.proj", "x_embedder.proj"),
                        ("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
                        ("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
                        ("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0"),
                        ("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2"),
                        ("context_embedder", "context_embedder"), ("proj_out", "final_layer.linear")])
    for leaf in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{leaf}"] = swap_halves(state.pop(f"norm_out.linear.{leaf}"))
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    for i in blocks:
        d, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        _fused(state, out, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"], x + "attn.qkv")
        _fused(state, out, [d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"], c + "attn.qkv")
        _fused(state, out, [d + "attn2.to_q", d + "attn2.to_k", d + "attn2.to_v"], x + "attn2.qkv")
        if i == blocks[-1]:       # the last block's context stream ends in a norm (AdaLayerNormContinuous)
            for leaf in ("weight", "bias"):
                out[f"{c}adaLN_modulation.1.{leaf}"] = swap_halves(state.pop(f"{d}norm1_context.linear.{leaf}"))
        _pairs(state, out, [(d + "attn.norm_q", x + "attn.ln_q"), (d + "attn.norm_k", x + "attn.ln_k"),
                            (d + "attn.norm_added_q", c + "attn.ln_q"), (d + "attn.norm_added_k", c + "attn.ln_k"),
                            (d + "attn.to_out.0", x + "attn.proj"), (d + "attn.to_add_out", c + "attn.proj"),
                            (d + "attn2.norm_q", x + "attn2.ln_q"), (d + "attn2.norm_k", x + "attn2.ln_k"),
                            (d + "attn2.to_out.0", x + "attn2.proj"),
                            (d + "norm1.linear", x + "adaLN_modulation.1"),
                            (d + "norm1_context.linear", c + "adaLN_modulation.1"),
                            (d + "ff.net.0.proj", x + "mlp.fc1"), (d + "ff.net.2", x + "mlp.fc2"),
                            (d + "ff_context.net.0.proj", c + "mlp.fc1"), (d + "ff_context.net.2", c + "mlp.fc2")])
    _done(state, "SD3 transformer")
    return {prefix + k: v for k, v in out.items()}


def flux_transformer_to_original(state: dict, prefix: str = "") -> dict:
    """A FluxTransformer2DModel's state dict in Black Forest Labs' layout (no prefix, as
    flux1-dev.safetensors and the fine-tunes made from it)."""
    state, out = dict(state), {}
    _pairs(state, out, [("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
                        ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
                        ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
                        ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
                        ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
                        ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
                        ("context_embedder", "txt_in"), ("x_embedder", "img_in"), ("proj_out", "final_layer.linear")])
    for leaf in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{leaf}"] = swap_halves(state.pop(f"norm_out.linear.{leaf}"))
    for i in sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}):
        d, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        _fused(state, out, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"], o + "img_attn.qkv")
        _fused(state, out, [d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"], o + "txt_attn.qkv")
        _pairs(state, out, [(d + "norm1.linear", o + "img_mod.lin"), (d + "norm1_context.linear", o + "txt_mod.lin"),
                            (d + "attn.to_out.0", o + "img_attn.proj"), (d + "attn.to_add_out", o + "txt_attn.proj"),
                            (d + "ff.net.0.proj", o + "img_mlp.0"), (d + "ff.net.2", o + "img_mlp.2"),
                            (d + "ff_context.net.0.proj", o + "txt_mlp.0"), (d + "ff_context.net.2", o + "txt_mlp.2")])
        for norm, name in (("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                           ("norm_added_q", "txt_attn.norm.query_norm"), ("norm_added_k", "txt_attn.norm.key_norm")):
            out[f"{o}{name}.scale"] = state.pop(f"{d}attn.{norm}.weight")
    for i in sorted({int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}):
        d, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        _fused(state, out, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"], o + "linear1")
        _pairs(state, out, [(d + "norm.linear", o + "modulation.lin"), (d + "proj_out", o + "linear2")])
        out[f"{o}norm.query_norm.scale"] = state.pop(f"{d}attn.norm_q.weight")
        out[f"{o}norm.key_norm.scale"] = state.pop(f"{d}attn.norm_k.weight")
    _done(state, "FLUX transformer")
    return {prefix + k: v for k, v in out.items()}
