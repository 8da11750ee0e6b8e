"""Rewrite the result tables of README.md and of the documentation pages (docs/*.md) from the
committed results.json files (artshield.bench.tables).

    python scripts/render_readme.py
"""
from pathlib import Path

from artshield.bench.tables import render

ROOT = Path(__file__).resolve().parents[1]


def pages(root: Path = ROOT) -> list[Path]:
    """Every page whose tables are rendered: README.md and the site's pages."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


if __name__ == "__main__":
    for page in pages():
        text = page.read_text()
        again = render(text, ROOT)
        page.write_text(again)
        print(f"{page.relative_to(ROOT)}: tables rendered" + ("" if again != text else " (no change)"))
