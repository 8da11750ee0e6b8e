"""Textual Inversion (Gal et al., ICLR 2023): learn one new word. A placeholder token ("<sks>") is
added to the tokenizer, its embedding initialised from a related word ("icon" on mini, "art"
otherwise) and trained; nothing else changes. diffusers' textual_inversion.py defaults: lr 5e-4
(scaled there by batch and accumulation), 3000 steps, one vector. The captions use the trigger
as a word, so "document open icon, sks style" trains "<sks>" in its place. Saved as
{"<sks>": vector}, the layout diffusers' learned_embeds.safetensors uses. On SDXL the token is
learnt in both text encoders at once and saved as {"clip_l": (1, 768), "clip_g": (1, 1280)}, the
SDXL embedding layout A1111 and ComfyUI read (diffusers: load_textual_inversion of each tensor
with its tokenizer and encoder). On SD3 and FLUX every text encoder learns it, T5 included, saved
as {"clip_l", "clip_g", "t5"} (SD3; "t5" only where the model has T5) or {"clip_l", "t5"} (FLUX).

`num_vectors` > 1 learns several vectors for the one word, as diffusers' script's --num_vectors does:
tokens "<sks>", "<sks>_1", ... stand together where the word stood, and the file holds
{"<sks>": (n, dim)}, which diffusers' load_textual_inversion reads back as those same tokens. A prompt
names such an embedding by "<sks>" alone, as with diffusers: the tokens are written out when it is encoded."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import Limit
from .base import Mimic, MimicConfig, register, retag


@dataclass
class TextualInversionConfig(MimicConfig):
    steps: int = 3000
    init_word: str | None = None       # None: the model's (mini: "icon"; Stable Diffusion: "art")
    num_vectors: int = 1               # vectors learnt for the word (diffusers' --num_vectors)
    limits = {**MimicConfig.limits, "num_vectors": Limit(1, 64)}


def token_names(token: str, n: int) -> list[str]:
    """The tokens of an n-vector embedding, as diffusers names them: token, token_1, ..., token_{n-1}."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


SDXL_KEYS = ("clip_l", "clip_g")       # the first and the second encoder, as A1111 and ComfyUI name them
# SD3 and FLUX: every text encoder learns the token (T5 too, as diffusers' advanced FLUX script's
# pivotal tuning can), saved under the names that script gives its embeddings' file
FLOW_KEYS = {"sd3": ("clip_l", "clip_g", "t5"), "flux": ("clip_l", "t5")}


def layout(bundle) -> tuple[str, ...] | None:
    """The keys of an embedding file for this model's encoders (None: SD 1.x/2.x's {token: vector})."""
    if bundle.is_sdxl:
        return SDXL_KEYS
    if bundle.is_flow:
        return FLOW_KEYS[bundle.family][:len(bundle.text_encoders())]
    return None


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

    @property
    def tokens(self) -> list[str]:
        return token_names(self.token, self.config.num_vectors)

    def run(self, images, captions, generator=None, progress=None):
        # the captions name the embedding by its first token; the bundle's tokenizer writes out the
        # others (ModelBundle.tokenize), as diffusers' pipelines do with a loaded embedding
        adapter = super().run(images, [retag(c, self.config.trigger, self.token) for c in captions], generator,
                              progress)
        adapter.info["token"] = self.token
        adapter.info["tokens"] = self.tokens
        return adapter

    def prepare(self, bundle):
        # the text encoders train in fp32 whatever the model's dtype, as in diffusers' script (they
        # are the small networks; their layer norms would otherwise see fp32 embeddings with fp16 weights)
        bundle.unet.requires_grad_(False)
        init = self.config.init_word or bundle.conventions.init_word
        self.rows, params = [], []
        for tokenizer, encoder in bundle.text_encoders():
            encoder.float().requires_grad_(False)
            token_ids = [add_token(tokenizer, encoder, t) for t in self.tokens]
            init_ids = tokenizer(init, add_special_tokens=False).input_ids
            embeddings = encoder.get_input_embeddings().weight
            with torch.no_grad():
                embeddings[token_ids] = embeddings[init_ids].mean(0)
            embeddings.requires_grad_(True)
            self.rows.append((encoder, token_ids, embeddings.detach().clone()))
            params.append(embeddings)
        return params

    def after_step(self, bundle):
        # only the new token's row learns: the others are put back (AdamW's weight decay and
        # momentum would otherwise move them), as diffusers' script does
        for encoder, token_ids, frozen in self.rows:
            weight = encoder.get_input_embeddings().weight
            with torch.no_grad():
                keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
                keep[token_ids] = False
                weight[keep] = frozen[keep]

    def state(self, bundle):
        # (n, dim) per encoder; one vector is saved as (dim,) for SD 1.x/2.x, the layout of earlier files
        vectors = [encoder.get_input_embeddings().weight[token_ids].detach().clone()
                   for encoder, token_ids, _ in self.rows]
        keys = layout(bundle)
        if keys is not None:
            return dict(zip(keys, vectors))
        return {self.token: vectors[0][0] if len(vectors[0]) == 1 else vectors[0]}

    @classmethod
    def apply(cls, bundle, tensors, info):
        keys = layout(bundle)
        if keys is not None or "clip_l" in tensors:
            if keys is None or set(tensors) != set(keys):
                have = ", ".join(sorted(tensors)) if "clip_l" in tensors else "one CLIP encoder, SD 1.x/2.x"
                want = ", ".join(keys) if keys else "one CLIP encoder"
                raise ValueError(f"an embedding for the text encoders ({have}) does not fit this model's ({want})")
            pairs = [(info["token"], tensors[key], tok, enc) for key, (tok, enc) in zip(keys, bundle.text_encoders())]
        else:
            pairs = [(token, vector, bundle.tokenizer, bundle.text_encoder) for token, vector in tensors.items()]
        for token, vectors, tokenizer, encoder in pairs:
            vectors = vectors.reshape(-1, vectors.shape[-1])         # (dim,) or (n, dim) -> (n, dim)
            token_ids = [add_token(tokenizer, encoder, t) for t in token_names(token, len(vectors))]
            with torch.no_grad():
                encoder.get_input_embeddings().weight[token_ids] = vectors.to(encoder.dtype)
