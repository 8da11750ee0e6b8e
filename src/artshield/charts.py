"""Charts for the HTML reports, as self-contained SVG: grouped bars with 95 % intervals and
reference lines, a ROC curve, and a histogram of scores by class. Every chart has axis titles and a
legend that wraps instead of being clipped; text is escaped."""
from __future__ import annotations

import html

import numpy as np

COLOURS = ["#4d4d4d", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22"]
FONT = 13
LEFT, RIGHT, TOP = 64, 16, 36


def _esc(text) -> str:
    return html.escape(str(text))


def _text_width(text: str, size: int = FONT) -> float:
    return 0.6 * size * len(text)


def _legend(items: list[tuple], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Legend entries wrapped into rows instead of clipped; returns the SVG parts and their height.
    Each item is (label, "box" or "line", colour, dash or None)."""
    parts, x, y = [], x0, y0
    for label, kind, colour, dash in items:
        w = 26 + _text_width(label) + 18
        if x + w > x0 + width and x > x0:
            x, y = x0, y + FONT + 10
        cy = y - FONT / 3
        if kind == "box":
            parts.append(f'<rect x="{x:.1f}" y="{cy - 6:.1f}" width="18" height="11" fill="{colour}"/>')
        else:
            parts.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{colour}" '
                         f'stroke-width="2.5"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        parts.append(f'<text x="{x + 24:.1f}" y="{y:.1f}">{_esc(label)}</text>')
        x += w
    return parts, y - y0 + FONT + 8


def _axes(width: float, height: float, plot_h: float, y_label: str, x_label: str, title: str,
          y_ticks: list[float], y_max: float, fmt=lambda v: f"{v:g}") -> list[str]:
    parts = [f'<text x="{width / 2:.1f}" y="{TOP - 14}" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#000"/>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{width - RIGHT}" y2="{TOP + plot_h}" stroke="#000"/>',
             f'<text transform="translate(16,{TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
             f'{_esc(y_label)}</text>']
    for t in y_ticks:
        y = TOP + plot_h * (1 - t / y_max)
        parts.append(f'<line x1="{LEFT - 4}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_esc(fmt(t))}</text>')
    parts.append(f'<text x="{(LEFT + width - RIGHT) / 2:.1f}" y="{TOP + plot_h + 44}" text-anchor="middle">'
                 f'{_esc(x_label)}</text>')
    return parts


def _svg(width: float, height: float, parts: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(label)}" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif" '
            f'font-size="{FONT}">' + "".join(parts) + "</svg>")


def grouped_bars(groups: list[str], series: list[str], values: dict, *, title: str, y_label: str, x_label: str,
                 lines: dict | None = None, line_styles: dict | None = None, y_max: float = 1.0,
                 y_ticks: list[float] | None = None) -> str:
    """One group of bars per entry of `groups`, one bar per entry of `series`.

    values[(group, series)] = {"mean", "low", "high"} (the interval is drawn as a whisker) or None.
    lines[(group, name)] = y: a horizontal line across the group (e.g. clean success and the "holds"
    bar), drawn in line_styles[name] = (colour, dash) and named in the legend."""
    lines, line_styles = lines or {}, line_styles or {}
    bar, gap, plot_h = 16, 30, 260
    group_w = len(series) * bar + gap
    width = max(720.0, LEFT + RIGHT + 20 + len(groups) * group_w)
    plot_w = width - LEFT - RIGHT
    items = [(s, "box", COLOURS[i % len(COLOURS)], None) for i, s in enumerate(series)]
    items += [(name, "line", c, d) for name, (c, d) in line_styles.items()]
    legend, legend_h = _legend(items, LEFT, TOP + plot_h + 70, plot_w)
    height = TOP + plot_h + 70 + legend_h
    parts = _axes(width, height, plot_h, y_label, x_label, title, y_ticks or [0, 0.25, 0.5, 0.75, 1.0], y_max)
    scale = plot_h / y_max
    x = LEFT + 14
    for g in groups:
        for i, s in enumerate(series):
            v = values.get((g, s))
            if not v or v.get("mean") is None:
                continue
            v = {**v, "high": y_max if v["high"] is None else min(v["high"], y_max)}     # unbounded: to the top
            h = scale * min(v["mean"], y_max)
            bx = x + i * bar
            parts.append(f'<rect x="{bx:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar - 3}" height="{h:.1f}" '
                         f'fill="{COLOURS[i % len(COLOURS)]}"><title>{_esc(g)}, {_esc(s)}: {v["mean"]:.2f} '
                         f'[{v["low"]:.2f}, {v["high"]:.2f}]</title></rect>')
            cx = bx + (bar - 3) / 2
            y_hi, y_lo = TOP + plot_h - scale * v["high"], TOP + plot_h - scale * v["low"]
            parts.append(f'<path d="M{cx:.1f},{y_hi:.1f}V{y_lo:.1f}M{cx - 3:.1f},{y_hi:.1f}h6M{cx - 3:.1f},'
                         f'{y_lo:.1f}h6" stroke="#000" fill="none"/>')
        for name, (colour, dash) in line_styles.items():
            y = lines.get((g, name))
            if y is not None:
                yy = TOP + plot_h - scale * y
                parts.append(f'<line x1="{x - 6:.1f}" x2="{x + len(series) * bar + 3:.1f}" y1="{yy:.1f}" '
                             f'y2="{yy:.1f}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}">'
                             f'<title>{_esc(g)}, {_esc(name)}: {y:.2f}</title></line>')
        parts.append(f'<text x="{x + len(series) * bar / 2:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
                     f'{_esc(g)}</text>')
        x += group_w
    return _svg(width, height, parts + legend, title)


def roc_points(scores, labels) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1); tied
    scores move both rates at once."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    pos, neg = max(1, int(y.sum())), max(1, int((~y).sum()))
    points, tp, fp = [(0.0, 0.0)], 0, 0
    for i in range(len(s)):
        tp += int(y[i])
        fp += int(not y[i])
        if i == len(s) - 1 or s[i + 1] != s[i]:
            points.append((fp / neg, tp / pos))
    return points


def roc_curve(scores, labels, *, title: str, auc: float | None = None) -> str:
    plot = 300.0
    width, height = LEFT + plot + RIGHT + 20, TOP + plot + 90
    parts = _axes(width, height, plot, "true positive rate", "false positive rate", title,
                  [0, 0.25, 0.5, 0.75, 1.0], 1.0)
    for t in (0.25, 0.5, 0.75, 1.0):
        x = LEFT + plot * t
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot + 18}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot}" x2="{LEFT + plot}" y2="{TOP}" stroke="#999" '
                 'stroke-dasharray="4,3"/>')
    pts = " ".join(f"{LEFT + plot * fx:.1f},{TOP + plot * (1 - ty):.1f}" for fx, ty in roc_points(scores, labels))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="{COLOURS[1]}" stroke-width="2.5"/>')
    label = "detector" + (f" (AUC {auc:.3f})" if auc is not None else "")
    legend, _ = _legend([(label, "line", COLOURS[1], None), ("chance", "line", "#999", "4,3")],
                        LEFT, TOP + plot + 70, plot)
    return _svg(width, height, parts + legend, title)


def histogram(groups: dict[str, list[float]], *, title: str, x_label: str, bins: int = 20,
              y_label: str = "prompts") -> str:
    """Overlaid histograms of one score for each named group (e.g. memorised / not memorised)."""
    everything = np.concatenate([np.asarray(v, float) for v in groups.values() if len(v)])
    lo, hi = float(everything.min()), float(everything.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(np.asarray(v, float), bins=edges)[0] for k, v in groups.items()}
    top = max(1, max(int(c.max()) for c in counts.values()))
    plot_w, plot_h = 560.0, 240.0
    width, height = LEFT + plot_w + RIGHT, TOP + plot_h + 100
    step = max(1, int(np.ceil(top / 5)))
    parts = _axes(width, height, plot_h, y_label, x_label, title, list(range(0, top + 1, step)), float(top))
    bw = plot_w / bins
    for j, (name, c) in enumerate(counts.items()):
        colour = COLOURS[(j + 1) % len(COLOURS)]
        for i, n in enumerate(c):
            if n:
                h = plot_h * n / top
                parts.append(f'<rect x="{LEFT + i * bw:.1f}" y="{TOP + plot_h - h:.1f}" width="{bw - 1:.1f}" '
                             f'height="{h:.1f}" fill="{colour}" fill-opacity="0.55"><title>{_esc(name)}: {n} in '
                             f'[{edges[i]:.3g}, {edges[i + 1]:.3g})</title></rect>')
    for t in np.linspace(lo, hi, 5):
        x = LEFT + plot_w * (t - lo) / (hi - lo)
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{t:.3g}</text>')
    legend, _ = _legend([(f"{k} ({len(v)})", "box", COLOURS[(j + 1) % len(COLOURS)], None)
                         for j, (k, v) in enumerate(groups.items())], LEFT, TOP + plot_h + 70, plot_w)
    return _svg(width, height, parts + legend, title)
