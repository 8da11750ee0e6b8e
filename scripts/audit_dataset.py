"""Dataset inference on mini (the audit issue's measurement): can an artist show that a mimic trained on
their images, and does the test keep its false-positive rate when nothing was trained?

    python scripts/audit_dataset.py -o docs/results/audit-dataset                 # everything (hours on 2 CPUs)
    python scripts/audit_dataset.py -o OUT --artists gartoon --mimics lora --null-splits 20

For each held-out artist (mini never trained on them), its fine-tuning icons (the bench's mimics train
on them) are split at random in two halves of up to 30: SUSPECT and HELD-OUT, drawn alike. The mimic
fine-tunes on SUSPECT with the bench's settings (the mimics preset: steps, learning rate, options;
captions with the trigger word in the artist's name's place, as the bench's; textual inversion, not in
that preset, at the full preset's 300 steps). Dataset inference then tests SUSPECT against HELD-OUT,
with the same captions, on the adapted model: p-value and AUC. Nulls:
  - the same test on mini itself (nothing fine-tuned), and `--null-splits` random half/half splits of
    the artist's fine-tuning icons on mini;
  - on each adapted model, `--null-splits` random half/half splits of HELD-OUT (images it never
    trained on): the false-positive rate at alpha 0.05 and 0.01.
The test assumes the two sets are drawn alike. mini's training themes have no unused icons of the kind
mini trained on (its corpus's concept icons are all in training; the judge's pool holds other
subjects), so they are tested against the judge's pool only to show what that assumption guards
against: on sets of different subjects the test separates them whatever the training. Each record is
written as it completes (OUT/parts/), so a stopped run resumes; OUT/results.json gathers them.
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
from artshield.audit import dataset  # noqa: E402
from artshield.bench.experiment import PRESETS, trigger_caption  # noqa: E402
from artshield.mimic import mimic  # noqa: E402
from artshield.models import load_model  # noqa: E402
from artshield.models.views import model_views  # noqa: E402

N = 30                           # images per set at most
NULL_PERMUTATIONS = 199          # p-values of the null splits: resolution 1/200, enough for rates at 0.05 and 0.01


def artist_sets(artist: str):
    """(SUSPECT, HELD-OUT): the artist's fine-tuning icons in a random order (seed 0), two halves of
    up to N."""
    pool = corpus.items(split="finetune", theme=artist)
    order = np.random.default_rng(0).permutation(len(pool))
    n = min(N, len(pool) // 2)
    return [pool[i] for i in order[:n]], [pool[i] for i in order[n:2 * n]]


def features(bundle, items, artist=None, adapter=None, draws=dataset.DRAWS):
    """Dataset inference's features of `items`, captioned as the mimic's training was (the trigger word
    in `artist`'s place, written as `adapter` needs it: textual inversion's learnt token), or with
    their own captions (artist None: what mini trained on)."""
    images = model_views(list(corpus.load_images(items, 64)), bundle.image_size)
    captions = [trigger_caption(i.caption, artist) if artist else i.caption for i in items]
    captions = [adapter.prompt(c) for c in captions] if adapter is not None else captions
    return dataset.membership_features(bundle, images, captions, draws=draws)


def null_rates(feats: np.ndarray, splits: int, seed: int) -> dict:
    """Random half/half splits of `feats`' rows, each tested with NULL_PERMUTATIONS shuffles."""
    rng = np.random.default_rng(seed)
    ps = []
    for k in range(splits):
        order = rng.permutation(len(feats))
        half = len(feats) // 2
        ps.append(dataset.dataset_inference(feats[order[:half]], feats[order[half:]], permutations=NULL_PERMUTATIONS,
                                            seed=seed + k)["p_value"])
    ps = np.array(ps)
    return {"splits": splits, "permutations": NULL_PERMUTATIONS,
            "false_positive_rate": {"0.05": float((ps <= 0.05).mean()), "0.01": float((ps <= 0.01).mean())},
            "p_values": [round(float(p), 4) for p in ps]}


def test(suspect, heldout) -> dict:
    r = dataset.dataset_inference(suspect, heldout)
    return {"p_value": r["p_value"], "auc": round(r["auc"], 4), "null_auc_mean": round(r["null_auc_mean"], 4),
            "effect_sizes": [round(float(d), 3) for d in dataset.effect_sizes(suspect, heldout)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--artists", nargs="+", default=corpus.themes(heldout=True))
    ap.add_argument("--mimics", nargs="+", default=["lora", "dreambooth", "hypernetwork", "textual-inversion"])
    ap.add_argument("--null-splits", type=int, default=100)
    ap.add_argument("--themes", type=int, default=2, help="training themes tested against unlike images (default 2)")
    ap.add_argument("--draws", type=int, default=dataset.DRAWS,
                    help=f"noise draws per image and timestep in the adapters' features (default {dataset.DRAWS}); "
                         "other than the default, records NAME-drawsN, beside the others")
    ap.add_argument("--gather", action="store_true", help="only gather OUT/parts/ into OUT/results.json")
    ap.add_argument("--calibrated", action="store_true",
                    help="the adapters' tests with each image calibrated by mini's own features (what `artshield "
                    "audit --adapter` does): records NAME-calibrated, beside the uncalibrated ones")
    args = ap.parse_args(argv)
    out = Path(args.output)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    preset = PRESETS["mimics"]
    torch.manual_seed(0)

    def part(name, make):
        path = parts / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        start = time.time()
        record = {**make(), "seconds": round(time.time() - start, 1)}
        path.write_text(json.dumps(record, indent=1))
        print(f"{name}: {({k: record[k] for k in ('p_value', 'auc') if k in record})} {record['seconds']} s", flush=True)
        return record

    base = None if args.gather else load_model("mini", device="cpu")
    for artist in [] if args.gather else args.artists:
        suspect, heldout = artist_sets(artist)
        n = len(suspect)

        def base_record():
            f = features(base, suspect + heldout, artist)
            return {"artist": artist, "model": "mini", "images_per_set": n, **test(f[:n], f[n:]),
                    "null": null_rates(f, args.null_splits, seed=1)}
        part(f"{artist}-base", base_record)
        for method in args.mimics:
            def mimic_record():
                bundle = load_model("mini", device="cpu")
                options = preset.mimicry_options.get(method, {})
                steps = preset.mimicry_steps.get(method, PRESETS["full"].mimicry_steps.get(method, 300))
                lr = preset.mimicry_lr.get(method)
                t0 = time.time()
                adapter = mimic(bundle, list(corpus.load_images(suspect, 64)),
                                [trigger_caption(i.caption, artist) for i in suspect], method, steps=steps, lr=lr,
                                seed=0, **options)
                trained = time.time() - t0
                reference = features(bundle, suspect + heldout, artist, draws=args.draws) if args.calibrated else None
                adapter.apply(bundle)
                f = features(bundle, suspect + heldout, artist, adapter, draws=args.draws)
                record = {"artist": artist, "mimic": method, "images_per_set": n, "steps": steps, "draws": args.draws,
                          "lr": adapter.info["config"]["lr"], "options": options, "train_seconds": round(trained, 1)}
                if reference is not None:       # the raw features' test beside, then the calibrated one
                    record["uncalibrated"] = test(f[:n], f[n:])
                    f = np.hstack([f, f - reference])
                    record["calibrated_by_base"] = True
                return {**record, **test(f[:n], f[n:]), "null_never_trained": null_rates(f[n:], args.null_splits, seed=2)}
            part(f"{artist}-{method}" + ("-calibrated" if args.calibrated else "")
                 + (f"-draws{args.draws}" if args.draws != dataset.DRAWS else ""), mimic_record)

    for theme in [] if args.gather else corpus.themes(heldout=False)[:args.themes]:
        def theme_record():
            members = [i for i in corpus.items(split="train", theme=theme) if i.copies == 1][:N]
            others = corpus.items(split="judge", theme=theme)[:N]
            f = features(base, members + others)
            return {"theme": theme, "model": "mini", "suspect": "mini's training icons (its corpus's concepts)",
                    "heldout": "the judge's pool: other subjects of the theme, never trained on (not drawn alike: "
                               "shows the assumption, not membership)", **test(f[:N], f[N:])}
        part(f"unlike-{theme}", theme_record)

    records = [json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))]
    summary = {"command": "python scripts/audit_dataset.py -o OUT (records of every part in OUT/parts/)",
               "images_per_set_at_most": N, "permutations": dataset.PERMUTATIONS, "timesteps": list(dataset.TIMESTEPS),
               "draws": dataset.DRAWS, "folds": dataset.FOLDS, "features": dataset.feature_names(),
               "python": platform.python_version(), "torch": torch.__version__, "records": records}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
