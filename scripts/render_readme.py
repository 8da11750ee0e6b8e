"""Rewrite README.md's result tables from the committed results.json files (artshield.bench.tables).

    python scripts/render_readme.py
"""
from pathlib import Path

from artshield.bench.tables import render

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    readme = ROOT / "README.md"
    text = readme.read_text()
    again = render(text, ROOT)
    readme.write_text(again)
    print("README.md: tables rendered" + ("" if again != text else " (no change)"))
