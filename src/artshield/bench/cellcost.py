"""What a bench cell costs, phase by phase, under two presets side by side in one run.

    python -m artshield.bench.cellcost --old standard --new NEW --conditions clean advdm@16 \\
        --seeds 0 1 2 --json docs/results/cell-cost.json

The same cells (artist, condition, mimic, training seed) are run under the --old preset and under
the --new one, alternately, in one process on this machine. Each cell's record times its phases
(Runner.run_cell: condition, train, generate, judge, write, provenance). A protected or purified
condition's images are made once, before any cell, into a folder both runs read, and timed apart:
they are the same code and settings under both presets, and a bench makes them once per seed for a
whole row of cells, so they are not part of the per-cell figure (`cell_seconds`, the other phases).

The outcomes must agree: for each condition, the new preset's mimicry success minus the old's,
paired over seeds and prompts (stats.difference), with its interval; and, since a verdict reads a
protection's effect, each protected condition's effect (its success minus clean's) under the new
preset minus the same under the old. A speed-up whose cells measure something else is not a speed-up.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..io import write_json
from ..metrics.judge import Judge
from ..models import load_model
from . import stats
from .experiment import PRESETS, Cell, Runner, outcomes

PHASES = ("train", "generate", "judge", "write", "provenance")


def parse_condition(text: str) -> tuple[str, float, str]:
    """'clean', 'clean + jpeg', 'advdm@16', 'advdm@16 + jpeg' -> (protection, budget, purifier)."""
    head, _, purifier = (part.strip() for part in text.partition("+"))
    if head == "clean":
        return "none", 0.0, purifier or "none"
    name, at, budget = head.partition("@")
    if not at:
        raise SystemExit(f"condition {text!r}: write clean, METHOD@BUDGET, or either + PURIFIER")
    return name, float(budget), purifier or "none"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compare(old: str, new: str, conditions: list[str], seeds: list[int], artist: str = "gartoon",
            mimicry: str = "lora", model: str = "mini", log=print) -> dict:
    bundle, judge = load_model(model, "cpu"), Judge.load()
    presets = {"old": PRESETS[old], "new": PRESETS[new]}
    with tempfile.TemporaryDirectory(prefix="artshield-cellcost-") as tmp:
        root = Path(tmp)
        shared = root / "conditions"
        shared.mkdir()
        runners = {}
        for side, preset in presets.items():
            (root / side).mkdir()
            (root / side / "conditions").symlink_to(shared, target_is_directory=True)
            runners[side] = Runner(bundle, judge, preset, root / side, log=lambda m: None)
        made, rows = {}, []
        for text in conditions:
            protection, budget, purifier = parse_condition(text)
            for seed in seeds:
                cell = Cell(artist, protection, budget, purifier, mimicry, seed)
                t0 = time.perf_counter()
                runners["old"].condition_images(cell)        # stored in the shared folder for both sides
                made[f"{cell.condition} (seed {seed})"] = round(time.perf_counter() - t0, 1)
                for side in ("old", "new"):
                    record = runners[side].run_cell(cell)
                    phases = record["phase_seconds"]
                    rows.append({"side": side, "preset": old if side == "old" else new,
                                 "cell": asdict(cell), "condition": cell.condition, "phases": phases,
                                 "cell_seconds": round(sum(phases.get(p, 0.0) for p in PHASES), 1),
                                 "mimicry_success": record["mimicry_success"], "outcomes": outcomes(record),
                                 "prompts": record["prompts"], "domain_fid": record["domain_fid"]})
                    log(f"{side:3s} {cell.condition} seed {seed}: {rows[-1]['cell_seconds']:.0f} s, "
                        f"success {record['mimicry_success']:.3f}")
    return report(rows, made, presets, old, new)


def report(rows: list[dict], made: dict, presets: dict, old: str, new: str) -> dict:
    """Median cell seconds per side and their ratio, median seconds per phase, and per condition the
    paired difference of mimicry success (new - old) over the seeds and prompts both ran."""
    side = {s: [r for r in rows if r["side"] == s] for s in ("old", "new")}
    median = {s: float(np.median([r["cell_seconds"] for r in side[s]])) for s in side}
    phases = {s: {p: round(float(np.median([r["phases"].get(p, 0.0) for r in side[s]])), 2) for p in PHASES}
              for s in side}
    agreement, tables = [], {}
    for condition in dict.fromkeys(r["condition"] for r in rows):
        by = {s: {r["cell"]["seed"]: r["outcomes"] for r in side[s] if r["condition"] == condition} for s in side}
        per_side = {s: stats.arrange(by[s], presets[s].generations_per_prompt) for s in side}
        # both presets score the bench's scored captions in one fixed order: a preset with fewer
        # prompts scores the first ones of the other's, so the common prompts are the first k
        k = min(len(t) for s in side for t in per_side[s].values())
        tables[condition] = {s: {seed: t[:k] for seed, t in per_side[s].items()} for s in side}
        seeds, (x, y) = stats.paired(tables[condition]["new"], tables[condition]["old"])
        n = len(seeds) * k * presets["new"].generations_per_prompt
        diff = stats.difference(x, y, n)
        agreement.append({"condition": condition, "seeds": seeds, "old": round(float(y.mean()), 4),
                          "new": round(float(x.mean()), 4), "new_minus_old": diff.to_dict(),
                          "agree": not diff.excludes(0.0)})
    # what a verdict reads is a protection's effect (its success minus clean's), so that is what must
    # agree: (new protected - new clean) - (old protected - old clean), paired over seeds and prompts
    effects = []
    for condition in tables:
        if condition == "clean" or "clean" not in tables:
            continue
        seeds, (np_, nc, op, oc) = stats.paired(tables[condition]["new"], tables["clean"]["new"],
                                                tables[condition]["old"], tables["clean"]["old"])
        diff = stats.difference(np_ - nc, op - oc, len(seeds) * np_.shape[1] * presets["new"].generations_per_prompt)
        effects.append({"condition": condition, "seeds": seeds, "old_effect": round(float((op - oc).mean()), 4),
                        "new_effect": round(float((np_ - nc).mean()), 4), "new_minus_old": diff.to_dict(),
                        "agree": not diff.excludes(0.0)})
    return {"what": "per-cell cost of the bench under two presets, side by side in one run (bench.cellcost); "
                    "cell_seconds = train + generate + judge + write + provenance; conditions made once, apart",
            "old": old, "new": new, "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "median_cell_seconds": {s: round(v, 2) for s, v in median.items()},
            "speed_up": round(median["old"] / median["new"], 2), "median_phase_seconds": phases,
            "condition_seconds": made, "agreement": agreement, "effect_agreement": effects, "cells": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artshield.bench.cellcost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="standard", choices=list(PRESETS))
    ap.add_argument("--new", required=True, choices=list(PRESETS))
    ap.add_argument("--conditions", nargs="+", default=["clean", "advdm@16"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--artist", default="gartoon")
    ap.add_argument("--mimicry", default="lora")
    ap.add_argument("--model", default="mini")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    figures = compare(args.old, args.new, args.conditions, args.seeds, args.artist, args.mimicry, args.model)
    figures["command"] = "python -m artshield.bench.cellcost " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"median cell: {args.old} {figures['median_cell_seconds']['old']:.0f} s, {args.new} "
          f"{figures['median_cell_seconds']['new']:.0f} s: {figures['speed_up']:.2f}x "
          f"({figures['cpu']}, {figures['torch_threads']} thread(s))")
    for p in PHASES:
        print(f"  {p:11s} {figures['median_phase_seconds']['old'][p]:8.1f} s  {figures['median_phase_seconds']['new'][p]:8.1f} s")
    for a in figures["agreement"]:
        d = a["new_minus_old"]
        print(f"  {a['condition']}: {args.old} {a['old']:.3f}, {args.new} {a['new']:.3f}, new - old {d['mean']:+.3f} "
              f"[{d['low']:+.3f}, {d['high']:+.3f}]: {'agree' if a['agree'] else 'DIFFER'}")
    for e in figures["effect_agreement"]:
        d = e["new_minus_old"]
        print(f"  effect of {e['condition']} (vs clean): {args.old} {e['old_effect']:+.3f}, {args.new} "
              f"{e['new_effect']:+.3f}, new - old {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]: "
              f"{'agree' if e['agree'] else 'DIFFER'}")
    if args.json:
        write_json(figures, args.json)
    return 0 if all(a["agree"] for a in figures["agreement"] + figures["effect_agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
