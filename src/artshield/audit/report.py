"""The audit's page: a summary table, and each flagged prompt's representative generation beside its
nearest training image (when the training images are known), most central clique first."""
from __future__ import annotations

import torch

from .. import report


def page(result, model: str, source: str, training: torch.Tensor | None = None,
         training_names: list[str] | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """(HTML, images to write next to it by file name) for an AuditResult."""
    files: dict[str, torch.Tensor] = {}
    truth = [r.get("memorised") for r in result.per_prompt]
    known = all(t is not None for t in truth)
    rows = []
    # flagged prompts, largest clique first
    order = sorted(result.flagged, key=lambda k: (-result.per_prompt[k]["clique_size"], k))
    for k in order:
        rec = result.per_prompt[k]
        files[f"flagged_{k:04d}.png"] = result.flagged[k]
        row = [rec["prompt"], report.Img(f"flagged_{k:04d}.png", f"clique {rec['clique_size']}")]
        if training is not None:
            files[f"nearest_{k:04d}.png"] = training[rec["nearest_training"]]
            row += [report.Img(f"nearest_{k:04d}.png", training_names[rec["nearest_training"]]),
                    rec["nearest_l2"], "yes" if rec["extracted"] else "no"]
        if known:
            row.append("yes" if truth[k] else "no")
        rows.append(row)
    header = ["prompt", "flagged generation"] + (["nearest training image", "L2", "extracted"]
                                                 if training is not None else []) \
        + (["planted duplicate"] if known else [])
    summary = []
    for name, block in (("detection", result.detection), ("extraction", result.extraction)):
        if block is None:
            continue
        for key, value in block.items():
            if not isinstance(value, (dict, list)):
                summary.append([name, key, value])
    html = report.page("artshield audit", report.para(f"Model {model}; prompts: {source}."),
                       report.heading("Summary"), report.table(["method", "figure", "value"], summary),
                       report.heading("Flagged prompts"),
                       report.table(header, rows) if rows else report.para("No prompt was flagged."))
    return html, files
