"""audit: find the training images a model has memorised.

    result = audit(bundle, prompts, truth=labels, training=images)
    result.to_dict(), result.flagged

Three methods (registered in AUDITS, the same call shape as every other family), run on the same
prompts:
    extract  the generate-and-filter attack (Carlini et al. 2023): N generations per prompt, the
             tiled-L2 clique rule, flagged generations matched to the training images
    detect   Wen et al. (2024): the magnitude of the text-conditional noise prediction over the
             first sampling step(s), a score per prompt without sampling images
    anisotropy  Asthana and Belagiannis (2026): that magnitude from pure noise plus the alignment of
             the unconditional prediction with the guidance direction at a low-noise timestep
With ground truth (a label per prompt: memorised or not) the results carry `extraction`
{precision, recall} and `detection` {auc}. `corpus_prompts` builds such a set on mini: the captions
of the corpus's planted duplicates mixed with as many ordinary training captions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ArtshieldError
from ..models import ModelBundle
from .base import AUDITS
from .detect import (Anisotropy, AnisotropyConfig, Consensus, ConsensusConfig, Detect, DetectConfig, auc,
                     membership_loss, text_conditional_magnitude, tpr_at_fpr)
from .distance import pairwise_tiled_l2, tiled_l2
from .extract import Extract, ExtractConfig, calibrate, extraction_attack, largest_clique, precision_recall

__all__ = ["AUDITS", "Anisotropy", "AnisotropyConfig", "AuditResult", "AuditSet", "Consensus", "ConsensusConfig", "Detect", "DetectConfig", "Extract",
           "ExtractConfig", "audit", "auc",
           "calibrate", "corpus_audit_set", "corpus_prompts", "extraction_attack", "largest_clique", "membership",
           "membership_loss", "pairwise_tiled_l2", "precision_recall", "text_conditional_magnitude", "tiled_l2",
           "tpr_at_fpr"]


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


@dataclass
class AuditSet:
    """Prompts, with ground truth and the training images to match flagged generations against where
    they are known (mini's built-in set), and where the prompts came from."""

    prompts: list[str]
    truth: list[bool] | None = None
    source: str = ""
    training: torch.Tensor | None = None
    training_names: list[str] | None = None


def corpus_audit_set(bundle: ModelBundle, seed: int = 0, control: str = "novel") -> AuditSet:
    """mini's built-in audit: corpus_prompts, and the training images at the model's size."""
    from .. import corpus

    prompts, truth = corpus_prompts(seed, control)
    items = corpus.items(split="train")
    kind = "captions no training image has" if control == "novel" else "ordinary training captions"
    return AuditSet(prompts, truth, f"mini's corpus: its {sum(truth)} planted-duplicate captions and as many {kind}",
                    corpus.load_images(items, bundle.image_size), [i.file for i in items])


def membership(bundle: ModelBundle, folder) -> tuple[dict, list[dict]]:
    """Loss-based membership scores of the images of `folder` (captions from NAME.txt beside them),
    and the files that could not be read."""
    from ..io import read_captioned_folder
    from ..models.views import model_views

    found = read_captioned_folder(folder)
    if not found.images:
        raise ArtshieldError("no readable images", param="candidates", value=str(folder))
    captions = [c or "" for c in found.captions]
    scores = membership_loss(bundle, model_views(found.images, bundle.image_size), captions)
    return {"method": "minus the denoising loss at fixed draws (higher: more likely a training member)",
            "images": [{"file": str(f), "caption": c, "score": round(float(s), 6)}
                       for f, c, s in zip(found.files, captions, scores)]}, found.failures


@dataclass
class AuditResult:
    """What an audit found: one record per prompt (its scores, clique, match), the summary of each
    method that ran, and the representative generation of every flagged prompt (by index)."""

    per_prompt: list[dict]
    detection: dict | None = None
    extraction: dict | None = None
    anisotropy: dict | None = None
    consensus: dict | None = None
    flagged: dict[int, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out: dict = {"prompts": len(self.per_prompt)}
        if self.detection is not None:
            out["detection"] = self.detection
        if self.extraction is not None:
            out["extraction"] = self.extraction
        if self.anisotropy is not None:
            out["anisotropy"] = self.anisotropy
        if self.consensus is not None:
            out["consensus"] = self.consensus
        out["per_prompt"] = self.per_prompt
        return out


def _score(method, prompts: list[str], records: list[dict], key: str, digits: int, progress) -> tuple[np.ndarray, float]:
    """A detector's scores of `prompts` (each also written into its record under `key`) and the seconds taken."""
    t0 = time.time()
    scores = method.run(prompts, progress=progress)
    seconds = time.time() - t0
    for rec, score in zip(records, scores):
        rec[key] = round(float(score), digits)
    return scores, seconds


def _labelled(truth) -> bool:
    return truth is not None and 0 < sum(truth) < len(truth)


def _separation(scores, truth, prefix: str = "") -> dict:
    """How well `scores` separate memorised prompts from the others: AUC and TPR at 1 % FPR, with
    their 95 % intervals (keys named with `prefix`)."""
    low = tpr_at_fpr(scores, truth, 0.01)
    return {f"{prefix}auc": low["auc"], f"{prefix}auc_interval": low["auc_interval"],
            f"{prefix}tpr_at_1pct_fpr": low["tpr"], f"{prefix}tpr_at_1pct_fpr_interval": low["tpr_interval"]}


def audit(bundle: ModelBundle, prompts: list[str], truth: list[bool] | None = None,
          training=None, methods=("extract", "detect"), extract: ExtractConfig | None = None,
          detect: DetectConfig | None = None, anisotropy: AnisotropyConfig | None = None,
          consensus: ConsensusConfig | None = None, progress=None) -> AuditResult:
    """Run the audit `methods` on `prompts`. With `truth` (one label per prompt: memorised or not),
    the summaries carry precision/recall and AUC; with `training` (the training images at the
    generations' size: a tensor, or a list of PIL images or arrays), flagged generations are matched to their nearest training image."""
    if not prompts:
        raise ValueError("the audit needs at least one prompt")
    if training is not None and not isinstance(training, torch.Tensor):   # PIL images or arrays
        from ..images import as_tensors

        training = torch.stack([t.expand(3, -1, -1) for t in as_tensors(training)[0]])
    unknown = sorted(set(methods) - set(AUDITS))
    if unknown:
        raise ValueError(f"unknown audit method(s) {', '.join(unknown)}; known: {', '.join(AUDITS)}")
    if truth is not None and len(truth) != len(prompts):
        raise ValueError("one ground-truth label per prompt")
    result = AuditResult([{"prompt": p} if truth is None else {"prompt": p, "memorised": bool(t)}
                          for p, t in zip(prompts, truth or [None] * len(prompts))])
    if "detect" in methods:
        method = Detect(bundle, detect)
        scores, seconds = _score(method, prompts, result.per_prompt, "magnitude", 5, progress)
        result.detection = {"method": "text-conditional noise magnitude (Wen et al. 2024)",
                            "generations": method.config.generations, "steps": method.config.steps,
                            "seconds_per_prompt": round(seconds / len(prompts), 4)}
        if _labelled(truth):
            result.detection.update({**_separation(scores, truth), "negatives": int(len(truth) - sum(truth))})
    if "anisotropy" in methods:
        method = Anisotropy(bundle, anisotropy)
        t0 = time.time()
        parts = method.parts(prompts, progress=progress)
        seconds = time.time() - t0
        for k, rec in enumerate(result.per_prompt):
            rec.update({"anisotropy": round(float(parts["score"][k]), 5),
                        "anisotropy_norm": round(float(parts["norm"][k]), 5),
                        "anisotropy_cosine": round(float(parts["cosine"][k]), 5)})
        cfg = method.config
        result.anisotropy = {"method": "norm plus angular alignment from pure noise (Asthana and Belagiannis 2026)",
                             "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                             "seconds_per_prompt": round(seconds / len(prompts), 4)}
        if _labelled(truth):
            for key, part in (("", "score"), ("norm_", "norm"), ("cosine_", "cosine")):
                result.anisotropy.update(_separation(parts[part], truth, key))
    if "consensus" in methods:
        method = Consensus(bundle, consensus)
        scores, seconds = _score(method, prompts, result.per_prompt, "consensus", 6, progress)
        cfg = method.config
        result.consensus = {"method": "seed consensus of the predicted image", "step": method.step(),
                            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                            "seconds_per_prompt": round(seconds / len(prompts), 4)}
        if _labelled(truth):
            result.consensus.update(_separation(scores, truth))
    if "extract" in methods:
        method = Extract(bundle, (extract or ExtractConfig()).calibrated(training))
        t0 = time.time()
        records, result.flagged = method.run(prompts, progress=progress, training=training)
        seconds = time.time() - t0
        for rec, r in zip(result.per_prompt, records):
            rec.update({k: v for k, v in r.items() if k != "prompt"})
        cfg = method.config
        result.extraction = {"method": "generate-and-filter (Carlini et al. 2023)",
                             "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                             "seconds_per_prompt": round(seconds / len(prompts), 3),
                             "filter_cpu_seconds_per_prompt": round(float(np.mean(
                                 [r["filter_cpu_seconds"] for r in records])), 4)}
        if truth is not None:
            # a flag counts as an extraction once a training image lies within delta of it
            # (when the training images are known); else every flag counts
            decided = [r.get("extracted", r["flagged"]) for r in records]
            result.extraction.update(precision_recall(decided, truth))
            result.extraction["basis"] = ("flagged and matched to a training image" if training is not None
                                          else "flagged by the clique rule")
            if training is not None:
                result.extraction["clique_rule_only"] = precision_recall([r["flagged"] for r in records], truth)
                result.extraction["near_copy_rule"] = precision_recall([r["near_copy"] for r in records], truth)
    return result
