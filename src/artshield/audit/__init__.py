"""audit: find the training images a model has memorised.

    results, flagged = audit(bundle, prompts, truth=labels, training=images)

Two methods, run on the same prompts:
    extract  the generate-and-filter attack (Carlini et al. 2023): N generations per prompt, the
             tiled-L2 clique rule, flagged generations matched to the training images
    detect   Wen et al. (2024): the magnitude of the text-conditional noise prediction over the
             first sampling step(s), a score per prompt without sampling images
With ground truth (a label per prompt: memorised or not) the results carry `extraction`
{precision, recall} and `detection` {auc}. `corpus_prompts` builds such a set on mini: the captions
of the corpus's planted duplicates mixed with as many ordinary training captions.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..models import ModelBundle
from .detect import auc, membership_loss, text_conditional_magnitude
from .distance import pairwise_tiled_l2, tiled_l2
from .extract import ExtractConfig, extraction_attack, largest_clique, precision_recall

METHODS = ("extract", "detect")
__all__ = ["METHODS", "ExtractConfig", "audit", "auc", "corpus_prompts", "extraction_attack", "largest_clique",
           "membership_loss", "pairwise_tiled_l2", "precision_recall", "text_conditional_magnitude", "tiled_l2"]


def corpus_prompts(seed: int = 0, control: str = "novel") -> tuple[list[str], list[bool]]:
    """mini's audit set: every planted-duplicate caption (memorised: True) and as many control
    captions (False), drawn with `seed`, the two kinds interleaved.

    control="novel": captions of a training style and a corpus concept that no training image
    has, so nothing can have been memorised for them (the kind of negatives Wen et al. use).
    control="training": ordinary training captions, each of one image seen once per epoch; a
    model trained long on few images memorises some of those too, and the audit shows which.
    """
    from .. import corpus

    train = corpus.items(split="train")
    planted = sorted(i.caption for i in train if i.copies > 1)
    rng = np.random.default_rng(seed)
    if control == "training":
        pool = sorted(i.caption for i in train if i.copies == 1)
    elif control == "novel":
        seen = {(i.concept, i.theme) for i in train}
        template = corpus.items(split="train")[0].caption       # "<concept> icon, <theme> style"
        if not template.endswith(" style") or " icon, " not in template:
            raise ValueError("novel control captions need captions of the form '<concept> icon, <theme> style'")
        pool = sorted(f"{c} icon, {t} style" for t in corpus.themes(heldout=False) for c in corpus.concepts()
                      if (c, t) not in seen)
    else:
        raise ValueError(f"control must be 'novel' or 'training', not {control!r}")
    chosen = [pool[j] for j in sorted(rng.permutation(len(pool))[:len(planted)])]
    pairs = [(p, True) for p in planted] + [(p, False) for p in chosen]
    order = np.random.default_rng(seed + 1).permutation(len(pairs))
    return [pairs[j][0] for j in order], [pairs[j][1] for j in order]


def audit(bundle: ModelBundle, prompts: list[str], truth: list[bool] | None = None,
          training: torch.Tensor | None = None, methods=METHODS, extract: ExtractConfig | None = None,
          detect_generations: int = 4, detect_steps: int = 1, steps: int | None = None,
          guidance: float | None = None, progress=None) -> tuple[dict, dict[int, torch.Tensor]]:
    if not prompts:
        raise ValueError("the audit needs at least one prompt")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown audit method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if truth is not None and len(truth) != len(prompts):
        raise ValueError("one ground-truth label per prompt")
    per_prompt = [{"prompt": p} if truth is None else {"prompt": p, "memorised": bool(t)}
                  for p, t in zip(prompts, truth or [None] * len(prompts))]
    results: dict = {"prompts": len(prompts)}
    flagged: dict[int, torch.Tensor] = {}
    if "detect" in methods:
        t0 = time.time()
        scores = text_conditional_magnitude(bundle, prompts, generations=detect_generations, steps=detect_steps,
                                            sampling_steps=steps, guidance=guidance, progress=progress)
        seconds = time.time() - t0
        for rec, s in zip(per_prompt, scores):
            rec["magnitude"] = round(float(s), 5)
        results["detection"] = {"method": "text-conditional noise magnitude (Wen et al. 2024)",
                                "generations": detect_generations, "steps": detect_steps,
                                "seconds_per_prompt": round(seconds / len(prompts), 4)}
        if truth is not None and 0 < sum(truth) < len(truth):
            results["detection"]["auc"] = round(auc(scores, truth), 4)
    if "extract" in methods:
        cfg = extract or ExtractConfig()
        t0 = time.time()
        records, flagged = extraction_attack(bundle, prompts, cfg, training=training, steps=steps,
                                             guidance=guidance, progress=progress)
        seconds = time.time() - t0
        for rec, r in zip(per_prompt, records):
            rec.update({k: v for k, v in r.items() if k != "prompt"})
        filter_cpu = [r["filter_cpu_seconds"] for r in records]
        results["extraction"] = {"method": "generate-and-filter (Carlini et al. 2023)",
                                 "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                                 "seconds_per_prompt": round(seconds / len(prompts), 3),
                                 "filter_cpu_seconds_per_prompt": round(float(np.mean(filter_cpu)), 4)}
        if truth is not None:
            # a flag counts as an extraction once a training image lies within delta of it
            # (when the training images are known); else every flag counts
            decided = [r.get("extracted", r["flagged"]) for r in records]
            results["extraction"].update(precision_recall(decided, truth))
            results["extraction"]["basis"] = "flagged and matched to a training image" if training is not None \
                else "flagged by the clique rule"
            if training is not None:
                results["extraction"]["clique_rule_only"] = precision_recall([r["flagged"] for r in records], truth)
    results["per_prompt"] = per_prompt
    return results, flagged
