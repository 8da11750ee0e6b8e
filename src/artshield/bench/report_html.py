"""report.html for a protection experiment (templates/bench.html.j2): the verdict table with
intervals, a chart with the clean line and the "holds" bar, the controls, and what the mimic
learnt from and generated, enlarged so it can be judged."""
from __future__ import annotations

from pathlib import Path

from .. import charts, report
from .stats import BAR, MIN_CLEAN_SUCCESS


def chart(rows: list[dict], purifiers: list[str]) -> str:
    """Relative mimicry by protection: a bar per purifier (and none) with its Holm-adjusted
    interval (unbounded ones drawn to the top), against clean (1) and the "holds" bar (0.5)."""
    groups, values, lines = [], {}, {}
    for r in rows:
        g = f"{r['protection']} {r['budget']:g}" + (f" ({r['artist']})" if len({x['artist'] for x in rows}) > 1 else "")
        groups.append(g)
        for key in ["none", *purifiers]:
            values[(g, "no purifier" if key == "none" else key)] = r["relative"].get(key)
        lines[(g, "as much as clean (1)")] = 1.0
        lines[(g, f"holds bar ({BAR:g})")] = BAR
    return charts.grouped_bars(groups, ["no purifier", *purifiers], values,
                               title="Relative mimicry by condition (Holm-adjusted intervals)",
                               y_label="relative mimicry (protected / clean)", x_label="protection and budget (/255)",
                               lines=lines, y_max=2.0, y_ticks=[0, 0.5, 1.0, 1.5, 2.0],
                               line_styles={"as much as clean (1)": ("#000", "7,4"),
                                            f"holds bar ({BAR:g})": ("#a01616", "2,3")})


def _figure(folder: Path | None, src: str | None, label: str, tile: int):
    if not src or folder is None or not (folder / src).is_file():
        return None
    from PIL import Image

    with Image.open(folder / src) as im:
        w, h = im.size
    return report.Figure(src, label, w, h, tile=tile)


def render(results: dict, rows: list[dict], folder: str | Path | None = None) -> str:
    """The page; `folder` is where the cells' pictures lie (for their sizes)."""
    folder = Path(folder) if folder is not None else None
    purifiers = results["preset"].get("purifiers", [])
    size = int(results["model"].get("image_size", 32))
    cells = []
    for c in results["cells"]:
        key = Path(c.get("grid", "")).stem or c["condition"]
        cells.append({**c, "key": key,
                      "inputs_figure": _figure(folder, c.get("inputs"), "training images (the first four)", 64),
                      "grid_figure": _figure(folder, c.get("grid"), "generations (the first eight prompts)", size)})

    def fmt(v, digits=2):
        return "" if v is None else f"{v:.{digits}f}"

    return report.render("bench.html.j2", title=f"artshield bench: {results['preset_name']}",
                         command=results.get("command"), model=results["model"]["spec"], image_size=size,
                         min_clean=MIN_CLEAN_SUCCESS, bar=BAR, rows=rows, purifiers=purifiers, conditions=["none", *purifiers],
                         analysis=results.get("analysis") or {},
                         chart=chart(rows, purifiers) if rows else "", controls=results.get("controls", []),
                         cells=cells, planned=results.get("cells_planned"), failed=results.get("failed") or [],
                         pruned=results.get("pruned") or [],
                         pruned_keys={(c["cell"]["protection"], float(c["cell"]["budget"]), c["cell"]["purifier"])
                                      for c in results.get("pruned") or []},
                         elsewhere=results.get("in_progress_elsewhere") or [], seconds=results.get("seconds"), fmt=fmt,
                         judge_check=results.get("judge_check"), verdict_text=results.get("verdict", ""))
