"""Textual Inversion (Gal et al., ICLR 2023): learn one new word. A placeholder token ("<sks>") is
added to the tokenizer, its embedding initialised from a related word ("icon" on mini, "art"
otherwise) and trained; nothing else changes. diffusers' textual_inversion.py defaults: lr 5e-4
(scaled there by batch and accumulation), 3000 steps, one vector. The captions use the trigger
as a word, so "document open icon, sks style" trains "<sks>" in its place. Saved as
{"<sks>": vector}, the layout diffusers' learned_embeds.safetensors uses. On SDXL the token is
learnt in both text encoders at once and saved as {"clip_l": (1, 768), "clip_g": (1, 1280)}, the
SDXL embedding layout A1111 and ComfyUI read (diffusers: load_textual_inversion of each tensor
with its tokenizer and encoder)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Mimic, MimicConfig, register, retag


@dataclass
class TextualInversionConfig(MimicConfig):
    steps: int = 3000
    init_word: str | None = None       # None: the model's (mini: "icon"; Stable Diffusion: "art")


SDXL_KEYS = ("clip_l", "clip_g")       # the first and the second encoder, as A1111 and ComfyUI name them


def add_token(tokenizer, encoder, token: str) -> int:
    if token in tokenizer.get_vocab():
        raise ValueError(f"the trigger {token!r} is already a token of this model; choose another")
    tokenizer.add_tokens([token])
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer.convert_tokens_to_ids(token)


@register("textual-inversion")
class TextualInversion(Mimic):
    Config = TextualInversionConfig
    paper_lr = 5e-4
    trains_text = True

    @property
    def token(self) -> str:
        return f"<{self.config.trigger}>"

    def run(self, images, captions, generator=None, progress=None):
        adapter = super().run(images, [retag(c, self.config.trigger, self.token) for c in captions], generator,
                              progress)
        adapter.info["token"] = self.token
        return adapter

    def prepare(self, bundle):
        # the text encoders train in fp32 whatever the model's dtype, as in diffusers' script (they
        # are the small networks; their layer norms would otherwise see fp32 embeddings with fp16 weights)
        bundle.unet.requires_grad_(False)
        init = self.config.init_word or bundle.conventions.init_word
        self.rows, params = [], []
        for tokenizer, encoder in bundle.text_encoders():
            encoder.float().requires_grad_(False)
            token_id = add_token(tokenizer, encoder, self.token)
            init_ids = tokenizer(init, add_special_tokens=False).input_ids
            embeddings = encoder.get_input_embeddings().weight
            with torch.no_grad():
                embeddings[token_id] = embeddings[init_ids].mean(0)
            embeddings.requires_grad_(True)
            self.rows.append((encoder, token_id, embeddings.detach().clone()))
            params.append(embeddings)
        return params

    def after_step(self, bundle):
        # only the new token's row learns: the others are put back (AdamW's weight decay and
        # momentum would otherwise move them), as diffusers' script does
        for encoder, token_id, frozen in self.rows:
            weight = encoder.get_input_embeddings().weight
            with torch.no_grad():
                keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
                keep[token_id] = False
                weight[keep] = frozen[keep]

    def state(self, bundle):
        vectors = [encoder.get_input_embeddings().weight[token_id].detach().clone()
                   for encoder, token_id, _ in self.rows]
        if bundle.is_sdxl:
            return {key: v[None] for key, v in zip(SDXL_KEYS, vectors)}
        return {self.token: vectors[0]}

    @classmethod
    def apply(cls, bundle, tensors, info):
        if set(tensors) == set(SDXL_KEYS):
            if not bundle.is_sdxl:
                raise ValueError("an SDXL embedding (clip_l and clip_g) needs an SDXL model")
            pairs = [(info["token"], tensors[key].reshape(-1), tok, enc)
                     for key, (tok, enc) in zip(SDXL_KEYS, bundle.text_encoders())]
        else:
            if bundle.is_sdxl:
                raise ValueError("an SD 1.x/2.x embedding does not fit an SDXL model's two text encoders")
            pairs = [(token, vector, bundle.tokenizer, bundle.text_encoder) for token, vector in tensors.items()]
        for token, vector, tokenizer, encoder in pairs:
            token_id = add_token(tokenizer, encoder, token)
            with torch.no_grad():
                encoder.get_input_embeddings().weight[token_id] = vector.to(encoder.dtype)
