"""Recompute a committed bench run's verdict table and report from its stored cells, with the
current rule (artshield.bench.stats): nothing is trained or generated again.

    python scripts/resummarise_bench.py docs/results/bench-quick

Cells stored before per-generation outcomes were kept are read from their counts (k of n), with one
generation per prompt. The first summary ever written is kept under "summary_before".
"""
import json
import sys
from dataclasses import fields
from pathlib import Path

from artshield.bench import report_html
from artshield.bench.experiment import Preset, analysis, controls, summary, with_row_verdicts
from artshield.io import write_json, write_text


def main(folder: str) -> None:
    path = Path(folder) / "results.json"
    results = json.loads(path.read_text())
    known = {f.name for f in fields(Preset)}
    preset = Preset(**{k: v for k, v in results["preset"].items() if k in known})
    results.setdefault("summary_before", results["summary"])
    results["summary"] = summary(results["cells"], preset)
    results["analysis"] = analysis(results["summary"], preset.holm_family)
    results["controls"] = controls(results["cells"], preset.generations_per_prompt, preset.holm_family)
    results["pruned"] = with_row_verdicts(results.get("pruned") or [], results["summary"])
    results["resummarised_with"] = "python scripts/resummarise_bench.py " + folder
    write_json(results, path)
    write_text(report_html.render(results, results["summary"], folder), Path(folder) / "report.html")
    for row in results["summary"]:
        rel = row["relative"]
        print(f"{row['protection']}@{row['budget']:g}: relative mimicry "
              + "; ".join(f"{k} {_fmt(v)}" for k, v in rel.items()) + f" -> {row['verdict']}; quality {row['quality_verdict']}")
    for c in results["controls"]:
        print(f"control {c['purifier']}: {_fmt(c['purified'])}, difference {_fmt(c.get('difference'))} -> {c.get('effect')}")


def _fmt(ci: dict | None) -> str:
    if not ci:
        return "-"
    high = "inf" if ci["high"] is None else f"{ci['high']:.2f}"
    return f"{ci['mean']:.2f} [{ci['low']:.2f}, {high}]"


if __name__ == "__main__":
    main(sys.argv[1])
