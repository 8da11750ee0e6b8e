"""Recompute a committed bench run's verdict table and report from its stored cells, with the
current rule (artshield.bench.stats): nothing is trained or generated again.

    python scripts/resummarise_bench.py docs/results/bench-quick

Cells stored before per-generation outcomes were kept are read from their counts (k of n), which
is all a bootstrap of 0/1 outcomes needs. The previous summary is kept under "summary_before".
"""
import json
import sys
from dataclasses import fields
from pathlib import Path

from artshield.bench import report_html
from artshield.bench.experiment import Preset, summary
from artshield.io import write_json, write_text


def main(folder: str) -> None:
    path = Path(folder) / "results.json"
    results = json.loads(path.read_text())
    known = {f.name for f in fields(Preset)}
    preset = Preset(**{k: v for k, v in results["preset"].items() if k in known})
    results.setdefault("summary_before", results["summary"])
    results["summary"] = summary(results["cells"], preset)
    results["resummarised_with"] = "python scripts/resummarise_bench.py " + folder
    write_json(results, path)
    write_text(report_html.render(results, results["summary"], folder), Path(folder) / "report.html")
    for row in results["summary"]:
        ci = row["intervals"]
        print(f"{row['protection']}@{row['budget']:g}: clean {ci['clean']['mean']:.2f} "
              f"[{ci['clean']['low']:.2f}, {ci['clean']['high']:.2f}], bar {row['bar']:.2f}; "
              + "; ".join(f"{k} {v['mean']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                          for k, v in ci.items() if k != "clean")
              + f" -> {row['verdict']}")


if __name__ == "__main__":
    main(sys.argv[1])
