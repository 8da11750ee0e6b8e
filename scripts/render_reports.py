"""Render the committed reports again from their results.json, with the current templates.

    python scripts/render_reports.py            # docs/results/{bench-*,audit,erase/*}/report.html

The figures come from the stored data only; nothing is recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from artshield.audit.report import render as audit_page
from artshield.bench.report_html import render as bench_page
from artshield.erase.report import render as erase_page
from artshield.io import write_text

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def main() -> None:
    for folder in sorted(RESULTS.glob("bench-*")):
        results = json.loads((folder / "results.json").read_text())
        write_text(bench_page(results, results["summary"], folder), folder / "report.html")
        print(folder / "report.html")
    audit = RESULTS / "audit"
    if (audit / "results.json").is_file():
        results = json.loads((audit / "results.json").read_text())
        sizes = {}
        for f in audit.glob("*_0*.png"):
            with Image.open(f) as im:
                sizes[f.name] = im.size
        write_text(audit_page(results, results["model"]["spec"], results["prompt_source"], sizes,
                              command=results.get("command"), image_size=results["model"]["image_size"]),
                   audit / "report.html")
        print(audit / "report.html")
    for folder in sorted((RESULTS / "erase").glob("*/")):
        if (folder / "results.json").is_file():
            write_text(erase_page(json.loads((folder / "results.json").read_text()), folder), folder / "report.html")
            print(folder / "report.html")


if __name__ == "__main__":
    main()
