"""report.html for a protection experiment: the verdict table, bars, and image grids side by side."""
from __future__ import annotations

import html

from .. import report
from .stats import MIN_CLEAN_SUCCESS


def _fmt(v) -> str:
    return "" if v is None else f"{v:.2f}"


def _interval(ci: dict | None) -> str:
    return "" if ci is None else f"{ci['mean']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]"


def _ci(row: dict, key: str) -> str:
    """A cell's success with its 95 % interval, e.g. "0.62 [0.44, 0.78]"."""
    ci = row.get("intervals", {}).get(key)
    return _fmt(row.get(key)) if ci is None else _interval(ci)


def bars_svg(rows: list[dict], purifiers: list[str]) -> str:
    """One group of bars per protection and budget: mimicry success without purification and with
    each purifier, each with its 95 % interval; a dashed line marks clean mimicry."""
    keys = ["none", *purifiers]
    colours = ["#555", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    bar, gap, height = 14, 24, 160
    width = len(rows) * (len(keys) * bar + gap) + 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 70}" font-size="10">',
             f'<line x1="40" y1="10" x2="40" y2="{height + 10}" stroke="#000"/>']
    for tick in (0, 0.5, 1.0):
        y = 10 + height * (1 - tick)
        parts.append(f'<text x="4" y="{y + 3}">{tick:.1f}</text><line x1="38" x2="{width}" y1="{y}" y2="{y}" '
                     'stroke="#ddd"/>')
    x = 50
    for row in rows:
        if row.get("clean") is not None:
            y = 10 + height * (1 - row["clean"])
            parts.append(f'<line x1="{x - 4}" x2="{x + len(keys) * bar + 4}" y1="{y}" y2="{y}" stroke="#000" '
                         'stroke-dasharray="3,2"/>')
        for i, k in enumerate(keys):
            v = row.get(k)
            if v is None:
                continue
            h = height * v
            parts.append(f'<rect x="{x + i * bar}" y="{10 + height - h}" width="{bar - 2}" height="{h}" '
                         f'fill="{colours[i % len(colours)]}"><title>{html.escape(k)}: {v:.2f}</title></rect>')
            ci = row.get("intervals", {}).get(k)
            if ci is not None:          # the 95 % interval as a whisker
                cx = x + i * bar + (bar - 2) / 2
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{10 + height * (1 - ci["high"])}" '
                             f'y2="{10 + height * (1 - ci["low"])}" stroke="#000"/>')
        label = f"{row['protection']}@{row['budget']:g}"
        parts.append(f'<text x="{x}" y="{height + 26}">{html.escape(label)}</text>')
        x += len(keys) * bar + gap
    for i, k in enumerate(keys):
        parts.append(f'<rect x="{50 + i * 110}" y="{height + 40}" width="10" height="10" fill="{colours[i % len(colours)]}"/>'
                     f'<text x="{64 + i * 110}" y="{height + 49}">{html.escape(k)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def verdict_html(row: dict) -> str:
    text = row["verdict"]
    css = "good" if text == "holds" else "small" if text.startswith("inconclusive") else "bad"
    return f'<span class="{css}">{html.escape(text)}</span>'


def render(results: dict, rows: list[dict]) -> str:
    purifiers = results["preset"]["purifiers"]
    header = ["artist", "mimicry", "protection", "budget", "clean", "no purifier", *purifiers, "worst case",
              "verdict"]
    table_rows = []
    for r in rows:
        verdict = report.Raw(verdict_html(r))
        table_rows.append([r["artist"], r["mimicry"], r["protection"], f"{r['budget']:g}", _ci(r, "clean"),
                           _ci(r, "none"), *[_ci(r, q) for q in purifiers], _ci(r, r["worst_purifier"]), verdict])
    cells = results["cells"]
    grid_rows = [[c["condition"], c["mimicry"], f"{c['mimicry_success']:.2f}", report.Img(c["inputs"]),
                  report.Img(c["grid"])] for c in cells]
    detail = [[c["condition"], c["mimicry"], f"{c['mimicry_success']:.3f}", f"{c['domain_fid']:.2f}",
               f"{c['precision']:.2f}", f"{c['recall']:.2f}", _fmt(c.get("protection_psnr_db")),
               _fmt(c.get("protection_lpips")), _fmt(c.get("purifier_psnr_db")), f"{c['seconds']:.0f}"] for c in cells]
    return report.page(
        f"artshield bench: {results['preset_name']}",
        report.para(f"Model {results['model']['spec']}. Mimicry success is the fraction of generations (the same "
                    f"prompts and seeds in every row) that the judge names as the artist's style; the mimic "
                    "fine-tunes on the images of each condition with the same captions and settings. A protection "
                    "is only as strong as the purifier that breaks it best. Every figure carries its 95 % bootstrap "
                    "interval (over training seeds, then generations). Verdicts follow from the intervals alone: "
                    "'holds' when the upper bound of every cell (no purifier and each purifier) is at most half "
                    "of clean success's lower bound; 'does not protect' when the unpurified cell's lower bound "
                    "is above that bar; 'broken by P' when the unpurified cell holds and P's lower bound is "
                    "above the bar; otherwise 'inconclusive', as it is when clean success's lower bound is below "
                    f"{MIN_CLEAN_SUCCESS}."),
        report.heading("Verdict"), report.table(header, table_rows),
        report.heading("Controls: the clean images through each purifier"),
        report.para("What a purifier does to mimicry by itself, without any protection: a purifier that "
                    "lowers clean mimicry cannot be said to break a protection by raising it."),
        report.table(["artist", "mimicry", "purifier", "clean", "clean + purifier"],
                     [[c["artist"], c["mimicry"], c["purifier"], _interval(c["clean"]), _interval(c["purified"])]
                      for c in results.get("controls", [])]),
        report.heading("Mimicry success by condition"), bars_svg(rows, purifiers),
        report.heading("What the mimic generated"),
        report.para("Rows: conditions; columns: the first prompts, same seeds in every row. 'training images' "
                    "shows four of the images the mimic was given."),
        report.table(["condition", "mimicry", "success", "training images", "generations"], grid_rows),
        report.heading("All figures"),
        report.table(["condition", "mimicry", "success", "domain FID", "precision", "recall", "protection PSNR",
                      "protection LPIPS", "purifier PSNR", "seconds"], detail),
        report.para(f"Command: {results['command']}. Seconds: {results['seconds']}."))
