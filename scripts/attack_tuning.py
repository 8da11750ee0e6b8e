"""How long the searching attacks need on mini, on tuning prompts that no evaluation scores
(captions with the concept that are neither erase's target prompts nor Ring-A-Bell's pairs).

    python scripts/attack_tuning.py -o docs/results/tuning/ring-a-bell.json [--generations 1500]
    python scripts/attack_tuning.py --attack p4d -o docs/results/tuning/p4d.json [--iterations 1000]

ring-a-bell: the genetic search's best distance to the goal every 50 generations, up to the authors'
3000 or fewer, for faenza's style and the trash can. p4d: the best LPIPS to the base model's image
at each evaluation (every 50 steps), up to the authors' 3000 or fewer, against the committed ESD-x
erasure of faenza (`--edit`, made by scripts/erase_table.py). Writes the traces, the seconds, and
for each prompt the first step within 1 % of its final value; mini's `attack_settings` convention
takes a number past those.
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


def ring_a_bell(base, args) -> tuple[dict, list[dict]]:
    cfg = RingABellConfig(generations=args.generations)
    rows = []
    for name in ("faenza style", "trash can"):
        target = parse_target(name)
        targets, _ = prompt_sets(target, 32, 8, 0)
        exclude = {i.caption for i in targets}
        pairs = concept_pairs(target, cfg.pairs, exclude, 0)
        vector = concept_vector(base, pairs)
        for text in tuning_prompts(target, args.prompts, exclude | {p for p, _ in pairs}):
            goal = base.embed([text]).float()[0] + cfg.eta * vector
            start = time.time()
            found, distance, trace = genetic_search(base, goal, cfg, np.random.default_rng(0))
            within = next(50 * i for i, d in enumerate(trace) if d <= 1.01 * distance)
            rows.append({"concept": name, "prompt": text, "found": found, "distance": round(distance, 3),
                         "trace_every_50": trace, "generations_to_within_1_percent": within,
                         "seconds": round(time.time() - start, 1)})
            print(f"{name}: {text!r} -> within 1 % of the end after {within} generations", flush=True)
    return vars(cfg), rows


def tuning_prompts(target, n: int, exclude: set) -> list[str]:
    return [p for p, _ in concept_pairs(target, 50, exclude, 1)][:n]


def p4d(base, args) -> tuple[dict, list[dict]]:
    from artshield.erase.attacks import Context, make_attack
    from artshield.generate import generate

    erased = load_model(str(args.edit))
    target = parse_target("faenza style")
    targets, _ = prompt_sets(target, 32, 8, 0)
    pairs = concept_pairs(target, RingABellConfig().pairs, {i.caption for i in targets}, 0)
    texts = tuning_prompts(target, args.prompts, {i.caption for i in targets} | {p for p, _ in pairs})
    items = [type("Item", (), {"caption": t})() for t in texts]
    images = generate(base, texts, seed=0)
    attack = make_attack("p4d", base, iterations=args.iterations)
    ctx = Context(base=base, erased=erased, target=target, items=items, prompt=lambda it: it.caption, seed=0,
                  base_images=images, hits=None)
    start = time.time()
    record = attack.run(ctx).info
    rows = []
    for text, trace, final in zip(texts, record["best_lpips_by_step"], record["lpips_to_base_image"]):
        within = next(step for step, d in trace if d <= 1.01 * final)
        rows.append({"concept": "faenza style", "prompt": text, "best_lpips_by_step": trace,
                     "steps_to_within_1_percent": within})
        print(f"{text!r} -> within 1 % of the end after {within} steps", flush=True)
    return {**record["config"], "edit": str(args.edit), "seconds": round(time.time() - start, 1)}, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--attack", choices=("ring-a-bell", "p4d"), default="ring-a-bell")
    ap.add_argument("--generations", type=int, default=1500, help="ring-a-bell")
    ap.add_argument("--iterations", type=int, default=1000, help="p4d")
    ap.add_argument("--edit", type=Path, default=Path("out/erase-runs/esd-x-faenza-style"), help="p4d")
    ap.add_argument("--prompts", type=int, default=2, help="tuning prompts per concept")
    args = ap.parse_args()
    base = load_model("mini")
    config, rows = (ring_a_bell if args.attack == "ring-a-bell" else p4d)(base, args)
    key = "generations_to_within_1_percent" if args.attack == "ring-a-bell" else "steps_to_within_1_percent"
    out = {"command": "python scripts/attack_tuning.py " + shlex.join(sys.argv[1:]), "config": config,
           "runs": rows, f"max_{key}": max(r[key] for r in rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
