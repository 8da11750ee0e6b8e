"""Tiny random-weight models of the same diffusers/transformers classes, for fast tests.

They exercise every code path of a real Stable Diffusion checkpoint (folder layout, safetensors,
tokenizer files, scheduler config) in seconds on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .architecture import TINY, build_text_encoder, build_unet, build_vae, noise_scheduler
from .tokenizer import write_tokenizer

TINY_CAPTIONS = ["trash can icon, papirus style", "folder icon, tango style", "printer icon, oxygen style",
                 "a painting of a house", "an icon in the style of an artist"]


def make_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random-weight Stable-Diffusion-shaped diffusers folder to out_dir and return it."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    tok = write_tokenizer(TINY_CAPTIONS, out / "tokenizer", num_merges=200, max_length=TINY.max_tokens)
    build_vae(TINY).save_pretrained(out / "vae", safe_serialization=True)
    build_unet(TINY).save_pretrained(out / "unet", safe_serialization=True)
    build_text_encoder(TINY, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id).save_pretrained(
        out / "text_encoder", safe_serialization=True)
    noise_scheduler().save_pretrained(out / "scheduler")
    return out
