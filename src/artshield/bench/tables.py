"""README's result tables, rendered from a committed bench run's results.json (and nothing else).

    python scripts/render_readme.py          # rewrites every table between its markers in README.md

A table sits in README.md between `<!-- table: NAME -->` and `<!-- end table -->`; NAME is
`FOLDER:KIND` with FOLDER under docs/results/ and KIND one of `verdicts` or `controls` (read from
FOLDER/results.json), or `FILE.json:KIND` with FILE.json under docs/results/ and KIND one of
`samplers` (bench.tuning sampling), `settings` (bench.tuning mimic) or `cellcost` (bench.cellcost).
tests/test_repo.py checks that README's tables equal this rendering, so no figure is typed by hand.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..names import ERASE_ATTACKS

MARK = re.compile(r"(<!-- table: (?P<name>[\w./-]+):(?P<kind>\w+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)
NAMES = {"advdm": "AdvDM", "mist": "Mist", "sds": "SDS", "sds-minus": "SDS-", "photoguard": "PhotoGuard",
         "glaze": "Glaze", "aspl": "ASPL", "ace": "ACE (Mist-v2)", "metacloak": "MetaCloak", "robust": "robust", "advdm-eot": "AdvDM + EOT",
         "mist-eot": "Mist + EOT"}


def _ci(d: dict | None, digits: int = 2) -> str:
    if not d:
        return ""
    mean = "inf" if d["mean"] is None else f"{d['mean']:.{digits}f}"
    low = "-inf" if d["low"] is None else f"{d['low']:.{digits}f}"
    high = "inf" if d["high"] is None else f"{d['high']:.{digits}f}"
    return f"{mean} [{low}, {high}]"


def _several(results: dict, present: set) -> bool:
    """Whether a run's tables need artist and mimic columns: it has, or its preset plans, more than one."""
    preset = results.get("preset") or {}
    return len(present) > 1 or len(preset.get("artists", [])) > 1 or len(preset.get("mimicry", [])) > 1


def verdicts(results: dict) -> str:
    """One row per protection and budget; with more than one artist or mimic in the run, one per
    artist, mimic, protection and budget, with those two columns first."""
    many = _several(results, {(r["artist"], r["mimicry"]) for r in results["summary"]})
    lead = "| artist | mimic " if many else ""
    psnr: dict[tuple, list[float]] = {}           # the budget as PSNR: the protected sets' mean, every seed
    for c in results["cells"]:
        if c["protection"] != "none" and c["purifier"] == "none" and "protection_psnr_db" in c:
            psnr.setdefault((c["artist"], c["protection"], c["budget"]), []).append(c["protection_psnr_db"])
    rows = [lead + "| protection | budget | PSNR to the originals | relative mimicry, Holm-adjusted | same, 95 % | "
            "success points vs clean, 95 % | verdict | FID difference (quality) |",
            "|---|---" * many + "|---|---|---|---|---|---|---|---|"]
    order = list(NAMES)
    for r in sorted(results["summary"], key=lambda r: (r["artist"], r["mimicry"], order.index(r["protection"])
                                                      if r["protection"] in order else 99, r["budget"])):
        q = r["quality"].get("none")
        head = f"| {r['artist']} | {r['mimicry']} " if many else ""
        db = psnr.get((r["artist"], r["protection"], r["budget"]))
        rows.append(head + f"| {NAMES.get(r['protection'], r['protection'])} | {r['budget']:g}/255 | "
                    f"{f'{np.mean(db):.1f} dB' if db else ''} | {_ci(r['relative']['none'])} | "
                    f"{_ci(r['relative_unadjusted']['none'])} | {_ci(r['difference']['none'])} | {r['verdict']} | "
                    f"{_ci(q['fid_difference'], 1) + ', ' + q['verdict'] if q else 'not measured'} |")
    return "\n".join(rows) + "\n"


def purified(results: dict) -> str:
    """Every row's relative mimicry unpurified and after each purifier run on it (against that
    purifier's own control), one line each: the view of a run whose question is a purifier."""
    rows = ["| artist | mimic | protection | purifier | relative mimicry, Holm-adjusted | same, 95 % | row's verdict |",
            "|---|---|---|---|---|---|---|"]
    for r in sorted(results["summary"], key=lambda r: (r["artist"], r["mimicry"], r["protection"], r["budget"])):
        for purifier in sorted(r["relative"], key=lambda p: (p != "none", p)):
            rows.append(f"| {r['artist']} | {r['mimicry']} | {NAMES.get(r['protection'], r['protection'])} "
                        f"{r['budget']:g}/255 | {purifier} | {_ci(r['relative'][purifier])} | "
                        f"{_ci(r['relative_unadjusted'].get(purifier))} | {r['verdict']} |")
    return "\n".join(rows) + "\n"


def controls(results: dict) -> str:
    """The purifiers on clean images; per artist and mimic (two more columns) when the run has several."""
    psnr: dict[tuple, list[float]] = {}
    for c in results["cells"]:
        if c["protection"] == "none" and c["purifier"] != "none" and "purifier_psnr_db" in c:
            psnr.setdefault((c["artist"], c["purifier"]), []).append(c["purifier_psnr_db"])
    groups: dict[tuple, list[dict]] = {}
    for c in results["controls"]:
        groups.setdefault((c["artist"], c["mimicry"]), []).append(c)
    many = _several(results, set(groups))
    rows = [("| artist | mimic " if many else "") + "| purifier (on clean images) | PSNR to clean | mimicry success, "
            "95 % | difference vs clean, Holm-adjusted | effect |", "|---|---" * many + "|---|---|---|---|---|"]
    for (artist, mimic), entries in sorted(groups.items()):
        head = f"| {artist} | {mimic} " if many else ""
        rows.append(head + f"| none | | {_ci(entries[0]['clean'])} | | |")
        for c in sorted(entries, key=lambda c: -c["purified"]["mean"]):
            db = psnr.get((artist, c["purifier"]))
            rows.append(head + f"| {c['purifier']} | {f'{np.mean(db):.1f} dB' if db else ''} | {_ci(c['purified'])} | "
                        f"{_ci(c.get('difference'))} | {c.get('effect', '')} |")
    return "\n".join(rows) + "\n"


def samplers(report: dict) -> str:
    rows = ["| sampler | success on the tuning split | difference vs DDIM 30, 95 % | labelled alike | speed-up |",
            "|---|---|---|---|---|"]
    for name, r in report["candidates"].items():
        rows.append(f"| {name} | {r['success']:.3f} | {_ci(r['difference_vs_ddim_30'], 3)} | "
                    f"{r['labelled_alike']:.2f} | {r['speed_up']:.2f}x |")
    return "\n".join(rows) + "\n"


def _spread(v: dict | None) -> str:
    return f"{v['min']:.2f} / {v['mean']:.2f} / {v['max']:.2f} ({v['seeds']})" if v else ""


def _options(options: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((options or {}).items()))


def settings(report: dict) -> str:
    control = {r["artist"] for r in report.get("rows", []) if r.get("known_style")}
    shown = {a for e in report["settings"] for a in e["success"]}
    artists = sorted(shown - control) + sorted(shown & control)
    rows = ["| mimic | steps | rate | batch | other options | "
            + " | ".join(f"{a}{' (a style mini learnt: control)' if a in control else ''}: min / mean / max over seeds"
                         for a in artists)
            + " | training s (median) | usable |", "|---|---|---|---|---|" + "---|" * len(artists) + "---|---|"]

    def identity(e):
        return e["mimic"], e["steps"], e["lr"], e["batch_size"], _options(e.get("options"))

    chosen = {identity(c) for c in report["chosen"].values()}
    for e in report["settings"]:
        cells = [_spread(e["success"].get(a)) for a in artists]
        mark = "**chosen**" if identity(e) in chosen else \
            ("yes" if e["usable"] else "no" if e["complete"] else "incomplete")
        rows.append(f"| {e['mimic']} | {e['steps']} | {e['lr']:g} | {e['batch_size']} | {_options(e.get('options'))} | "
                    + " | ".join(cells) + f" | {e['train_seconds']:.0f} | {mark} |")
    for a, b in sorted(report.get("known_styles", {}).items()):
        rows.append(f"\nControl {a}: the base model on its {b['prompts']} probe prompts reaches {b['named']:.2f} "
                    f"with the word \"{a}\" and {b['trigger']:.2f} with the untrained trigger.")
    return "\n".join(rows) + "\n"


def cellcost(report: dict) -> str:
    old, new = report["old"], report["new"]
    rows = [f"| phase (median seconds per cell) | {old} | {new} |", "|---|---|---|"]
    for phase in report["median_phase_seconds"]["old"]:
        rows.append(f"| {phase} | {report['median_phase_seconds']['old'][phase]:.1f} | "
                    f"{report['median_phase_seconds']['new'][phase]:.1f} |")
    rows.append(f"| **cell** | **{report['median_cell_seconds']['old']:.1f}** | "
                f"**{report['median_cell_seconds']['new']:.1f}** ({report['speed_up']:.2f}x) |")
    for a in report["agreement"]:
        rows.append(f"| mimicry success, {a['condition']} (new - old, 95 %) | {a['old']:.3f} | {a['new']:.3f} "
                    f"({_ci(a['new_minus_old'], 3)}) |")
    for e in report.get("effect_agreement", []):
        rows.append(f"| effect of {e['condition']}: success minus clean's (new - old, 95 %) | {e['old_effect']:+.3f} | "
                    f"{e['new_effect']:+.3f} ({_ci(e['new_minus_old'], 3)}) |")
    return "\n".join(rows) + "\n"


def claims(report: dict) -> str:
    from .claims import MIMIC_NAMES, evaluate

    rows = ["| claim | cells that test it | relative mimicry, Holm-adjusted (per cell) | verdict on mini |",
            "|---|---|---|---|"]
    for c in evaluate(report):
        cells = ", ".join(dict.fromkeys(f"{r['protection']}@{r['budget']:g}" for r in c["rows"])) or "none in this run"
        if c["purifier"] != "none" and c["rows"]:
            cells += f" + {c['purifier']}"
        effects = "<br>".join(f"{MIMIC_NAMES.get(r['mimicry'], r['mimicry'])}, {r['artist']}, {r['protection']}: "
                              + (_ci(r["interval"]) if r["interval"] else "no interval") + f" ({r['reading']})"
                              for r in c["rows"]) or "not measured"
        missing = ", ".join(MIMIC_NAMES.get(m, m) for m in c["not_measured"]) if c["rows"] else ""
        rows.append(f"| {c['text']} ({c['source']}) | {cells} | {effects} | **{c['verdict']}**"
                    + (f" (not measured: {missing})" if missing else "") + " |")
    return "\n".join(rows) + "\n"


def ablation(report: dict) -> str:
    protected = f"{report['protection']}@{report['budget']:g}"
    rows = [f"| variant ({report['mimic']}, {report['artist']}) | clean success | {protected} success | "
            f"relative mimicry, 95 % | seeds |", "|---|---|---|---|---|"]
    for v in report["variants"]:
        name = _options({k: x for k, x in v["variant"].items()})
        rel = v.get("relative")
        rows.append(f"| {name} | {v['success'].get('clean', float('nan')):.3f} | "
                    f"{v['success'].get(protected, float('nan')):.3f} | {_ci(rel) if rel else ''} | "
                    f"{len(v.get('seeds', []))} |")
    return "\n".join(rows) + "\n"


def discrimination(report: dict) -> str:
    rows = [f"| artist ({report['judge']} judge) | images | AUC, 95 % | own labelled own | other styles labelled "
            f"own (upper 95 %) | colour decoys labelled own (upper 95 %) | can it tell? |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        kind = " (held out)" if r["held_out"] else ""
        if r.get("auc") is None:
            rows.append(f"| {r['artist']}{kind} | {r['artist_images']} | | | | | no: {r['why']} |")
            continue
        f, d = r["fpr_other_styles"], r["fpr_decoys"]
        rows.append(f"| {r['artist']}{kind} | {r['artist_images']} | {r['auc']:.2f} [{r['auc_interval'][0]:.2f}, "
                    f"{r['auc_interval'][1]:.2f}] | {r['tpr']:.2f} | {f['rate']:.3f} ({f['interval'][1]:.3f}) | "
                    f"{d['rate']:.3f} ({d['interval'][1]:.3f}) | {'yes' if r['can_tell'] else 'no'} |")
    return "\n".join(rows) + "\n"


def adaptive(report: dict) -> str:
    """The adaptive denoiser's PSNRs to the originals (bench/adaptive.py's results.json)."""
    rows = [f"| icons ({report['protection']}@{report['budget']:g}) | protected | protected, denoised | "
            f"clean, denoised |", "|---|---|---|---|"]
    for split, name in (("train", "training pairs"), ("validation", "validation pairs (not trained on)")):
        r = report[split]
        rows.append(f"| {r['images']} {name} | {r['protected_psnr_db']:.2f} dB | {r['denoised_protected_psnr_db']:.2f} dB"
                    f" | {r['denoised_clean_psnr_db']:.2f} dB |")
    return "\n".join(rows) + "\n"


def mutation(summary: dict) -> str:
    """Mutation scores per module (scripts/mutation.py's summary.json); the goal is 85 %."""
    rows = ["| module | mutants | killed / counted | score | left | tests run | minutes |", "|---|---|---|---|---|---|---|"]
    for module, r in summary["modules"].items():
        score = "" if r["score"] is None else f"{100 * r['score']:.1f} %"
        rows.append(f"| `{module}` | {r['mutants']} | {r['killed']} / {r['counted']} | {score} | {r['left']} | "
                    f"{_selection(r['tests'])} | {r['seconds'] / 60:.0f} |")
    return "\n".join(rows) + "\n"


def _selection(tests: list[str]) -> str:
    """The pytest arguments a module's mutants ran: the files, and a -k expression quoted."""
    words, rest = [], iter(tests)
    for t in rest:
        words.append(f'-k "{next(rest, "")}"' if t == "-k" else t.removeprefix("tests/"))
    return ", ".join(words)


def audit(report: dict) -> str:
    """One memorisation-audit run (artshield audit's results.json with ground truth): extraction's
    precision and recall, the near-copy rule's, the clique rule's alone, and detection's AUC and
    true-positive rate at 1 % false positives with their intervals, computed from the run's
    per-prompt scores."""
    from ..audit.detect import tpr_at_fpr

    per, ex = report["per_prompt"], report["extraction"]
    low = tpr_at_fpr([p["magnitude"] for p in per], [p["memorised"] for p in per], 0.01)
    negatives = sum(not p["memorised"] for p in per)
    alone, near = ex["clique_rule_only"], ex.get("near_copy_rule")
    near = f"{near['precision']:.2f} / {near['recall']:.2f}" if near else "not measured"
    return ("| controls | delta (clique / match) | extraction precision / recall | near copies precision / recall | "
            "clique rule alone | detection AUC [95 %] | TPR at 1 % FPR [95 %] |\n|---|---|---|---|---|---|---|\n"
            f"| {negatives} {'novel captions' if 'no training image' in report['prompt_source'] else 'training captions'}"
            f" | {ex['config']['threshold']:.3f} / {ex['config']['match_threshold']:.3f} | {ex['precision']:.2f} / "
            f"{ex['recall']:.2f} | {near} | {alone['precision']:.2f} / {alone['recall']:.2f} | {low['auc']:.3f} "
            f"[{low['auc_interval'][0]:.3f}, {low['auc_interval'][1]:.3f}] | {low['tpr']:.3f} [{low['tpr_interval'][0]:.3f}, "
            f"{low['tpr_interval'][1]:.3f}] |\n")


def detectors(report: dict) -> str:
    """Memorisation detectors side by side from one audit run (artshield audit --method
    detect,anisotropy,consensus): AUC and TPR at 1 % FPR with 95 % intervals from the per-prompt scores, and
    seconds per prompt."""
    from ..audit.detect import tpr_at_fpr

    per = report["per_prompt"]
    truth = [p["memorised"] for p in per]
    rows = ["| detector | AUC [95 %] | TPR at 1 % FPR [95 %] | seconds per prompt |", "|---|---|---|---|"]
    det, ani = report.get("detection"), report.get("anisotropy")
    cases = []
    if det:
        cases.append((f"Wen et al.: text-conditional magnitude ({det['generations']} draws, step {det['steps']})",
                      "magnitude", det["seconds_per_prompt"]))
    if ani:
        w = ani["config"]
        cases += [(f"anisotropy: {w['norm_weight']:g} x norm + {w['cosine_weight']:g} x alignment (the authors' SD 1.x "
                   f"weights, {w['generations']} draws)", "anisotropy", ani["seconds_per_prompt"]),
                  ("anisotropy's norm alone", "anisotropy_norm", None),
                  ("anisotropy's alignment alone", "anisotropy_cosine", None)]
    con = report.get("consensus")
    if con:
        cases.append((f"seed consensus of the predicted image ({con['config']['generations']} seeds, step {con['step']})",
                       "consensus", con["seconds_per_prompt"]))
    for name, key, seconds in cases:
        r = tpr_at_fpr([p[key] for p in per], truth, 0.01)
        rows.append(f"| {name} | {r['auc']:.3f} [{r['auc_interval'][0]:.3f}, {r['auc_interval'][1]:.3f}] | {r['tpr']:.3f} "
                    f"[{r['tpr_interval'][0]:.3f}, {r['tpr_interval'][1]:.3f}] | "
                    f"{'' if seconds is None else f'{seconds:.3f}'} |")
    return "\n".join(rows) + "\n"


def dataset(report: dict) -> str:
    """Dataset inference on mini (scripts/audit_dataset.py's results.json): per artist and model, the
    p-value and AUC of SUSPECT against HELD-OUT, and the false-positive rates over the null splits."""
    rows = ["| artist | model | images per set | p-value | AUC | verdict at 0.01 | false positives over null splits "
            "(at 0.05 / 0.01) |", "|---|---|---|---|---|---|---|"]
    from ..audit.dataset import DRAWS

    records = [r for r in report["records"] if "artist" in r]
    order = {m: k for k, m in enumerate(["base", "lora", "dreambooth", "hypernetwork", "textual-inversion"])}
    for r in sorted(records, key=lambda r: (r["artist"], order.get(r.get("mimic", "base"), 9),
                                            r.get("draws", DRAWS), bool(r.get("calibrated_by_base")))):
        null = r.get("null") or r.get("null_never_trained")
        rates = null["false_positive_rate"]
        model = "mini" if "mimic" not in r else f"mini + {r['mimic']} ({r['steps']} steps)"
        model += ", calibrated by mini" if r.get("calibrated_by_base") else ""
        model += f", {r['draws']} noise draws" if r.get("draws", DRAWS) != DRAWS else ""
        found = r["p_value"] <= 0.01
        word = ("**found**" if found else "not found") if "mimic" in r else ("accused" if found else "not accused")
        rows.append(f"| {r['artist']} | {model} | {r['images_per_set']} | {r['p_value']:.3f} | {r['auc']:.3f} | {word} | "
                    f"{rates['0.05']:.2f} / {rates['0.01']:.2f} of {null['splits']} |")
    if records:
        from ..metrics.judges import _wilson

        p = np.concatenate([(r.get("null") or r.get("null_never_trained"))["p_values"] for r in records])
        cells = []
        for alpha in (0.05, 0.01):
            k = int((p <= alpha).sum())
            low, high = _wilson(k, len(p))
            cells.append(f"{k / len(p):.3f} [{low:.3f}, {high:.3f}]")
        rows.append(f"| all | every null split above, pooled | | | | | {cells[0]} / {cells[1]} of {len(p)} |")
    unlike = [r for r in report["records"] if "theme" in r]
    if unlike:
        rows += ["", "| training theme (SUSPECT: mini's training icons; HELD-OUT: other subjects) | p-value | AUC |",
                 "|---|---|---|"]
        rows += [f"| {r['theme']} | {r['p_value']:.3f} | {r['auc']:.3f} |" for r in unlike]
    return "\n".join(rows) + "\n"


def mitigation(report: dict) -> str:
    """Wen et al.'s mitigation on mini (scripts/mitigation.py's results.json): extractions of the planted
    captions without it and with it at each target (by the strict delta, and as near copies), the
    target chosen on half the captions and counted on the other, and what each target changes on
    ordinary captions, with paired intervals."""
    from ..metrics.judges import _wilson

    ex, q = report["extraction"], report["ordinary_captions"]
    n, total = ex["captions"], ex["captions"] * ex["generations"]

    def share(k: int | None, of: int) -> str:
        if k is None:
            return "not measured"
        low, high = _wilson(k, of)
        return f"{k} of {of} [{low:.2f}, {high:.2f}]"

    rows = ["| generation | target (tuning quantile) | extracted (strict delta) [95 %] | near copies [95 %] | "
            "flagged by the clique rule | generations adjusted |", "|---|---|---|---|---|---|",
            f"| plain | | {share(ex['plain']['extracted'], n)} | {share(ex['plain'].get('near_copies'), n)} | "
            f"{ex['plain']['flagged']} of {n} | |"]
    for quantile, m in ex["mitigated"].items():
        rows.append(f"| mitigated | {m['target']:.3f} ({float(quantile) * 100:g} %) | {share(m['extracted'], n)} | "
                    f"{share(m.get('near_copies'), n)} | {m['flagged']} of {n} | "
                    f"{m['generations_adjusted']} of {total} |")
    for k, c in enumerate(ex.get("cross_fitted_choice", [])):
        rows.append(f"| chosen on half {'AB'[k]}, counted on half {'BA'[k]} | {c['target']:.3f} "
                    f"({c['quantile'] * 100:g} %) | {share(c['extracted_on_the_other_half'], c['of'])} | "
                    f"{share(c.get('near_copies_on_the_other_half'), c['of'])} | | |")
    rows += ["", f"| ordinary captions ({q['captions']}, same seeds) | target | plain | mitigated | difference "
             f"[{q['level'] * 100:.1f} % paired interval] | |", "|---|---|---|---|---|---|"]
    for quantile, m in q["mitigated"].items():
        for key, name in (("style_accuracy", "judge's style accuracy"), ("concept_accuracy", "judge's concept accuracy"),
                          ("domain_fid", "judge-feature FID (lower is better)")):
            f = m[key]
            rows.append(f"| {name} | {float(quantile) * 100:g} % | {f['plain']:.3f} | {f['mitigated']:.3f} | "
                        f"{f['difference']:+.3f} [{f['interval'][0]:+.3f}, {f['interval'][1]:+.3f}] | {f['verdict']} |")
    return "\n".join(rows) + "\n"


def erasure(summary: dict) -> str:
    """Every erasure run (scripts/erase_table.py's summary.json): the target's accuracy before,
    after, after each recovery attack and in the worst case over them (a prompt counts when any
    attack brings it back), with 95 % bootstrap intervals over the target prompts (one seed), what
    UnlearnDiffAtk recovers beyond its random-prefix control (paired by prompt), and the other
    styles' (concepts') accuracy and FID before and after."""
    from .stats import proportion_interval

    def ci(accuracy, n):
        if accuracy is None:
            return "not run"
        c = proportion_interval(accuracy, n)
        return f"{c.mean:.2f} [{c.low:.2f}, {c.high:.2f}]"

    from .stats import paired_proportion_difference

    def gain(r):
        """UnlearnDiffAtk minus its random-prefix control, prompt by prompt."""
        hits = r.get("attack_hits", {})
        if "unlearndiffatk" not in hits or "random-prefix" not in hits:
            return "not run"
        d = paired_proportion_difference(hits["unlearndiffatk"], hits["random-prefix"])
        return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"

    rows = ["| erasure | target before | target after | " + " | ".join(f"after {a}" for a in ERASE_ATTACKS) +
            " | worst case over the attacks | UnlearnDiffAtk over its control | others before | others after "
            "| others FID before | others FID after | seconds |", "|" + "---|" * (10 + len(ERASE_ATTACKS))]
    for r in summary["runs"]:
        n, b, a = r["n_target"], r["before"], r["after"]
        per = " | ".join(ci(r.get("attacks", {}).get(k), n) for k in ERASE_ATTACKS)
        rows.append(f"| {r['method']}, {r['concept']} | {ci(b['target_accuracy'], n)} | {ci(a['target_accuracy'], n)} | "
                    f"{per} | {ci(r.get('recovery', {}).get('target_accuracy'), n)} | {gain(r)} | {b['others_accuracy']:.2f} | "
                    f"{a['others_accuracy']:.2f} | {b['others_domain_fid']:.1f} | {a['others_domain_fid']:.1f} | "
                    f"{r['erase_seconds']:.1f} |")
    return "\n".join(rows) + "\n"


def erasure_field(summary: dict) -> str:
    """The erasure runs in the layout of UnlearnCanvas and eval-learn (percent): UA, the unlearning
    accuracy, is 1 - the target's accuracy after the erasure; UA after attacks uses the worst case
    over the attacks; IRA, in-domain retain accuracy, is the other styles' (concepts') accuracy
    after; CRA, cross-domain retain accuracy, the other axis on those generations (objects after a
    style erasure, styles after a concept erasure); FID is the judge-feature FID of the others."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}"

    rows = ["| erasure | UA | UA after attacks | IRA | CRA | FID of the others | seconds |",
            "|---|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        a, worst = r["after"], r.get("recovery", {}).get("target_accuracy")
        rows.append(f"| {r['method']}, {r['concept']} | {pct(1 - a['target_accuracy'])} | "
                    f"{pct(None if worst is None else 1 - worst)} | {pct(a['others_accuracy'])} | "
                    f"{pct(a.get('others_cross_accuracy'))} | {a['others_domain_fid']:.1f} | {r['erase_seconds']:.1f} |")
    return "\n".join(rows) + "\n"


SPEED_MODELS = {"mini": "mini", "sd15-random": "SD-1.5", "sdxl-random": "SDXL", "sd3-medium-random": "SD3 medium",
                "flux-dev-random": "FLUX.1-dev"}


def _seconds(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def speed(report: dict) -> str:
    """PGD step cost, AdvDM against SDS (python -m artshield.bench.speed --json)."""
    rows = ["| model | dtype | memory options | advdm s/step | sds s/step | time sds/advdm | advdm peak MiB | "
            "sds peak MiB | memory sds/advdm |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "advdm_s_per_step" not in r:
            continue
        memory = f"{r['memory_ratio_sds_over_advdm']:.2f}" if r["memory_ratio_sds_over_advdm"] is not None else ""
        rows.append(f"| {SPEED_MODELS.get(r['model'], r['model'])} {r['resolution']}px, batch {r['batch']} | "
                    f"{r['dtype'].replace('float', 'fp')} | {'on' if r['memory_options'] else 'off'} | "
                    f"{_seconds(r['advdm_s_per_step'])} | {_seconds(r['sds_s_per_step'])} | "
                    f"{r['time_ratio_sds_over_advdm']:.2f} | {r['advdm_peak_mib']:,.0f} | {r['sds_peak_mib']:,.0f} | "
                    f"{memory} |")
    return "\n".join(rows) + "\n"


def mimic_speed(report: dict) -> str:
    """Training step cost of the mimicry methods (python -m artshield.bench.speed --mimic ...)."""
    rows = ["| model | dtype | resolution | method | s/step | peak MiB |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "method" not in r:
            continue
        rows.append(f"| {SPEED_MODELS.get(r['model'], r['model'])} | {r['dtype'].replace('float', 'fp')} | "
                    f"{r['resolution']} px{', memory options' if r['memory_options'] else ''} | {r['method']} | "
                    f"{_seconds(r['seconds_per_step'])} | {r['peak_memory_mib']:,.0f} |")
    return "\n".join(rows) + "\n"


KINDS = {"speed": speed, "mimic_speed": mimic_speed, "verdicts": verdicts, "controls": controls, "samplers": samplers, "settings": settings, "cellcost": cellcost,
         "claims": claims, "ablation": ablation, "discrimination": discrimination, "adaptive": adaptive,
         "purified": purified, "mutation": mutation, "audit": audit,
         "dataset": dataset, "detectors": detectors, "mitigation": mitigation, "erasure": erasure,
         "erasure_field": erasure_field}


def render(readme: str, root: Path) -> str:
    """README's text with every marked table rendered again from its committed JSON under
    root/docs/results/ (FOLDER/results.json, or the FILE.json named)."""
    def table(m: re.Match) -> str:
        name = root / "docs" / "results" / m["name"]
        results = json.loads((name if m["name"].endswith(".json") else name / "results.json").read_text())
        return m.group(1) + KINDS[m["kind"]](results) + m.group(5)
    return MARK.sub(table, readme)
