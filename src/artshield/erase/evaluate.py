"""Does an erasure hold? Efficacy, specificity, fidelity and robustness, measured with the judge.

For a model whose styles and concepts the judge knows (mini and its corpus):
    target_accuracy   the judge names the erased style (concept) in generations prompted with
                      captions that ask for it; efficacy is a fall of this figure
    others_accuracy   the same, for every other training style (or a sample of other concepts),
                      averaged over them; specificity is this figure staying put
    others_domain_fid judge-feature FID of the other prompts' generations against real training
                      images; fidelity is this figure staying put
    recovery          a Concept Inversion attack (Pham et al., ICLR 2024): Textual Inversion of a
                      new word on real images of the erased style (concept), against the edited
                      model, then the target prompts with that word in the concept's place
Every figure uses the same prompts and seeds before and after.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import corpus
from ..generate import generate
from ..io import grid
from ..metrics.distribution import frechet_distance
from ..metrics.judge import Judge
from ..models import ModelBundle
from ..models.weights import Edit

TRIGGER = "sks"


@dataclass(frozen=True)
class Target:
    kind: str          # "style" or "concept"
    name: str          # the theme or the concept, as the corpus spells it

    def swap(self, caption: str, word: str) -> str:
        """The caption with this target's words replaced by `word`."""
        if self.kind == "style":
            return re.sub(rf"\b{re.escape(self.name)} style\b", f"{word} style", caption)
        return re.sub(rf"^{re.escape(self.name)} icon\b", f"{word} icon", caption)


def parse_target(concept: str) -> Target | None:
    """Which judge class an erased concept text means: "faenza style" or "faenza" -> the style;
    "trash can" -> the concept. None when the judge does not know it."""
    text = concept.strip().lower()
    bare = re.sub(r"\s+style$", "", text)
    if bare in corpus.themes(heldout=False):
        return Target("style", bare)
    text = re.sub(r"\s+icon$", "", text)
    if text in corpus.concepts():
        return Target("concept", text)
    return None


def prompt_sets(target: Target, n_target: int, per_other: int, seed: int) -> tuple[list, dict[str, list]]:
    """Training captions asking for the target, and for each other style (concept) a few of its own."""
    rng = np.random.default_rng(seed)
    train = [i for i in corpus.items(split="train") if i.concept and i.copies == 1]

    def pick(pool, n):
        return [pool[j] for j in sorted(rng.permutation(len(pool))[:n])]

    key = (lambda i: i.theme) if target.kind == "style" else (lambda i: i.concept)
    groups: dict[str, list] = {}
    for it in train:
        groups.setdefault(key(it), []).append(it)
    targets = pick(groups.pop(target.name), n_target)
    names = sorted(groups)
    if target.kind == "concept":       # 80-odd concepts: a fixed sample of them, each with a few captions
        names = [names[j] for j in sorted(rng.permutation(len(names))[:24])]
    others = {n: pick(groups[n], per_other) for n in names}
    return targets, others


def preserve_captions(target: Target, seed: int, n_target: int = 32, per_other: int = 8,
                      per_name: int = 6) -> list[str]:
    """Captions of the other styles (concepts) for UCE to keep as they are: training captions that
    the evaluation of `target` with the same seed does not use, so that specificity is measured on
    prompts the edit did not see."""
    targets, others = prompt_sets(target, n_target, per_other, seed)
    used = {i.caption for i in targets} | {i.caption for group in others.values() for i in group}
    key = (lambda i: i.theme) if target.kind == "style" else (lambda i: i.concept)
    rng = np.random.default_rng(seed + 1)
    by_name: dict[str, list[str]] = {}
    for it in corpus.items(split="train"):
        if it.concept and key(it) != target.name and it.caption not in used:
            by_name.setdefault(key(it), []).append(it.caption)
    out = []
    for name in sorted(by_name):
        pool = sorted(set(by_name[name]))
        out += [pool[j] for j in sorted(rng.permutation(len(pool))[:per_name])]
    return out


def _hits(judge: Judge, images: torch.Tensor, target: Target, wanted: list[str]) -> np.ndarray:
    styles, concepts = judge.predict(images)
    got = styles if target.kind == "style" else concepts
    return np.array([g == w for g, w in zip(got, wanted)], dtype=float)


def measure(bundle: ModelBundle, judge: Judge, target: Target, targets: list, others: dict[str, list],
            seed: int, real_features: np.ndarray, steps=None, guidance=None, prompt_of=None,
            progress=None) -> tuple[dict, torch.Tensor]:
    prompt_of = prompt_of or (lambda it: it.caption)
    label = (lambda it: it.theme) if target.kind == "style" else (lambda it: it.concept)
    flat = [it for group in others.values() for it in group]
    images = generate(bundle, [prompt_of(it) for it in targets] + [prompt_of(it) for it in flat], seed=seed,
                      steps=steps, guidance=guidance, progress=progress)
    t_img, o_img = images[:len(targets)], images[len(targets):]
    t_hits = _hits(judge, t_img, target, [label(it) for it in targets])
    if not flat:
        return {"target_accuracy": round(float(t_hits.mean()), 4)}, t_img
    o_hits = _hits(judge, o_img, target, [label(it) for it in flat])
    per_group, at = {}, 0
    for name, group in others.items():
        per_group[name] = round(float(o_hits[at:at + len(group)].mean()), 4)
        at += len(group)
    fid = frechet_distance(judge.features(o_img).numpy(), real_features)
    return {"target_accuracy": round(float(t_hits.mean()), 4),
            "others_accuracy": round(float(np.mean(list(per_group.values()))), 4),
            "others_domain_fid": round(fid, 3), "others_by_name": per_group}, t_img


def edited(bundle: ModelBundle, edit: Edit) -> ModelBundle:
    """A copy of `bundle` (sharing its VAE) with the edit applied; `bundle` stays as it was."""
    return edit.apply(bundle.copy())


def recovery_attack(bundle: ModelBundle, target: Target, steps: int, seed: int, progress=None):
    """Textual Inversion of TRIGGER on real training images of the target, on the edited model."""
    from ..mimic import mimic

    real = [i for i in corpus.items(split="train") if i.concept and i.copies == 1
            and (i.theme if target.kind == "style" else i.concept) == target.name]
    rng = np.random.default_rng(seed)
    real = [real[j] for j in sorted(rng.permutation(len(real))[:40])]
    images = list(corpus.load_images(real, max(bundle.image_size, 32)))
    adapter = mimic(bundle, images, [target.swap(i.caption, TRIGGER) for i in real], "textual-inversion",
                    steps=steps, seed=seed, trigger=TRIGGER, progress=progress)
    attacked = adapter.apply(bundle.copy(unet=False, text=True))
    return attacked, (lambda it: adapter.prompt(target.swap(it.caption, TRIGGER))), len(real)


def evaluate(base: ModelBundle, edit: Edit, target: Target, judge: Judge | None = None, seed: int = 0,
             n_target: int = 32, per_other: int = 8, recovery_steps: int = 800, steps=None, guidance=None,
             progress=None) -> tuple[dict, dict[str, torch.Tensor]]:
    """before / after / recovery figures, and the target prompts' images for each (for a grid)."""
    judge = judge or Judge.load()
    start = time.time()
    targets, others = prompt_sets(target, n_target, per_other, seed)
    real = corpus.load_images([i for i in corpus.items(split="train") if i.concept and i.copies == 1], 64)
    real_features = judge.features(real).numpy()
    common = dict(seed=seed, real_features=real_features, steps=steps, guidance=guidance, progress=progress)
    before, img_before = measure(base, judge, target, targets, others, **common)
    after_bundle = edited(base, edit)
    after, img_after = measure(after_bundle, judge, target, targets, others, **common)
    results = {"target": {"kind": target.kind, "name": target.name},
               "before": before, "after": after,
               "prompts": {"target": [i.caption for i in targets], "others_per_name": per_other,
                           "others": sorted(others)}}
    images = {"before": img_before, "after": img_after}
    if recovery_steps > 0:
        attacked, prompt_of, n_real = recovery_attack(after_bundle, target, recovery_steps, seed)
        # only the target: the attack adds a token, so every other prompt generates as "after"
        recovery, img_rec = measure(attacked, judge, target, targets, {}, prompt_of=prompt_of, **common)
        recovery["others"] = "as after: the attack learns a new token and leaves every other prompt unchanged"
        recovery["attack"] = {"method": "concept inversion (textual inversion on the edited model)",
                              "steps": recovery_steps, "real_images": n_real, "prompt_example":
                              prompt_of(targets[0])}
        results["recovery"] = recovery
        images["recovery"] = img_rec
    results["evaluation_seconds"] = round(time.time() - start, 1)
    return results, images


def judged_targets(bundle: ModelBundle, concepts: list[str]) -> dict[str, Target | None]:
    """For each concept, what the judge calls it (None where it cannot tell); {} for models the
    judge was not made for (it knows the styles and concepts of mini's corpus only)."""
    if not bundle.conventions.corpus:
        return {}
    return {c: parse_target(c) for c in concepts}


def default_preserve(targets: dict[str, Target | None], seed: int, n_target: int, per_other: int) -> list[str] | None:
    """UCE's preserved prompts when the user names none: on a corpus model, captions of the other
    styles (concepts) that the evaluation with the same seed does not use; else None (the method's
    own default)."""
    if not targets or not all(targets.values()):
        return None
    return sorted({p for t in targets.values() for p in preserve_captions(t, seed, n_target, per_other)})


def evaluate_all(base: ModelBundle, edit: Edit, targets: dict[str, Target | None], concepts: list[str],
                 seed: int = 0, n_target: int = 32, per_other: int = 8, recovery_steps: int = 800, steps=None,
                 guidance=None, progress=None) -> list[tuple[dict, torch.Tensor | None]]:
    """Every concept's evaluation record, with a grid of its target generations (8 per row: before,
    after, after the recovery attack); a record says why it was "skipped" (and the grid is None)
    where the judge cannot evaluate."""
    if not targets:
        return [({"concept": c, "skipped": "the judge knows the styles and concepts of mini's corpus only"}, None)
                for c in concepts]
    out = []
    for concept, target in targets.items():
        if target is None:
            out.append(({"concept": concept, "skipped": "not a training style or concept the judge knows"}, None))
            continue
        results, images = evaluate(base, edit, target, seed=seed, n_target=n_target, per_other=per_other,
                                   recovery_steps=recovery_steps, steps=steps, guidance=guidance,
                                   progress=progress)
        rows = [k for k in ("before", "after", "recovery") if k in images]
        out.append(({"concept": concept, **results, "grid_rows": rows},
                    grid(torch.cat([images[k][:8] for k in rows]), columns=min(8, len(images[rows[0]])))))
    return out
