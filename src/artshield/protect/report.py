"""protect-report.html: the user's own images before and after, with the amplified change.

Written beside the protected copies from results.json's records; the originals are shown from
where they lie (a relative link) and never copied or modified; the difference pictures go to
protect-report/ next to the page."""
from __future__ import annotations

import os
from pathlib import Path

from .. import report

PAGE, FOLDER = "protect-report.html", "protect-report"


def write_page(out: str | Path, results: dict) -> tuple[Path, dict[str, Path]]:
    """Write the page for results.json's `images` (protected ones and those reused from an earlier
    run); returns its path and, by output name, the amplified-change picture it wrote."""
    from ..io import load_image, write_image, write_text
    from ..metrics.image import BRISQUE_MIN_SIDE, amplified_change, brisque

    out = Path(out)
    config = results.get("config", {})
    budget = float(config.get("budget") or max([r.get("budget", 0) for r in results.get("images", [])] + [1]))
    amplify = 255 / max(budget, 1e-6)
    shown, differences = [], {}
    for index, rec in enumerate(results.get("images", [])):
        if "output" not in rec or not (out / rec["output"]).is_file():
            continue
        protected = load_image(out / rec["output"]).pixels
        w, h = int(protected.shape[-1]), int(protected.shape[-2])
        item = {**rec, "name": rec["output"], "size": [w, h], "notes": rec.get("notes", []),
                "protected": report.Figure(rec["output"], "protected", w, h, min_tile=256),
                "original": None, "difference": None}
        for key in ("psnr_db", "ssim", "lpips", "linf_255"):
            item.setdefault(key, float("nan"))
        item["brisque"] = {"protected": brisque(protected), "original": None, "small": min(w, h) < BRISQUE_MIN_SIDE}
        source = Path(rec["file"])
        if source.is_file():
            original = load_image(source).pixels
            try:
                link = Path(os.path.relpath(source.resolve(), out.resolve())).as_posix()
            except ValueError:                # another drive (Windows): an absolute link
                link = source.resolve().as_uri()
            item["original"] = report.Figure(link, "original (unchanged)", w, h, min_tile=256)
            item["brisque"]["original"] = brisque(original)
            if original.shape == protected.shape:
                diff = amplified_change(original, protected, budget)
                name = f"{FOLDER}/{index:04d}-difference.png"
                write_image(diff.expand(3, -1, -1) if diff.shape[0] == 1 else diff[:3], out / name)
                differences[rec["output"]] = out / name
                item["difference"] = report.Figure(name, f"|change| x{amplify:.0f} (white: the full budget)", w, h,
                                                   min_tile=256)
        shown.append(item)
    html = report.render("protect.html.j2", title=f"artshield protect: {results.get('method', '')}", command=None,
                         method=results.get("method", ""), budget=budget, steps=config.get("steps"),
                         model=results.get("model", {}).get("spec", ""), amplify=amplify, images=shown,
                         failed=results.get("failed") or [], brisque_min_side=BRISQUE_MIN_SIDE,
                         has_brisque=any(i["brisque"]["protected"] is not None for i in shown))
    return write_text(html, out / PAGE), differences
