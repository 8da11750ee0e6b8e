"""How many generations Ring-A-Bell's genetic search needs on mini: its best distance to the goal
every 50 generations, up to the authors' 3000 or fewer, on tuning prompts that no evaluation
scores (captions with the concept that are neither erase's target prompts nor the concept-vector
pairs), for faenza's style and the trash can.

    python scripts/attack_tuning.py -o docs/results/tuning/ring-a-bell.json [--generations 1500]

Writes the traces, the seconds, and for each prompt the first generation within 1 % of its final
distance; mini's `attack_settings` convention takes a number of generations past those.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from artshield.erase.attacks import RingABellConfig, concept_vector, genetic_search
from artshield.erase.evaluate import concept_pairs, parse_target, prompt_sets
from artshield.models import load_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--generations", type=int, default=1500)
    ap.add_argument("--prompts", type=int, default=2, help="tuning prompts per concept")
    args = ap.parse_args()
    base = load_model("mini")
    cfg = RingABellConfig(generations=args.generations)
    rows = []
    for name in ("faenza style", "trash can"):
        target = parse_target(name)
        targets, _ = prompt_sets(target, 32, 8, 0)
        exclude = {i.caption for i in targets}
        pairs = concept_pairs(target, cfg.pairs, exclude, 0)
        vector = concept_vector(base, pairs)
        tune = [p for p, _ in concept_pairs(target, 50, exclude | {p for p, _ in pairs}, 1)][:args.prompts]
        for text in tune:
            goal = base.embed([text]).float()[0] + cfg.eta * vector
            start = time.time()
            found, distance, trace = genetic_search(base, goal, cfg, np.random.default_rng(0))
            within = next(50 * i for i, d in enumerate(trace) if d <= 1.01 * distance)
            rows.append({"concept": name, "prompt": text, "found": found, "distance": round(distance, 3),
                         "trace_every_50": trace, "generations_to_within_1_percent": within,
                         "seconds": round(time.time() - start, 1)})
            print(f"{name}: {text!r} -> within 1 % of the end after {within} generations", flush=True)
    out = {"command": "python scripts/attack_tuning.py " + shlex.join(sys.argv[1:]), "config": vars(cfg),
           "runs": rows, "max_generations_to_within_1_percent": max(r["generations_to_within_1_percent"] for r in rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
