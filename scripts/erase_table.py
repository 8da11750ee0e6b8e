"""The committed erasure results: every method on one style and one object of mini.

    python scripts/erase_table.py -o docs/results/erase

runs `artshield erase` (with its default evaluation: before, after, and after a concept-inversion
attack) for each method and concept into WORK/RUN/ (the edited weights stay there, out of git),
copies each run's results.json and image grid to OUT/RUN/, and writes OUT/summary.json and the
markdown table README shows, target accuracies with their 95 % bootstrap intervals over the target
prompts (one seed). A run whose results.json exists in WORK is reused.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from artshield.bench.stats import proportion_interval
from artshield.cli import main as artshield

METHODS = ["esd-x", "esd-u", "uce"]
CONCEPTS = ["faenza style", "trash can"]


def with_interval(accuracy: float | None, n: int) -> str:
    """An accuracy over n target prompts with its 95 % bootstrap interval (one seed: prompts only)."""
    if accuracy is None:
        return "n/a"
    ci = proportion_interval(accuracy, n)
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def row(name: str, res: dict) -> str:
    b, a, r = res["before"], res["after"], res.get("recovery", {})
    n = len(res["evaluations"][0]["prompts"]["target"])
    return (f"| {name} | {with_interval(b['target_accuracy'], n)} | {with_interval(a['target_accuracy'], n)} | "
            f"{with_interval(r.get('target_accuracy'), n)} | {b['others_accuracy']:.2f} | {a['others_accuracy']:.2f} | "
            f"{b['others_domain_fid']:.1f} | {a['others_domain_fid']:.1f} | {res['erase_seconds']:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("out/erase-runs"), help="where the edits are written")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--concepts", default="|".join(CONCEPTS), help="'|'-separated")
    args = ap.parse_args()
    summary, lines = {"runs": []}, []
    header = ("| erasure | target before | target after | after recovery attack | others before | others after "
              "| others FID before | others FID after | seconds |\n|---|---|---|---|---|---|---|---|---|")
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
            (args.output / name).mkdir(parents=True, exist_ok=True)
            for f in ["results.json"] + [e["grid"] for e in res.get("evaluations", []) if "grid" in e]:
                shutil.copyfile(run / f, args.output / name / f)
            summary["runs"].append({"command": "artshield " + shlex.join(argv), "method": method, "concept": concept,
                                    "results": f"{name}/results.json",
                                    **{k: res[k] for k in ("before", "after", "recovery", "erase_seconds") if k in res}})
            lines.append(row(f"{method}, {concept}", res))
    table = header + "\n" + "\n".join(lines)
    summary["table"] = table
    (args.output / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
