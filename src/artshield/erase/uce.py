"""UCE-style closed-form erasure (after Gandikota, Orgad, Belinkov, Materzynska, Bau; WACV 2024).

Cross-attention reads the prompt only through its key and value projections W (to_k, to_v of every
attn2). For each W the edit solves, in closed form,

    min_W  sum_i |W e_i - W0 g_i|^2  +  sum_j |W r_j - W0 r_j|^2  +  lam |W - W0|_F^2
    =>  W = (lam W0 + sum_i W0 g_i e_i^T + sum_j W0 r_j r_j^T) (lam I + sum_i e_i e_i^T + sum_j r_j r_j^T)^-1

where e_i are token embeddings of prompts that carry the concept, g_i the embeddings the model
should read instead (the guide prompt's), and r_j embeddings of prompts to preserve. lam = 0.5 is
the paper's default; erase and preserve terms can be weighted (erase_scale, preserve_scale).

Which token embeddings: the text encoder is causal, so every position from the concept's last
token to the end of the sequence (padding included) has seen the concept; those positions of the
erase prompt are paired with the same positions, counted from the guide's last token, of the guide
prompt. The concept's earlier tokens are left alone, as in the authors' code (train_erase.py
edits the positions from the final token on). Preserved prompts contribute every position, with
the authors' weight preserve_scale 0.1. No training, no sampling: one linear solve per projection, seconds on
SD 1.5 and well under a second on mini.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..models import ModelBundle
from ..models.weights import Edit, base_fields
from ..options import POSITIVE, Limit
from .base import EraseConfig, Eraser, check_concepts, config_dict, preserve_prompts, register, select_parameters


@dataclass
class UCEConfig(EraseConfig):
    guide: str = ""                  # what the concept should read as; "" = the unconditional prompt
    preserve: list[str] | None = None   # None: the model's own styles (its styles convention), if any
    lam: float = 0.5
    erase_scale: float = 1.0
    preserve_scale: float = 0.1      # the authors' default (train_erase.py)

    limits = {**EraseConfig.limits, "lam": POSITIVE, "erase_scale": POSITIVE, "preserve_scale": Limit(0)}


def _last_token(bundle: ModelBundle, prompt: str) -> int:
    """Index of the prompt's last word token (0 = BOS when the prompt is empty)."""
    ids = bundle.tokenizer(prompt, truncation=True, max_length=bundle.tokenizer.model_max_length).input_ids
    return len(ids) - 2       # ids = [BOS, words..., EOS]


def paired_embeddings(bundle: ModelBundle, prompt: str, guide: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(e, g): token embeddings of `prompt` and what each should be read as, from `guide`."""
    with torch.no_grad():
        emb = bundle.token_states(bundle.embed([prompt, guide], encode_empty=True)).float()
    e, g = emb[0], emb[1]
    length = e.shape[0]
    p_last, g_last = _last_token(bundle, prompt), _last_token(bundle, guide)
    tail = length - max(p_last, g_last)         # positions from the last tokens on, paired one to one
    return e[p_last:p_last + tail], g[g_last:g_last + tail]


def preserved_embeddings(bundle: ModelBundle, prompts: list[str]) -> torch.Tensor:
    if not prompts:
        return torch.zeros(0, bundle.unet.config.cross_attention_dim)
    with torch.no_grad():
        return bundle.token_states(bundle.embed(prompts, encode_empty=True)).float().flatten(0, 1)


def closed_form(w0: torch.Tensor, erase_in: torch.Tensor, erase_out_in: torch.Tensor, keep: torch.Tensor,
                lam: float, erase_scale: float = 1.0, preserve_scale: float = 1.0) -> torch.Tensor:
    """The minimiser above. w0: (out, in); erase_in, erase_out_in (the guide embeddings), keep: (n, in)."""
    w0 = w0.double()
    e, g, r = erase_in.double(), erase_out_in.double(), keep.double()
    eye = torch.eye(w0.shape[1], dtype=torch.float64, device=w0.device)
    rhs = lam * w0 + erase_scale * (w0 @ g.T) @ e + preserve_scale * (w0 @ r.T) @ r
    gram = lam * eye + erase_scale * e.T @ e + preserve_scale * r.T @ r
    # W gram = rhs, gram symmetric positive definite: solve instead of inverting
    return torch.linalg.solve(gram, rhs.T).T


@register("uce")
class UCE(Eraser):
    Config = UCEConfig

    def preserve_prompts(self, concepts: list[str]) -> list[str]:
        return preserve_prompts(self.bundle, concepts, self.config.preserve)

    def total_steps(self, n_concepts: int) -> int:
        """One solve per key and value projection of cross-attention."""
        return len(select_parameters(self.bundle.unet, "cross-attention-kv"))

    def run(self, concepts: list[str], generator=None, progress=None) -> Edit:
        """Closed form: no random draw, so `generator` is not used."""
        check_concepts(concepts)
        cfg, bundle = self.config, self.bundle
        start = time.time()
        # each prompt that carries a concept, with the same sentence around the guide instead
        sentences = [(t.format(c), t.format(cfg.guide).strip(" ,")) for c in concepts
                     for t in ["{}"] + self.templates()]
        sentences = list(dict.fromkeys(sentences))
        prompts, guides = [p for p, _ in sentences], [q for _, q in sentences]
        pairs = [paired_embeddings(bundle, p, q) for p, q in zip(prompts, guides)]
        e = torch.cat([a for a, _ in pairs]).to(bundle.device)
        g = torch.cat([b for _, b in pairs]).to(bundle.device)
        keep_prompts = self.preserve_prompts(concepts)
        r = preserved_embeddings(bundle, keep_prompts).to(bundle.device)

        names = select_parameters(bundle.unet, "cross-attention-kv")
        params = dict(bundle.unet.named_parameters())
        tensors = {}
        for n in names:
            w0 = params[n].detach().float()
            tensors[n] = closed_form(w0, e, g, r, cfg.lam, cfg.erase_scale, cfg.preserve_scale).float().cpu()
            if progress is not None:
                progress(1)
        info = {"method": self.name, "concepts": list(concepts), "prompts": prompts, "guides": guides,
                "preserve": keep_prompts, **base_fields(bundle), "config": config_dict(cfg),
                "trained_parameters": int(sum(params[n].numel() for n in names)),
                "seconds": round(time.time() - start, 3)}
        return Edit(self.name, tensors, info)


@dataclass
class RECEConfig(UCEConfig):
    lam: float = 0.1                 # RECE's UCE step (README: lambda_1 = 0.1, and preserve_scale 0.1)
    epochs: int = 1                  # rounds of "find the embedding that brings the concept back, erase it"
    regularization: float = 1e-3     # the adversarial embedding's ridge (authors: 1e-3 for art styles)

    limits = {**UCEConfig.limits, "epochs": Limit(1, 100), "regularization": POSITIVE}


def adversarial_embedding(current: list[torch.Tensor], original: list[torch.Tensor], e: torch.Tensor,
                          regularization: float) -> torch.Tensor:
    """RECE's closed-form attack on an edited cross-attention: the embedding rows c that the edited
    projections W' read as the original projections W0 read the concept's rows e,
        c = argmin sum_l |W'_l c - W0_l e|^2 + reg |c|^2 = (sum W'^T W' + reg I)^-1 (sum W'^T W0) e
    (the "regularised to zero" form of the authors' close_form_emb_regzero)."""
    dim = e.shape[1]
    gram = regularization * torch.eye(dim, dtype=torch.float64, device=e.device)
    cross = torch.zeros(dim, dim, dtype=torch.float64, device=e.device)
    for w, w0 in zip(current, original):
        w, w0 = w.double().to(e.device), w0.double().to(e.device)
        gram += w.T @ w
        cross += w.T @ w0
    return (e.double() @ torch.linalg.solve(gram, cross).T).float()


@register("rece")
class RECE(UCE):
    """RECE (Gong, Chen, Wei, Chen, Jiang; ECCV 2024; CharlesGong12/RECE): UCE, then `epochs` rounds
    of: derive in closed form the embedding that makes the edited keys and values equal the original
    model's for the concept (an adversarial prompt embedding, what an attacker would look for),
    and erase it too, with a UCE step anchored at the current weights (every row of the adversarial
    embedding mapped to the guide's row, the preserved prompts and the empty prompt kept; the
    authors' edit_model_adversarial with technique "replace"). Authors' settings for artists:
    lambda 0.1, preserve_scale 0.1, erase_scale 1, regularization 1e-3, the epoch chosen on
    validation prompts (their art script runs 1). Seconds, closed form only."""
    Config = RECEConfig

    def total_steps(self, n_concepts: int) -> int:
        return len(select_parameters(self.bundle.unet, "cross-attention-kv")) * (1 + self.config.epochs)

    def run(self, concepts: list[str], generator=None, progress=None) -> Edit:
        check_concepts(concepts)
        cfg, bundle = self.config, self.bundle
        start = time.time()
        first = super().run(concepts, progress=progress)
        names = select_parameters(bundle.unet, "cross-attention-kv")
        params = dict(bundle.unet.named_parameters())
        original = [params[n].detach().float() for n in names]
        current = [first.tensors[n].to(bundle.device) for n in names]
        with torch.no_grad():
            e = bundle.token_states(bundle.embed(list(concepts), encode_empty=True)).float()
            guide = bundle.token_states(bundle.embed([cfg.guide] * len(concepts), encode_empty=True)).float()
        keep = preserved_embeddings(bundle, [""] + first.info["preserve"]).to(bundle.device)
        shifts = []
        for _ in range(cfg.epochs):
            adv = torch.cat([adversarial_embedding(current, original, row, cfg.regularization) for row in e])
            shifts.append(round(float((adv - e.flatten(0, 1)).norm() / e.norm()), 4))
            updated = []
            for w in current:
                updated.append(closed_form(w, adv, guide.flatten(0, 1), keep, cfg.lam, cfg.erase_scale,
                                           cfg.preserve_scale).float())
                if progress is not None:
                    progress(1)
            current = updated
        tensors = {n: w.cpu() for n, w in zip(names, current)}
        info = {**first.info, "method": self.name, "config": config_dict(cfg),
                "adversarial_embedding_shift": shifts, "seconds": round(time.time() - start, 3)}
        return Edit(self.name, tensors, info)
