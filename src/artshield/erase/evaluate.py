"""Does an erasure hold? Efficacy, specificity, fidelity and robustness, measured with the judge.

For a model whose styles and concepts the judge knows (mini and its corpus):
    target_accuracy   the judge names the erased style (concept) in generations prompted with
                      captions that ask for it; efficacy is a fall of this figure
    others_accuracy   the same, for every other training style (or a sample of other concepts),
                      averaged over them; specificity is this figure staying put
    others_domain_fid judge-feature FID of the other prompts' generations against real training
                      images; fidelity is this figure staying put
    others_cross_accuracy  on the same generations, the other axis: the objects drawn as asked
                      after a style erasure, the styles after a concept erasure (the icon judge
                      only: a style judge names no objects)
    attacks           each attack of erase/attacks.py (concept inversion, Ring-A-Bell,
                      UnlearnDiffAtk) tries to bring the target back; the target accuracy of the
                      prompts it writes, prompt by prompt
    recovery          the worst case over the attacks: a target prompt counts as recovered when
                      any attack's version of it is judged the target (the union, as P4D reports
                      its two variants)
Every figure uses the same prompts and seeds before and after.

With a style judge (`--judge clip` or `csd`, metrics/judges.py), styles are read by the CSLS
prototype readout of that judge instead, and only styles (a style judge names no concepts). Before
anything is generated, the judge must pass the discrimination check on the erased style's images
against the other styles; where it cannot tell, the evaluation is skipped and says why. On mini the
styles are the corpus's; on any other model the user gives the images: `StyleSet` (the erased
style's, and one folder per other style), and the prompts are varied subjects "..., NAME style".
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

from .. import corpus
from ..names import ERASE_ATTACKS
from ..generate import generate
from ..io import grid
from ..metrics.distribution import frechet_distance
from ..metrics.judge import Judge
from ..models import ModelBundle
from ..models.weights import Edit

DEFAULT_ATTACKS = ERASE_ATTACKS      # every attack of erase/attacks.py, in the order the tables show them


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


def concept_pairs(target: Target, n: int, exclude: set[str], seed: int,
                  styles: StyleSet | None = None) -> list[tuple[str, str]]:
    """Up to n prompt pairs (with the target, without it) that are not among `exclude` (the target
    prompts): on mini, each other concept in the target style ("trash can icon, faenza style",
    "trash can icon") or the target concept in each style ("trash can icon, tango style",
    "icon, tango style"); with `styles`, its subjects with and without ", NAME style"."""
    if styles is not None:
        subjects = styles.subjects or _subjects()
        pairs = [(f"{s}, {target.name} style", s) for s in subjects]
    elif target.kind == "style":
        pairs = [(f"{c} icon, {target.name} style", f"{c} icon") for c in corpus.concepts()]
    else:
        pairs = [(f"{target.name} icon, {t} style", f"icon, {t} style") for t in corpus.themes(heldout=False)]
    pairs = [p for p in pairs if p[0] not in exclude]
    rng = np.random.default_rng(seed)
    return [pairs[j] for j in sorted(rng.permutation(len(pairs))[:n])]


@dataclass
class StyleSet:
    """The styles a style judge evaluates an erasure with on a model outside mini's corpus: images of
    the erased style (`references`), of each other style by name (`others`), and the subjects the
    prompts ask for."""
    references: torch.Tensor
    others: dict[str, torch.Tensor]
    subjects: list[str] = field(default_factory=list)

    def items(self, name: str, n: int, offset: int = 0) -> list:
        subjects = self.subjects or _subjects()
        return [SimpleNamespace(caption=f"{subjects[(offset + j) % len(subjects)]}, {name} style", theme=name,
                                concept=None) for j in range(n)]


def _subjects() -> list[str]:
    from ..bench.check import SUBJECTS

    return SUBJECTS


def prompt_sets(target: Target, n_target: int, per_other: int, seed: int,
                styles: StyleSet | None = None) -> tuple[list, dict[str, list]]:
    """Training captions asking for the target, and for each other style (concept) a few of its own
    (with `styles`: varied subjects in the target's and in each other style)."""
    if styles is not None:
        return styles.items(target.name, n_target), {n: styles.items(n, per_other, offset=7 * i)
                                                      for i, n in enumerate(sorted(styles.others))}
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
    head = {"target_accuracy": round(float(t_hits.mean()), 4), "target_hits": [int(h) for h in t_hits]}
    if not flat:
        return head, t_img
    styles, concepts = judge.predict(o_img)
    o_hits = np.array([g == label(it) for g, it in zip(styles if target.kind == "style" else concepts, flat)], float)
    # cross-domain: the other axis on the same generations (a style erasure: do the objects stay?)
    cross = [(g, it.concept if target.kind == "style" else it.theme)
             for g, it in zip(concepts if target.kind == "style" else styles, flat)]
    cross = [g == want for g, want in cross if g and want]
    per_group, at = {}, 0
    for name, group in others.items():
        per_group[name] = round(float(o_hits[at:at + len(group)].mean()), 4)
        at += len(group)
    fid = frechet_distance(judge.features(o_img).numpy(), real_features)
    return {**head,
            "others_accuracy": round(float(np.mean(list(per_group.values()))), 4),
            "others_domain_fid": round(fid, 3), "others_by_name": per_group,
            **({"others_cross_accuracy": round(float(np.mean(cross)), 4)} if cross else {})}, t_img


def edited(bundle: ModelBundle, edit: Edit) -> ModelBundle:
    """A copy of `bundle` (sharing its VAE) with the edit applied; `bundle` stays as it was."""
    return edit.apply(bundle.copy())


def real_images(bundle: ModelBundle, target: Target, styles: StyleSet | None = None):
    """n, seed -> n real images of the target (training images of mini's corpus, or
    `styles.references`) and their items, drawn with `seed`."""
    def draw(n: int, seed: int):
        rng = np.random.default_rng(seed)
        if styles is not None:
            chosen = sorted(rng.permutation(len(styles.references))[:n])
            return [styles.references[j] for j in chosen], styles.items(target.name, len(chosen))
        real = [i for i in corpus.items(split="train") if i.concept and i.copies == 1
                and (i.theme if target.kind == "style" else i.concept) == target.name]
        real = [real[j] for j in sorted(rng.permutation(len(real))[:n])]
        return list(corpus.load_images(real, max(bundle.image_size, 32))), real
    return draw


def run_attacks(base: ModelBundle, after: ModelBundle, judge: Judge, target: Target, targets: list,
                base_images: torch.Tensor, attacks, seed: int, steps=None, guidance=None, progress=None,
                styles: StyleSet | None = None, attack_options: dict | None = None,
                concept_inversion_steps: int | None = None) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """Each attack's record (with the target accuracy of the prompts it writes), the worst case over
    them (a target prompt recovered by any attack), and each attack's target images."""
    from .attacks import Context, make_attack

    label = (lambda it: it.theme) if target.kind == "style" else (lambda it: it.concept)
    exclude = {it.caption for it in targets}
    ctx = Context(base=base, erased=after, target=target, items=targets, prompt=lambda it: it.caption, seed=seed,
                  base_images=base_images, hits=lambda images, items: _hits(judge, images, target,
                                                                             [label(i) for i in items]),
                  pairs=lambda n, s: concept_pairs(target, n, exclude, s, styles),
                  real=real_images(base, target, styles), steps=steps, guidance=guidance)
    records, images, union = {}, {}, np.zeros(len(targets))
    for name in attacks:
        options = {"seed": seed, **(attack_options or {}).get(name, {})}
        if name == "concept-inversion" and concept_inversion_steps:
            options.setdefault("steps", concept_inversion_steps)
        outcome = make_attack(name, base, **options).run(ctx)
        written = dict(zip(map(id, targets), outcome.prompts))
        record, img = measure(outcome.bundle, judge, target, targets, {}, seed=seed, real_features=None,
                              steps=steps, guidance=guidance, prompt_of=lambda it: written[id(it)], progress=progress)
        union = np.maximum(union, record["target_hits"])
        records[name] = {**record, "attack": outcome.info, "prompts": outcome.prompts}
        images[name] = img
    worst = max(records, key=lambda n: records[n]["target_accuracy"])
    recovery = {"target_accuracy": round(float(union.mean()), 4), "target_hits": [int(h) for h in union],
                "attack": "worst case: a target prompt counts when any attack recovers it",
                "attacks": list(records), "strongest_single": worst,
                "others": "as after: the attacks change the target prompts (or add a token) and leave every other "
                          "prompt as it was"}
    return records, recovery, images


def evaluate(base: ModelBundle, edit: Edit, target: Target, judge: Judge | None = None, seed: int = 0,
             n_target: int = 32, per_other: int = 8, recovery_steps: int = 800, steps=None, guidance=None,
             progress=None, styles: StyleSet | None = None, attacks=DEFAULT_ATTACKS,
             attack_options: dict | None = None, also_erased=()) -> tuple[dict, dict[str, torch.Tensor]]:
    """before / after / each attack's figures and the worst case over them ("recovery"), and the
    target prompts' images for each (for a grid). `recovery_steps` 0 runs no attack; otherwise it is
    concept inversion's number of steps. `also_erased`: names of the other styles (concepts) the same
    edit erased, left out of the others' figures (the draws of the prompts stay as they were)."""
    judge = judge or Judge.load()
    start = time.time()
    targets, others = prompt_sets(target, n_target, per_other, seed, styles)
    others = {n: v for n, v in others.items() if n not in set(also_erased)}
    real = torch.cat(list(styles.others.values())) if styles is not None else \
        corpus.load_images([i for i in corpus.items(split="train") if i.concept and i.copies == 1], 64)
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
    if recovery_steps > 0 and attacks:
        records, recovery, attacked = run_attacks(
            base, after_bundle, judge, target, targets, img_before, list(attacks), seed, steps=steps,
            guidance=guidance, progress=progress, styles=styles, attack_options=attack_options,
            concept_inversion_steps=recovery_steps)
        results["attacks"] = records
        results["recovery"] = recovery
        images.update(attacked)
    results["evaluation_seconds"] = round(time.time() - start, 1)
    return results, images


def judged_targets(bundle: ModelBundle, concepts: list[str], style_judge: bool = False,
                   styles: StyleSet | None = None) -> dict[str, Target | str]:
    """For each concept, what the judge calls it, or why it cannot evaluate it (a str). The icon judge
    knows the styles and concepts of mini's corpus; a style judge (`style_judge`) knows styles, the
    corpus's on mini and, on any model, the style whose images `styles` holds."""
    out: dict[str, Target | str] = {}
    for c in concepts:
        name = re.sub(r"\s+style$", "", c.strip().lower())
        if style_judge and styles is not None:
            out[c] = Target("style", name)
        elif not bundle.conventions.corpus:
            out[c] = ("a style judge with --references and --others evaluates a style on this model; the icon judge "
                      "knows the styles and concepts of mini's corpus only")
        else:
            t = parse_target(c)
            if t is None:
                out[c] = "not a training style or concept the judge knows"
            elif style_judge and t.kind != "style":
                out[c] = "a style judge tells styles, not concepts: the icon judge evaluates a concept"
            else:
                out[c] = t
    return out


def default_preserve(targets: dict[str, Target | str], seed: int, n_target: int, per_other: int,
                     styles: StyleSet | None = None, per_name: int = 6) -> list[str] | None:
    """UCE's preserved prompts when the user names none: the other styles (concepts) in prompts that
    the evaluation with the same seed does not use (captions of the corpus, or with `styles` the other
    subjects in each other style); None when some concept cannot be evaluated (the method's own default)."""
    if not targets or not all(isinstance(t, Target) for t in targets.values()):
        return None
    if styles is not None:
        used = {i.caption for t in targets.values() for group in prompt_sets(t, n_target, per_other, seed, styles)[1]
                .values() for i in group}
        every = {n: styles.items(n, len(styles.subjects or _subjects())) for n in styles.others}
        return sorted(p for group in every.values() for p in [i.caption for i in group if i.caption not in used][:per_name])
    erased = list(targets.values())
    # several concepts at once: never keep a caption that carries one of them
    return sorted({p for t in erased for p in preserve_captions(t, seed, n_target, per_other)
                   if all(other.swap(p, "\0") == p for other in erased)})


def evaluate_all(base: ModelBundle, edit: Edit, targets: dict[str, Target | str], concepts: list[str],
                 seed: int = 0, n_target: int = 32, per_other: int = 8, recovery_steps: int = 800, steps=None,
                 guidance=None, progress=None, judge=None, styles: StyleSet | None = None,
                 attacks=DEFAULT_ATTACKS, attack_options: dict | None = None,
                 ) -> list[tuple[dict, torch.Tensor | None]]:
    """Every concept's evaluation record, with a grid of its target generations (8 per row: before,
    after, then after each attack); a record says why it was "skipped" (and the grid is None)
    where the judge cannot evaluate. `judge`: a style judge (metrics/judges.StyleJudge), read by CSLS
    prototypes of the styles, which must first pass the discrimination check (its result is in the
    record as "judge_check"); None: the icon judge."""
    out = []
    for concept in concepts:
        target = targets.get(concept, "the judge knows the styles and concepts of mini's corpus only")
        if not isinstance(target, Target):
            out.append(({"concept": concept, "skipped": target}, None))
            continue
        reader, gate = None, None
        if judge is not None:
            reader, gate = style_reader(judge, target, styles, side=max(64, base.image_size))
            if not gate["can_tell"]:
                out.append(({"concept": concept, "judge_check": gate,
                             "skipped": f"the {judge.name} judge cannot tell this style apart: {gate['why']}"}, None))
                continue
        also = [t.name for t in targets.values() if isinstance(t, Target) and t != target and t.kind == target.kind]
        results, images = evaluate(base, edit, target, judge=reader, seed=seed, n_target=n_target,
                                   per_other=per_other, recovery_steps=recovery_steps, steps=steps,
                                   guidance=guidance, progress=progress, styles=styles, attacks=attacks,
                                   attack_options=attack_options, also_erased=also)
        if also:
            results["also_erased"] = also
        if gate is not None:
            results = {**results, "judge_check": gate, "judge": judge.describe()}
        rows = list(images)
        out.append(({"concept": concept, **results, "grid_rows": rows},
                    grid(torch.cat([images[k][:8] for k in rows]), columns=min(8, len(images[rows[0]])))))
    return out


def style_reader(judge, target: Target, styles: StyleSet | None, side: int = 64):
    """A style judge's CSLS readout of the target and the other styles (the icon judge's call shape),
    and its discrimination check on the target's images against the others'."""
    from ..bench.experiment import corpus_styles
    from ..metrics.judges import Classifier, discrimination

    if styles is not None:
        mine, others = styles.references, dict(styles.others)
    else:
        every = corpus_styles(side)
        mine, others = every.pop(target.name), every
    return Classifier(judge, {target.name: mine, **others}), discrimination(judge, mine, others)
