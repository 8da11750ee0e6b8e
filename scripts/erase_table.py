"""The committed erasure results: every method on one style and one object of mini.

    python scripts/erase_table.py -o docs/results/erase

runs `artshield erase` (with its default evaluation: before, after, after each recovery attack and
in the worst case over them) for each method and concept into WORK/RUN/ (the edited weights stay
there, out of git), copies each run's results.json and image grid to OUT/RUN/ with its page
rendered again by the current template, and writes
OUT/summary.json and the markdown table README shows, target accuracies with their 95 % bootstrap
intervals over the target prompts (one seed). A run whose results.json exists in WORK is reused;
with --add-attacks, the attacks it lacks among those named are run on its edit and merged into it
(the same prompts and seeds; the before images are generated again and must match the record).
Ring-A-Bell's prompts depend on the base model only: runs in one process share them.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from artshield.bench.tables import erasure
from artshield.erase.report import render
from artshield.io import write_text
from artshield.cli import main as artshield

METHODS = ["esd-x", "esd-u", "uce", "rece", "advunlearn"]
CONCEPTS = ["faenza style", "trash can"]


def add_attacks(run: Path, wanted: list[str]) -> list[str]:
    """Run on RUN's edit the attacks of `wanted` its record lacks, merge them and the new worst case
    into RUN/results.json; returns the attacks added."""
    import numpy as np

    from artshield.erase.evaluate import measure, parse_target, prompt_sets, run_attacks
    from artshield.io import write_json
    from artshield.metrics.judge import Judge
    from artshield.models import load_model

    res = json.loads((run / "results.json").read_text())
    [e] = res["evaluations"]
    missing = [a for a in wanted if a not in e.get("attacks", {})]
    if not missing or "attacks" not in e:
        return []
    base, after, judge = load_model(res["model"]["spec"]), load_model(str(run)), Judge.load()
    target = parse_target(e["concept"])
    n = len(e["prompts"]["target"])
    targets, _ = prompt_sets(target, n, e["prompts"]["others_per_name"], res["seed"])
    assert [t.caption for t in targets] == e["prompts"]["target"], f"{run}: the target prompts differ"
    # generated without the others' prompts in the batch, the before images may differ in rounding
    before, images = measure(base, judge, target, targets, {}, res["seed"], None)
    matched = before["target_hits"] == e["before"]["target_hits"]
    records, _, _ = run_attacks(base, after, judge, target, targets, images, missing, res["seed"])
    e["attacks"].update(records)
    union = np.max([a["target_hits"] for a in e["attacks"].values()], axis=0)
    worst = max(e["attacks"], key=lambda k: e["attacks"][k]["target_accuracy"])
    e["recovery"].update({"target_accuracy": round(float(union.mean()), 4), "target_hits": [int(h) for h in union],
                          "attacks": list(e["attacks"]), "strongest_single": worst})
    res["recovery"] = e["recovery"]
    res["attacks_added_later"] = sorted(set(res.get("attacks_added_later", [])) | set(missing))
    res["attacks_added_later_before_hits_match"] = matched
    write_json(res, run / "results.json")
    return missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("out/erase-runs"), help="where the edits are written")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--concepts", default="|".join(CONCEPTS), help="'|'-separated")
    ap.add_argument("--add-attacks", default=None, help="comma-separated attacks to add to runs that lack them")
    ap.add_argument("--existing", action="store_true", help="summarise the runs WORK holds; run none")
    args = ap.parse_args()
    summary = {"runs": []}
    for concept in args.concepts.split("|"):
        for method in args.methods.split(","):
            name = f"{method}-{concept.replace(' ', '-')}"
            run = args.work / name
            argv = ["erase", "--concept", concept, "--method", method, "-o", str(run), "-q"]
            if not (run / "results.json").is_file():
                if args.existing:
                    continue
                code = artshield(argv)
                if code:
                    print(f"{' '.join(argv)} failed with exit code {code}", file=sys.stderr)
                    return code
            if args.add_attacks:
                added = add_attacks(run, args.add_attacks.split(","))
                if added:
                    print(f"{name}: added {', '.join(added)}", file=sys.stderr)
            res = json.loads((run / "results.json").read_text())
            attacks = {k: v["target_accuracy"] for k, v in res["evaluations"][0].get("attacks", {}).items()}
            if not attacks and "recovery" in res:      # a run from before the attack registry: concept inversion alone
                attacks = {"concept-inversion": res["recovery"]["target_accuracy"]}
            (args.output / name).mkdir(parents=True, exist_ok=True)
            for f in ["results.json"] + [e["grid"] for e in res.get("evaluations", []) if "grid" in e]:
                shutil.copyfile(run / f, args.output / name / f)
            write_text(render(res, args.output / name), args.output / name / "report.html")
            summary["runs"].append({"command": "artshield " + shlex.join(argv), "method": method, "concept": concept,
                                    "results": f"{name}/results.json",
                                    **{k: res[k] for k in ("before", "after", "recovery", "erase_seconds") if k in res},
                                    "n_target": len(res["evaluations"][0]["prompts"]["target"]),
                                    "attacks": attacks,
                                    "attack_hits": {k: v["target_hits"] for k, v in
                                                    res["evaluations"][0].get("attacks", {}).items()}})
    table = erasure(summary)
    summary["table"] = table
    (args.output / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
