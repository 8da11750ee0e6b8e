"""Choose the consensus detector's step and seed count on a tuning split, then score it on captions the
choice never saw (the audit issue's detector table).

    python scripts/consensus_tuning.py -o docs/results/audit-consensus-tuning        # a few minutes

mini's audit set is its 24 planted-duplicate captions against 24 captions no training image has. The
planted captions are split in two halves of 12 (seed 0). For each half in turn:
  - choose (generations, step) with the highest AUC of that half against 48 *other* novel captions
    (tuning negatives: none of them among the audit's 24), ties to fewer seeds, then the earlier step;
  - score the other half against the audit's 24 novel captions with the chosen setting.
When both halves choose the same setting, every caption's score comes from a setting chosen without
it, so the pooled AUC and true-positive rate at 1 % false positives over all 24 + 24 are honest.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from artshield import corpus  # noqa: E402
from artshield.audit import corpus_prompts, tpr_at_fpr  # noqa: E402
from artshield.audit.detect import auc, consensus_trajectory  # noqa: E402
from artshield.models import load_model  # noqa: E402

GENERATIONS = (4, 8)
LAST_STEP = 15                  # half of mini's 30-step schedule
TUNING_NEGATIVES = 48


def tuning_negatives(exclude: set[str]) -> list[str]:
    seen = {(i.concept, i.theme) for i in corpus.items(split="train")}
    pool = sorted(f"{c} icon, {t} style" for t in corpus.themes(heldout=False) for c in corpus.concepts()
                  if (c, t) not in seen and f"{c} icon, {t} style" not in exclude)
    rng = np.random.default_rng(2)
    return [pool[j] for j in sorted(rng.permutation(len(pool))[:TUNING_NEGATIVES])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    bundle = load_model("mini")
    prompts, truth = corpus_prompts(0, "novel")
    planted = [p for p, t in zip(prompts, truth) if t]
    novel = [p for p, t in zip(prompts, truth) if not t]
    negatives = tuning_negatives(set(novel))
    everything = planted + novel + negatives
    start = time.time()
    scores = {g: consensus_trajectory(bundle, everything, generations=8, last_step=LAST_STEP, first=g) for g in GENERATIONS}
    seconds = time.time() - start
    n_p, n_n = len(planted), len(novel)

    def part(g, rows):
        return scores[g][rows]

    halves = np.random.default_rng(0).permutation(n_p)
    halves = [np.sort(halves[:n_p // 2]), np.sort(halves[n_p // 2:])]
    tune_neg = np.arange(n_p + n_n, len(everything))
    eval_neg = np.arange(n_p, n_p + n_n)
    folds = []
    for k, (tune, test) in enumerate((halves, halves[::-1])):
        table = {}
        for g in GENERATIONS:
            for step in range(1, LAST_STEP + 1):
                s = np.concatenate([part(g, tune)[:, step - 1], part(g, tune_neg)[:, step - 1]])
                table[(g, step)] = auc(s, [True] * len(tune) + [False] * len(tune_neg))
        best = max(table.values())
        chosen = min((g, step) for (g, step), a in table.items() if a == best)
        g, step = chosen
        s = np.concatenate([part(g, test)[:, step - 1], part(g, eval_neg)[:, step - 1]])
        scored = tpr_at_fpr(s, [True] * len(test) + [False] * n_n, 0.01)
        folds.append({"tuning_planted": [planted[i] for i in tune], "chosen": {"generations": g, "step": step},
                      "tuning_auc": round(best, 4),
                      "tuning_table": {f"{g} seeds, step {s_}": round(a, 4) for (g, s_), a in table.items()},
                      "test": {"planted": len(test), "novel": n_n, **scored}})
    same = folds[0]["chosen"] == folds[1]["chosen"]
    results = {"command": "python scripts/consensus_tuning.py -o " + args.output,
               "detector": "seed consensus of the predicted image (artshield.audit.detect.Consensus)",
               "schedule_steps": bundle.conventions.steps, "tuning_negatives": negatives, "folds": folds,
               "both_folds_agree": same, "seconds_per_caption_all_steps": round(seconds / len(everything) / len(GENERATIONS), 3)}
    if same:
        g, step = folds[0]["chosen"]["generations"], folds[0]["chosen"]["step"]
        s = np.concatenate([scores[g][:n_p, step - 1], scores[g][eval_neg, step - 1]])
        results["pooled"] = {"generations": g, "step": step, "fraction": round(step / bundle.conventions.steps, 4),
                             **tpr_at_fpr(s, [True] * n_p + [False] * n_n, 0.01)}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k not in ("tuning_negatives", "folds")}, indent=1))
    for f in folds:
        print(f["chosen"], f["tuning_auc"], f["test"]["auc"], f["test"]["tpr"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
