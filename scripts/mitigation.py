"""Does Wen et al.'s inference-time mitigation stop mini from emitting its memorised images, and what
does it cost on ordinary captions? (the audit issue's mitigation table)

    python scripts/mitigation.py -o docs/results/audit-mitigation          # about 40 min on 2 CPUs

1. Targets, on a tuning split: captions no training image has ("novel": a training style and a corpus
   concept never drawn together), none of them among the audit's controls, each on 4 starting noises
   no scored image uses. A target is a quantile of their first-step magnitudes: the median (a
   memorised prompt pulled down to what a typical non-memorised one has) and the 10 % quantile (a
   stronger pull). Fixed before anything is scored; the authors' own rule (3 on SD 1.4, rescaled) is
   recorded beside them.
2. Extraction, before and after: the audit's generate-and-filter attack (32 generations per caption,
   both deltas calibrated on the training images, as `artshield audit --generations 32 --threshold
   auto`) on every planted-duplicate caption, with the same seeds, without and with the mitigation at
   each target. Which target to use is then chosen on half the planted captions (the weakest pull,
   i.e. highest target, that leaves none of them extracted, else the strongest) and counted on the
   other half, both ways round (halves drawn with seed 0). The extraction delta is strict (the 5 %
   quantile of the training icons' nearest-neighbour distances), so a copy made slightly noisier
   passes under it; each caption is therefore also counted as a near copy: flagged (its generations
   agree) and its representative closer to its nearest training image than that image is to any
   distinct other training image (audit.extract.near_copy). And a grid of the first captions'
   images (seeds 0 to 3, each condition) is saved beside the results, to see what the counts mean.
3. Cost on ordinary captions: model-quality's generation set (16 training captions per training
   theme, seed 0), without and with the mitigation at each target, same seeds: the judge's style and
   concept accuracy and the judge-feature FID against the training themes' real images. Differences
   (mitigated minus plain) with paired bootstrap intervals over the (caption, seed) rows, at
   1 - 0.05 / 3 each (Bonferroni over the three figures).
Each stage is saved as it completes (OUT/parts/), so a stopped run resumes.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from artshield import corpus  # noqa: E402
from artshield.audit import corpus_prompts  # noqa: E402
from artshield.audit.extract import ExtractConfig, calibrate, extraction_attack, isolation, near_copy  # noqa: E402
from artshield.audit.mitigate import MitigateConfig, default_target, magnitude, starting_noise  # noqa: E402
from artshield.bench.model_quality import generation_prompts  # noqa: E402
from artshield.generate import generate  # noqa: E402
from artshield.metrics.judge import Judge  # noqa: E402
from artshield.models import load_model  # noqa: E402

TUNING_CAPTIONS = 48
TUNING_SEEDS = [10_000 + k for k in range(4)]   # starting noises no scored image uses (those start at seed 0)
QUANTILES = (0.5, 0.1)
GENERATIONS = 32
PER_THEME = 16
RESAMPLES = 2000
EVIDENCE_CAPTIONS = 12
LEVEL = 1 - 0.05 / 3


def tuning_captions() -> list[str]:
    """Novel captions (training style, corpus concept, never drawn together), none of the audit's."""
    audit, _ = corpus_prompts(0, "novel")
    seen = {(i.concept, i.theme) for i in corpus.items(split="train")}
    pool = sorted(f"{c} icon, {t} style" for t in corpus.themes(heldout=False) for c in corpus.concepts()
                  if (c, t) not in seen and f"{c} icon, {t} style" not in set(audit))
    rng = np.random.default_rng(1)
    return [pool[j] for j in sorted(rng.permutation(len(pool))[:TUNING_CAPTIONS])]


@torch.no_grad()
def tuning_magnitudes(bundle, captions: list[str]) -> np.ndarray:
    sampler = bundle.sampler()
    sampler.set_timesteps(bundle.conventions.steps, device=bundle.device)
    uncond = bundle.embed([""])
    out = []
    for seed in TUNING_SEEDS:
        noise = starting_noise(bundle, [seed] * len(captions)).float() * sampler.init_noise_sigma
        out.append(magnitude(bundle, sampler, noise, bundle.embed(captions), uncond).cpu().numpy())
    return np.stack(out, 1)                              # (captions, seeds)


def saved(parts: Path, name: str, make):
    path = parts / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    start = time.time()
    value = make()
    value["seconds"] = round(time.time() - start, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)
    print(f"{name}: done in {value['seconds']} s", file=sys.stderr, flush=True)
    return value


def extraction(bundle, planted: list[str], training: torch.Tensor, config: ExtractConfig, mitigate) -> dict:
    records, _ = extraction_attack(bundle, planted, config, training=training, mitigate=mitigate)
    return {"records": records, "extracted": sum(r["extracted"] for r in records),
            "flagged": sum(r["flagged"] for r in records), "captions": len(records)}


def evidence_grid(bundle, captions: list[str], conditions: dict, path: Path, seeds: int = 4) -> None:
    """One row per caption, `seeds` images per condition side by side (a 4-pixel white gap between
    conditions), written as a PNG at the images' own size."""
    from PIL import Image

    rows = []
    for caption in captions:
        blocks = []
        for mitigate in conditions.values():
            images = generate(bundle, [caption] * seeds, seed=0, mitigate=mitigate)
            blocks += [torch.cat(list(images), 2), torch.ones(3, images.shape[2], 4)]
        rows.append(torch.cat(blocks[:-1], 2))
    grid = (torch.cat(rows, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid).save(tmp, optimize=True)
    tmp.replace(path)


def judged(bundle, judge: Judge, items, mitigate) -> dict:
    adjusted: list[dict] = []
    images = generate(bundle, [i.caption for i in items], seed=0, mitigate=mitigate, records=adjusted)
    styles, concepts = judge.predict(images)
    return {"style_hits": [bool(p == i.theme) for p, i in zip(styles, items)],
            "concept_hits": [bool(p == i.concept) for p, i in zip(concepts, items)],
            "features": judge.features(images).numpy().tolist(), "adjusted": adjusted}


def bootstrap_differences(plain: dict, mitigated: dict, reference: np.ndarray) -> dict:
    """Mitigated minus plain for style and concept accuracy and FID, each with a paired bootstrap
    interval over rows (the same caption and seed in both conditions)."""
    rng = np.random.default_rng(0)
    a_f, b_f = np.array(plain["features"]), np.array(mitigated["features"])
    figures = {
        "style_accuracy": (np.array(plain["style_hits"], float), np.array(mitigated["style_hits"], float)),
        "concept_accuracy": (np.array(plain["concept_hits"], float), np.array(mitigated["concept_hits"], float)),
    }
    n = len(a_f)
    out = {}
    for name, (a, b) in figures.items():
        draws = [b[idx].mean() - a[idx].mean() for idx in (rng.integers(0, n, n) for _ in range(RESAMPLES))]
        out[name] = {"plain": round(a.mean(), 4), "mitigated": round(b.mean(), 4),
                     "difference": round(b.mean() - a.mean(), 4), "interval": interval(draws)}
    fid = against(reference)
    fid_a, fid_b = fid(a_f), fid(b_f)
    draws = []
    for _ in range(RESAMPLES // 4):                      # FID is costlier: 500 resamples
        idx = rng.integers(0, n, n)
        draws.append(fid(b_f[idx]) - fid(a_f[idx]))
    out["domain_fid"] = {"plain": round(fid_a, 3), "mitigated": round(fid_b, 3),
                         "difference": round(fid_b - fid_a, 3), "interval": interval(draws)}
    for v in out.values():
        low, high = v["interval"]
        v["verdict"] = "no change shown" if low <= 0 <= high else ("higher" if low > 0 else "lower")
    return out


def against(reference: np.ndarray):
    """FID against a fixed reference set, fast enough to bootstrap: with R = S_ref^(1/2) computed
    once, Tr((S S_ref)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric
    R S R, so each call needs one symmetric eigendecomposition instead of a general matrix square
    root. Equals metrics.distribution.frechet_distance (checked on the plain generations)."""
    from scipy import linalg

    ref = np.asarray(reference, np.float64)
    mu_r, s_r = ref.mean(0), np.cov(ref, rowvar=False)
    root = linalg.sqrtm(s_r).real
    root = (root + root.T) / 2

    def fid(x: np.ndarray) -> float:
        x = np.asarray(x, np.float64)
        s = np.cov(x, rowvar=False)
        eig = np.clip(np.linalg.eigvalsh(root @ s @ root), 0, None)
        return float(((x.mean(0) - mu_r) ** 2).sum() + np.trace(s) + np.trace(s_r) - 2 * np.sqrt(eig).sum())
    return fid


def interval(draws) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    return [round(float(np.percentile(draws, tail)), 4), round(float(np.percentile(draws, 100 - tail)), 4)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    out = Path(args.output)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    bundle = load_model("mini")

    tuning = saved(parts, "tuning", lambda: (lambda caps: {"captions": caps, "seeds": TUNING_SEEDS,
                                                           "magnitudes": tuning_magnitudes(bundle, caps).tolist()})(
        tuning_captions()))
    values = np.array(tuning["magnitudes"]).ravel()
    targets = {q: float(np.quantile(values, q)) for q in QUANTILES}

    prompts, truth = corpus_prompts(0, "novel")
    planted = [p for p, t in zip(prompts, truth) if t]
    train_items = corpus.items(split="train")
    training = corpus.load_images(train_items, bundle.image_size)
    tiled, plain = calibrate(training, 4)
    alone = isolation(training)
    config = ExtractConfig(generations=GENERATIONS, threshold=tiled, match_threshold=plain)
    before = saved(parts, "extraction-plain", lambda: extraction(bundle, planted, training, config, None))
    judge = Judge.load()
    items = generation_prompts(PER_THEME, 0)
    q_plain = saved(parts, "quality-plain", lambda: judged(bundle, judge, items, None))
    reference = judge.features(corpus.load_images([i for i in train_items if i.concept], 64)).numpy()
    after, quality = {}, {}
    for q, target in targets.items():
        mitigate = MitigateConfig(target=target)
        after[q] = saved(parts, f"extraction-mitigated-q{q:g}",
                         lambda: extraction(bundle, planted, training, config, mitigate))
        q_mit = saved(parts, f"quality-mitigated-q{q:g}", lambda: judged(bundle, judge, items, mitigate))
        quality[q] = {"generations_adjusted": sum(r["adjusted"] for r in q_mit["adjusted"]),
                      "seconds": q_mit["seconds"], **bootstrap_differences(q_plain, q_mit, reference)}
    halves = np.random.default_rng(0).permutation(len(planted))
    halves = [sorted(halves[:len(planted) // 2].tolist()), sorted(halves[len(planted) // 2:].tolist())]
    cross = []
    for tune, test in (halves, halves[::-1]):
        clean = [q for q in QUANTILES if not any(after[q]["records"][i]["extracted"] for i in tune)]
        q = max(clean, key=lambda q: targets[q]) if clean else min(QUANTILES, key=lambda q: targets[q])
        cross.append({"chosen_on": [planted[i] for i in tune], "quantile": q, "target": round(targets[q], 5),
                      "extracted_on_the_other_half": sum(after[q]["records"][i]["extracted"] for i in test),
                      "near_copies_on_the_other_half": sum(near_copy(after[q]["records"][i], alone) for i in test),
                      "of": len(test)})

    results = {
        "command": "python scripts/mitigation.py -o " + args.output,
        "method": "Wen et al. (ICLR 2024) inference-time prompt-embedding adjustment",
        "settings": {"lr": MitigateConfig.lr, "iterations": MitigateConfig.iterations,
                     "targets": {f"{q:g}": round(t, 5) for q, t in targets.items()},
                     "target_rule": f"quantiles of the first-step magnitude of {len(tuning['captions'])} novel tuning "
                                    f"captions x {len(TUNING_SEEDS)} starting noises",
                     "authors_target_rescaled": round(default_target(bundle), 5)},
        "extraction": {
            "captions": len(planted), "generations": GENERATIONS,
            "deltas": {"tiled": round(tiled, 5), "plain": round(plain, 5)},
            "near_copy_rule": "flagged, and the representative closer to its nearest training image than that "
                              "image is to any distinct other training image (audit.extract.near_copy)",
            "plain": {"extracted": before["extracted"], "flagged": before["flagged"], "seconds": before["seconds"],
                      "near_copies": sum(near_copy(r, alone) for r in before["records"])},
            "mitigated": {f"{q:g}": {
                "target": round(targets[q], 5), "extracted": a["extracted"], "flagged": a["flagged"],
                "near_copies": sum(near_copy(r, alone) for r in a["records"]),
                "seconds": a["seconds"],
                "generations_adjusted": sum(r["mitigation"]["adjusted"] for r in a["records"]),
                "generations_reaching_target": sum(r["mitigation"]["reached_target"] for r in a["records"]),
                "per_caption": [{"prompt": b["prompt"], "extracted_plain": b["extracted"], "extracted": r["extracted"],
                                 "nearest_l2_plain": b["nearest_l2"], "nearest_l2": r["nearest_l2"],
                                 "near_copy_plain": near_copy(b, alone), "near_copy": near_copy(r, alone),
                                 "nearest_training_plain": b["nearest_training"],
                                 "nearest_training": r["nearest_training"],
                                 "clique_plain": b["clique_size"], "clique": r["clique_size"], **r["mitigation"]}
                                for b, r in zip(before["records"], a["records"])]}
                for q, a in after.items()},
            "cross_fitted_choice": cross,
        },
        "ordinary_captions": {"captions": len(items), "per_theme": PER_THEME, "level": round(LEVEL, 4),
                              "resamples": RESAMPLES, "plain_seconds": q_plain["seconds"],
                              "mitigated": {f"{q:g}": v for q, v in quality.items()}},
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
                        "threads": torch.get_num_threads()},
    }
    grid = out / "evidence.png"
    if not grid.exists():
        conditions = {"plain": None, **{f"{q:g}": MitigateConfig(target=t) for q, t in targets.items()}}
        evidence_grid(bundle, planted[:EVIDENCE_CAPTIONS], conditions, grid)
    columns = ["plain"] + [f"target {targets[q]:.3f} ({q * 100:g} %)" for q in targets]
    results["extraction"]["evidence"] = {"file": grid.name, "captions": planted[:EVIDENCE_CAPTIONS],
                                         "seeds": [0, 1, 2, 3], "columns": columns}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "results.json")
    print(json.dumps(results["settings"], indent=1))
    for q, a in results["extraction"]["mitigated"].items():
        print(q, a["target"], a["extracted"], "of", len(planted), "near copies", a["near_copies"],
              {k: v["difference"] for k, v in quality[float(q)].items() if isinstance(v, dict)})
    print(before["extracted"], cross)
    return 0


if __name__ == "__main__":
    sys.exit(main())
