"""The committed erasure results: every method on one style and one object of mini.

    python scripts/erase_table.py -o docs/results/erase

runs `artshield erase` (with its default evaluation: before, after, after each recovery attack and
in the worst case over them) for each method and concept into WORK/RUN/ (the edited weights stay
there, out of git), copies each run's results.json and image grid to OUT/RUN/, and writes
OUT/summary.json and the markdown table README shows, target accuracies with their 95 % bootstrap
intervals over the target prompts (one seed). A run whose results.json exists in WORK is reused.
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
from artshield.cli import main as artshield

METHODS = ["esd-x", "esd-u", "uce"]
CONCEPTS = ["faenza style", "trash can"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("out/erase-runs"), help="where the edits are written")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--concepts", default="|".join(CONCEPTS), help="'|'-separated")
    args = ap.parse_args()
    summary = {"runs": []}
    for concept in args.concepts.split("|"):
        for method in args.methods.split(","):
            name = f"{method}-{concept.replace(' ', '-')}"
            run = args.work / name
            argv = ["erase", "--concept", concept, "--method", method, "-o", str(run), "-q"]
            if not (run / "results.json").is_file():
                code = artshield(argv)
                if code:
                    print(f"{' '.join(argv)} failed with exit code {code}", file=sys.stderr)
                    return code
            res = json.loads((run / "results.json").read_text())
            attacks = {k: v["target_accuracy"] for k, v in res["evaluations"][0].get("attacks", {}).items()}
            if not attacks and "recovery" in res:      # a run from before the attack registry: concept inversion alone
                attacks = {"concept-inversion": res["recovery"]["target_accuracy"]}
            (args.output / name).mkdir(parents=True, exist_ok=True)
            for f in ["results.json"] + [e["grid"] for e in res.get("evaluations", []) if "grid" in e]:
                shutil.copyfile(run / f, args.output / name / f)
            summary["runs"].append({"command": "artshield " + shlex.join(argv), "method": method, "concept": concept,
                                    "results": f"{name}/results.json",
                                    **{k: res[k] for k in ("before", "after", "recovery", "erase_seconds") if k in res},
                                    "n_target": len(res["evaluations"][0]["prompts"]["target"]),
                                    "attacks": attacks})
    table = erasure(summary)
    summary["table"] = table
    (args.output / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
