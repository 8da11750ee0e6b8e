"""Small self-contained HTML pages: a title, paragraphs, tables whose cells may hold images.

Everything is escaped; images are referenced by relative paths, so a report folder can be moved
or zipped as a whole.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.4em 0.6em; text-align: center; vertical-align: middle; }
th { background: #f3f3f3; }
img { image-rendering: pixelated; max-width: 12em; min-width: 6em; }
.small { font-size: 0.85em; color: #555; }
.good { color: #0a6b2d; } .bad { color: #a01616; }
"""


@dataclass
class Img:
    src: str
    caption: str = ""


@dataclass
class Raw:
    """Trusted HTML made by this module's callers (never user text)."""
    html: str


def cell(value) -> str:
    if isinstance(value, Img):
        cap = f"<br><span class=small>{html.escape(value.caption)}</span>" if value.caption else ""
        return f'<img src="{html.escape(value.src)}" alt="{html.escape(value.caption)}">{cap}'
    if isinstance(value, Raw):
        return value.html
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, *blocks: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(blocks)}</body></html>\n")


def para(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def heading(text: str) -> str:
    return f"<h2>{html.escape(text)}</h2>"
