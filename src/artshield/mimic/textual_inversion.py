"""Textual Inversion (Gal et al., ICLR 2023): learn one new word. A placeholder token ("<sks>") is
added to the tokenizer, its embedding initialised from a related word ("icon" on mini, "art"
otherwise) and trained; nothing else changes. diffusers' textual_inversion.py defaults: lr 5e-4
(scaled there by batch and accumulation), 3000 steps, one vector. The captions use the trigger
as a word, so "document open icon, sks style" trains "<sks>" in its place. Saved as
{"<sks>": vector}, the layout diffusers' learned_embeds.safetensors uses."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Mimic, MimicConfig, register, retag


@dataclass
class TextualInversionConfig(MimicConfig):
    steps: int = 3000
    init_word: str | None = None       # None: the model's (mini: "icon"; Stable Diffusion: "art")


def add_token(bundle, token: str) -> int:
    if token in bundle.tokenizer.get_vocab():
        raise ValueError(f"the trigger {token!r} is already a token of this model; choose another")
    bundle.tokenizer.add_tokens([token])
    bundle.text_encoder.resize_token_embeddings(len(bundle.tokenizer), mean_resizing=False)
    return bundle.tokenizer.convert_tokens_to_ids(token)


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
        # the text encoder trains in fp32 whatever the model's dtype, as in diffusers' script (it is
        # the small network; its layer norms would otherwise see fp32 embeddings with fp16 weights)
        bundle.text_encoder.float()
        self.token_id = add_token(bundle, self.token)
        init = self.config.init_word or bundle.conventions.init_word
        init_ids = bundle.tokenizer(init, add_special_tokens=False).input_ids
        embeddings = bundle.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            embeddings[self.token_id] = embeddings[init_ids].mean(0)
        self.frozen = embeddings.detach().clone()
        bundle.unet.requires_grad_(False)
        bundle.text_encoder.requires_grad_(False)
        embeddings.requires_grad_(True)
        return [embeddings]

    def after_step(self, bundle):
        # only the new token's row learns: the others are put back (AdamW's weight decay and
        # momentum would otherwise move them), as diffusers' script does
        weight = bundle.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
            keep[self.token_id] = False
            weight[keep] = self.frozen[keep]

    def state(self, bundle):
        return {self.token: bundle.text_encoder.get_input_embeddings().weight[self.token_id].detach().clone()}

    @classmethod
    def apply(cls, bundle, tensors, info):
        for token, vector in tensors.items():
            token_id = add_token(bundle, token)
            with torch.no_grad():
                bundle.text_encoder.get_input_embeddings().weight[token_id] = vector.to(bundle.dtype)

