"""The erasure's page (templates/erase.html.j2): per concept, target accuracy before, after, after
each attack and in the worst case over them, with 95 % intervals, the other styles' accuracy and
FID, and the grid of target generations (rows: before, after, after each attack), enlarged."""
from __future__ import annotations

from pathlib import Path

from .. import report
from ..bench.stats import proportion_interval


def _interval(accuracy: float | None, n: int) -> dict | None:
    return None if accuracy is None else proportion_interval(accuracy, n).to_dict()


def render(results: dict, folder: str | Path) -> str:
    folder = Path(folder)
    size = int(results.get("model", {}).get("image_size", 32))
    evaluations = []
    for e in results.get("evaluations", []):
        if e.get("skipped"):
            evaluations.append(e)
            continue
        n = len(e["prompts"]["target"])
        grid = None
        if e.get("grid") and (folder / e["grid"]).is_file():
            from PIL import Image

            with Image.open(folder / e["grid"]) as im:
                w, h = im.size
            rows = ", ".join({"before": "before", "after": "after",
                              "recovery": "after the recovery attack"}.get(r, f"after {r}")
                             for r in e.get("grid_rows", ["before", "after", "recovery"]))
            grid = report.Figure(e["grid"], f"the first target prompts; rows: {rows}", w, h, tile=size)
        others = [(name, e["before"]["others_by_name"][name], e["after"]["others_by_name"].get(name, 0.0))
                  for name in sorted(e["before"]["others_by_name"])]
        attack_rows = [(name, _interval(a["target_accuracy"], n)) for name, a in e.get("attacks", {}).items()]
        evaluations.append({**e, "n_target": n, "grid_figure": grid, "others": others, "attack_rows": attack_rows,
                            "others_count": len(others),
                            "target_ci": {k: _interval(e[k]["target_accuracy"], n) if k in e else None
                                       for k in ("before", "after", "recovery")}})
    concepts = results["concept"] if isinstance(results["concept"], list) else [results["concept"]]
    trained = results.get("trained_parameters")
    return report.render("erase.html.j2", title=f"artshield erase: {results['method']}", command=None,
                         method=results["method"], concepts=concepts, model=results["model"]["spec"],
                         erase_seconds=results.get("erase_seconds", 0.0),
                         trained=f"{trained:,} parameters changed" if isinstance(trained, int) else "weights edited",
                         generate_with=results.get("generate_with", ""), evaluations=evaluations)
