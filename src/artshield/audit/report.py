"""The audit's page (templates/audit.html.j2): a summary table, the ROC curve and score histogram
of detection when labels are known, each flagged prompt's representative generation beside its
nearest training image (largest clique first), and every prompt sorted by its score."""
from __future__ import annotations

import torch

from .. import charts, report


def page(result, model: str, source: str, training: torch.Tensor | None = None,
         training_names: list[str] | None = None, command: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """(HTML, images to write next to it by file name) for an AuditResult."""
    files: dict[str, torch.Tensor] = {}
    for k, image in result.flagged.items():
        files[f"flagged_{k:04d}.png"] = image
        rec = result.per_prompt[k]
        if training is not None and "nearest_training" in rec:
            files[f"nearest_{k:04d}.png"] = training[rec["nearest_training"]]
    sizes = {name: (int(t.shape[-1]), int(t.shape[-2])) for name, t in files.items()}
    return render(result.to_dict(), model, source, sizes, training_names, command), files


def render(results: dict, model: str, source: str, sizes: dict[str, tuple[int, int]],
           training_names: list[str] | None = None, command: str | None = None, image_size: int = 32) -> str:
    """The page from results.json's fields (`per_prompt`, `detection`, `extraction`) and the sizes
    of the flagged_/nearest_ pictures written beside it."""
    per = results["per_prompt"]
    detection, extraction = results.get("detection"), results.get("extraction")
    known = all(r.get("memorised") is not None for r in per)
    roc = hist = None
    if detection and known and 0 < sum(bool(r["memorised"]) for r in per) < len(per):
        scores = [r["magnitude"] for r in per]
        labels = [bool(r["memorised"]) for r in per]
        roc = charts.roc_curve(scores, labels, title="Detection: ROC curve", auc=detection.get("auc"))
        hist = charts.histogram({"memorised": [s for s, m in zip(scores, labels) if m],
                                 "not memorised": [s for s, m in zip(scores, labels) if not m]},
                                title="Detection: scores by class", x_label="text-conditional noise magnitude")
    flagged = []
    for k in sorted((k for k, r in enumerate(per) if r.get("flagged")),
                    key=lambda k: (-per[k]["clique_size"], k)):
        r, gen, near = per[k], f"flagged_{k:04d}.png", f"nearest_{k:04d}.png"
        if gen not in sizes:
            continue
        nearest = None
        if near in sizes:
            name = training_names[r["nearest_training"]] if training_names else f"training image {r['nearest_training']}"
            nearest = report.Figure(near, f"nearest training image: {name}", *sizes[near])
        flagged.append({**r, "generation": report.Figure(gen, "representative generation", *sizes[gen]),
                        "nearest": nearest, "memorised": r.get("memorised")})
    sort_key = "magnitude" if detection else "clique size"
    prompts = sorted(per, key=lambda r: -(r.get("magnitude", 0) if detection else r.get("clique_size", 0)))
    return report.render("audit.html.j2", title="artshield audit", command=command, model=model, source=source,
                         n=len(per), known=known, detection=detection, extraction=extraction,
                         anisotropy=results.get("anisotropy"), consensus=results.get("consensus"), roc=roc, hist=hist,
                         flagged=flagged, flagged_count=sum(bool(r.get("flagged")) for r in per), prompts=prompts,
                         sort_key=sort_key, any_match=any("extracted" in r for r in per), image_size=image_size)


def dataset_page(results: dict) -> str:
    """The dataset-inference page from its results.json: the verdict in words, the test's figures,
    the evidence (each image's out-of-fold score by set, the shuffled labellings' AUCs beside the
    real one) and every feature's effect size."""
    scores = charts.histogram({"suspect (--dataset)": results["scores"]["suspect"],
                               "held-out (--heldout)": results["scores"]["heldout"]},
                              title="Each image's score from a model that never saw it (higher: more like the suspect "
                                    "set)", x_label="out-of-fold score (log-odds)", y_label="images")
    null = charts.histogram({"shuffled labels": results["null_auc"], "your two sets": [results["auc"]]},
                            title="How separable the two sets are, against shuffled labels", x_label="AUC",
                            y_label="labellings", bins=30)
    features = sorted(results["features"], key=lambda f: f["effect_size"])
    return report.render("dataset.html.j2", title="artshield audit: dataset inference", r=results,
                         scores_chart=scores, null_chart=null, features=features)
