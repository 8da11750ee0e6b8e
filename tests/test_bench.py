"""bench: an experiment runs end to end on mini, finished cells are reused, the report is written."""
import json

import numpy as np
import pytest
import torch

from artshield.bench import experiment, report_html
from artshield.bench.experiment import Cell, Preset, cells, summary


def tiny_preset():
    return Preset(artists=["sugar"], protections=["advdm"], budgets=[8], purifiers=["jpeg"], mimicry=["lora"],
                  seeds=[0], images_per_artist=6, prompts_per_artist=6, generations_per_prompt=2,
                  mimicry_steps={"lora": 4},
                  protect_options={"advdm": {"steps": 2}}, prune=False)


def test_cells_cover_clean_and_every_protection_budget_purifier():
    p = Preset(artists=["a"], protections=["x", "y"], budgets=[8, 16], purifiers=["q"], mimicry=["lora"], seeds=[0, 1])
    cs = cells(p)
    assert len(cs) == 2 * (1 + 1 + 2 * 2 * 2)                    # clean, its control through q, the rest
    assert Cell("a", "none", 0, "none", "lora", 1) in cs and Cell("a", "y", 16.0, "q", "lora", 0) in cs
    assert Cell("a", "none", 0, "q", "lora", 0).condition == "clean + q"
    assert len({c.key for c in cs}) == len(cs)


def test_cells_come_purifier_by_purifier_so_a_partial_run_first_answers_the_unpurified_question():
    p = Preset(artists=["a"], protections=["x", "y"], budgets=[8], purifiers=["q", "r"], mimicry=["lora"],
               seeds=[0, 1, 2])
    purifiers = [c.purifier for c in cells(p)]
    assert purifiers == ["none"] * 9 + ["q"] * 9 + ["r"] * 9
    two = Preset(**{**p.__dict__, "artists": ["a", "b"], "mimicry": ["lora", "dreambooth"]})
    order = [(c.purifier, c.artist, c.mimicry) for c in cells(two)]
    assert [q for q, _, _ in order] == ["none"] * 36 + ["q"] * 36 + ["r"] * 36   # every block before any purifier
    assert order[:18:9] == [("none", "a", "lora"), ("none", "a", "dreambooth")] and order[18] == ("none", "b", "lora")


def test_a_failing_cell_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    p = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=["q"], mimicry=["lora"], seeds=[0],
               prune=False)

    def run_cell(self, cell):
        if cell.purifier == "q" and cell.protection == "none":
            raise RuntimeError("upscaler exploded")
        return {"condition": cell.condition, "mimicry_success": 0.5}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    runner = experiment.Runner(None, None, p, tmp_path, log=lambda m: None)
    done = runner.run()
    assert [r["condition"] for r in done] == ["clean", "x@8", "x@8 + q"]
    assert len(runner.failed) == 1 and "upscaler exploded" in runner.failed[0]["error"]
    assert runner.failed[0]["condition"] == "clean + q" and not list((tmp_path / "cells").glob("*tmp*"))


def test_workers_sharing_a_folder_skip_cells_a_live_worker_holds_and_take_over_a_dead_ones(tmp_path, monkeypatch):
    import os
    import socket
    import subprocess
    import sys

    p = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=[], mimicry=["lora"], seeds=[0, 1])
    computed = []

    def run_cell(self, cell):
        computed.append(cell.condition + f"/{cell.seed}")
        return {"condition": cell.condition, "mimicry_success": 0.5}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    runner = experiment.Runner(None, None, p, tmp_path, log=lambda m: None)
    live, dead = (runner.cell_path(c).with_suffix(".lock") for c in cells(p)[:2])
    live.write_text(f"{socket.gethostname()} {os.getppid()}\n")                    # a running worker
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead.write_text(f"{socket.gethostname()} {gone.stdout.strip()}\n")             # a killed one
    done = runner.run()
    assert runner.elsewhere == ["clean"] and computed == ["clean/1", "x@8/0", "x@8/1"]
    assert len(done) == 3 and live.exists() and not dead.exists()


def test_purified_cells_of_a_protection_its_unpurified_cells_already_decide_are_not_run(tmp_path, monkeypatch):
    p = Preset(artists=["a"], protections=["x", "y"], budgets=[8], purifiers=["q", "r"], mimicry=["lora"],
               seeds=[0, 1])
    yes = {"none": 30, "x": 28, "y": 1}                 # of 32: x is mimicked like clean, y is not
    computed = []

    def run_cell(self, cell):
        computed.append((cell.protection, cell.purifier))
        k = yes[cell.protection]
        return {**cell.__dict__, "condition": cell.condition, "outcomes": [1] * k + [0] * (32 - k),
                "mimicry_success": k / 32}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    runner = experiment.Runner(None, None, p, tmp_path, log=lambda m: None)
    runner.run()
    assert ("x", "q") not in computed and ("x", "r") not in computed
    assert computed.count(("y", "q")) == computed.count(("y", "r")) == computed.count(("none", "q")) == 2
    assert runner.decided(Cell("a", "x", 8.0, "q", "lora", 0)) == "does not protect"
    assert runner.decided(Cell("a", "y", 8.0, "q", "lora", 0)) == ""
    # a row decided this way shows its final verdict, not "pending"
    records = [json.loads(f.read_text()) for f in (tmp_path / "cells").glob("*.json")]
    verdicts = {r["protection"]: r["verdict"] for r in summary(records, p)}
    assert verdicts["x"] == "does not protect" and not verdicts["y"].startswith("pending")


def test_a_full_row_runs_every_purified_cell_although_its_verdict_is_already_decided(tmp_path, monkeypatch):
    """Preset.full_rows: that row's worst case is measured over every purifier (robust@16 in the
    standard run, #18); the other decided rows are still pruned, and the verdict is unchanged."""
    p = Preset(artists=["a"], protections=["x"], budgets=[8, 16], purifiers=["q", "r"], mimicry=["lora"],
               seeds=[0, 1], full_rows=["x@16"])
    yes = {("none", "none"): 30, ("x", "none"): 28, ("x", "q"): 31}     # of 32; x is mimicked like clean
    computed = []

    def run_cell(self, cell):
        computed.append((cell.protection, cell.budget, cell.purifier))
        k = yes.get((cell.protection, cell.purifier), 20)
        return {**cell.__dict__, "condition": cell.condition, "outcomes": [1] * k + [0] * (32 - k),
                "mimicry_success": k / 32}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    runner = experiment.Runner(None, None, p, tmp_path, log=lambda m: None)
    records = runner.run()
    assert computed.count(("x", 16.0, "q")) == computed.count(("x", 16.0, "r")) == 2
    assert ("x", 8.0, "q") not in computed and ("x", 8.0, "r") not in computed
    assert sorted(c["condition"] for c in runner.pruned()) == ["x@8 + q"] * 2 + ["x@8 + r"] * 2
    rows = {r["budget"]: r for r in summary(records, p)}
    assert rows[16.0]["verdict"] == rows[8.0]["verdict"] == "does not protect"
    assert rows[16.0]["worst_purifier"] == "q" and rows[8.0]["worst_purifier"] == "none"


def test_a_purified_cell_waits_while_its_unpurified_cells_are_being_computed_elsewhere(tmp_path, monkeypatch):
    import os
    import socket

    p = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=["q"], mimicry=["lora"], seeds=[0])
    order = []

    def run_cell(self, cell):
        order.append(cell.condition)
        return {**cell.__dict__, "condition": cell.condition, "outcomes": [1] * 30 + [0] * 2, "mimicry_success": 0.9}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    runner = experiment.Runner(None, None, p, tmp_path, log=lambda m: None)
    held = runner.cell_path(Cell("a", "x", 8.0, "none", "lora", 0)).with_suffix(".lock")
    held.write_text(f"{socket.gethostname()} {os.getppid()}\n")          # another worker computes x@8
    runner.run()
    # undecided, x@8 + q went to the back of the queue, then ran (the other worker had not finished)
    assert order == ["clean", "clean + q", "x@8 + q"] and runner.elsewhere == ["x@8"]


def test_condition_images_are_stored_and_read_back_without_being_made_again(tmp_path):
    p = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=[], mimicry=["lora"], seeds=[0])
    images = [torch.rand(3, 8, 8), torch.rand(3, 8, 8)]
    first = experiment.Runner(None, None, p, tmp_path).cached(("a", "x", 8.0, 0), lambda: (images, {"psnr": 31.5}))

    def never():
        raise AssertionError("made again")

    again = experiment.Runner(None, None, p, tmp_path).cached(("a", "x", 8.0, 0), never)
    assert again[1] == first[1] == {"psnr": 31.5} and all(torch.equal(u, v) for u, v in zip(again[0], images))


def _records(clean, cells, n, controls=None, seeds=(0, 1)):
    """Constructed cells of two seeds (one seed gives no verdict): `clean`, each of `cells`
    ({purifier: successes}) and each purifier's control (`controls`, default: like clean) as k of n
    generations, one per prompt; the second seed's outcomes are the first's, rotated by one prompt."""
    def rec(protection, budget, purifier, k, seed):
        y = [1] * k + [0] * (n - k)
        y = y[seed:] + y[:seed]
        return {"artist": "a", "mimicry": "lora", "protection": protection, "budget": budget, "purifier": purifier,
                "seed": seed, "mimicry_success": k / n, "outcomes": y, "prompts": n}
    out = []
    for s in seeds:
        out += [rec("none", 0, "none", clean, s)] + [rec("advdm", 8.0, q, k, s) for q, k in cells.items()]
        out += [rec("none", 0, q, (controls or {}).get(q, clean), s) for q in cells if q != "none"]
    return out


PRESET = Preset(artists=["a"], protections=["advdm"], budgets=[8], purifiers=["jpeg", "bilateral"],
                mimicry=["lora"], seeds=[0, 1])


def test_worst_case_is_the_condition_with_the_highest_upper_bound_of_relative_mimicry():
    (row,) = summary(_records(120, {"none": 10, "jpeg": 30, "bilateral": 12}, 128), PRESET)
    assert row["worst_purifier"] == "jpeg" and row["worst_case"] == row["relative"]["jpeg"]["mean"]
    assert row["relative"]["jpeg"]["mean"] == pytest.approx(30 / 120, abs=1e-4)


def test_model_hashes_change_with_any_weight_or_config(tmp_path):
    from artshield.provenance import folder_hash, tensors_hash

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"abc")
    first = folder_hash(tmp_path)
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"abd")
    assert folder_hash(tmp_path) != first and len(first) == 16
    a = {"x": torch.zeros(2)}
    assert tensors_hash(a) == tensors_hash({"x": torch.zeros(2)}) != tensors_hash({"x": torch.tensor([0.0, 1e-6])})


def test_cells_without_stored_outcomes_are_read_from_their_counts():
    from artshield.bench.experiment import outcomes

    assert sorted(outcomes({"mimicry_success": 0.625, "prompts": 32})) == [0.0] * 12 + [1.0] * 20


@pytest.mark.slow
def test_experiment_runs_and_reuses_finished_cells(tmp_path, mini_bundle, monkeypatch):
    from artshield.metrics.judge import Judge

    preset = tiny_preset()
    first = experiment.Runner(mini_bundle, Judge.load(), preset, tmp_path).run()
    assert [c["condition"] for c in first] == ["clean", "advdm@8", "clean + jpeg", "advdm@8 + jpeg"]
    assert len(list((tmp_path / "conditions").glob("*.safetensors"))) == 3     # protected, purified, control
    for c in first:
        assert 0 <= c["mimicry_success"] <= 1 and (tmp_path / c["grid"]).is_file()
        assert len(c["outcomes"]) == c["prompts"] == 6 * 2 and c["mimicry_success"] == round(
            sum(c["outcomes"]) / len(c["outcomes"]), 4)
    assert first[1]["protection_psnr_db"] > 20 and "purifier_psnr_db" in first[3] and "purifier_psnr_db" in first[2]
    models = [c["models"] for c in first]
    assert {m["base"]["sha256"] for m in models} == {models[0]["base"]["sha256"]} and len(models[0]["base"]["sha256"]) == 16
    assert len({m["mimic"]["sha256"] for m in models}) == 4 and models[0]["judge"]["sha256"]

    def fail(*a, **k):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(experiment.Runner, "run_cell", fail)
    again = experiment.Runner(mini_bundle, Judge.load(), preset, tmp_path).run()
    assert again == first
    results = {"preset": {"purifiers": preset.purifiers}, "preset_name": "test", "model": {"spec": "mini"},
               "cells": first, "command": "test", "seconds": 0}
    results["controls"] = experiment.controls(first)
    html = report_html.render(results, summary(first, preset), tmp_path)
    assert html.count("<img") == 8 and "Verdicts" in html and "<svg" in html and "Controls" in html
    other = Preset(**{**preset.__dict__, "generations_per_prompt": 3})
    with pytest.raises(ValueError, match="other settings"):
        experiment.Runner(mini_bundle, Judge.load(), other, tmp_path).run()


def test_bench_cli_rejects_other_models(tmp_path, tiny_model_dir, capsys):
    from artshield.cli import main

    assert main(["bench", "--preset", "quick", "--model", str(tiny_model_dir), "-o", str(tmp_path / "b"), "-q"]) == 2
    assert "needs --model mini" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["smoke", "quick", "standard", "mimics", "adaptive", "full"])
def test_presets_name_real_methods(name):
    from artshield.mimic import MIMICS
    from artshield.protect import METHODS
    from artshield.purify import PURIFIERS

    p = experiment.PRESETS[name]
    methods = {p.protect_options.get(q, {}).get("method", q) for q in p.protections}    # a variant names its method
    assert methods <= set(METHODS) and set(p.purifiers) <= set(PURIFIERS) and set(p.mimicry) <= set(MIMICS)
    assert p.artists and json.dumps(p.mimicry_steps)


def _independent_verdicts(results: dict) -> dict[str, str]:
    """The verdict of every row, recomputed from the stored outcomes by the rule README states,
    written apart from bench/stats.py: numpy and scipy's t and chi-square quantiles only; the
    Fieller bounds by a scan over a grid of ratios instead of root finding."""
    from scipy.stats import chi2, t

    per = results["preset"]["generations_per_prompt"]
    table = {}
    for c in results["cells"]:
        key = (c["protection"], float(c["budget"]), c["purifier"])
        table.setdefault(key, {})[c["seed"]] = np.asarray(c["outcomes"], float).reshape(-1, per).mean(1)

    def tab(key, seeds):
        return np.array([table[key][s] for s in seeds])

    def var_df(z):
        s, p = z.shape
        r, c, g = z.mean(1), z.mean(0), z.mean()
        ma, mb = p * ((r - g) ** 2).sum() / (s - 1), s * ((c - g) ** 2).sum() / (p - 1)
        me = ((z - r[:, None] - c[None] + g) ** 2).sum() / ((s - 1) * (p - 1))
        v = max(ma - me, 0) / p / s + max(mb - me, 0) / s / p + me / (s * p)
        hi = max(ma, me) * (s - 1) / chi2.ppf(0.25, s - 1)
        df = (hi + mb - me) ** 2 / (hi ** 2 / (s - 1) + mb ** 2 / (p - 1) + me ** 2 / ((s - 1) * (p - 1)))
        return v, min(max(df, s - 1), p - 1)

    def p_value(a, b, r0=0.5):
        v, df = var_df(a - r0 * b)
        return 2 * t.sf(abs((a - r0 * b).mean()) / np.sqrt(v), df)

    def fieller(a, b, level):
        grid = np.linspace(0, 8, 16001)
        keep = [r for r in grid if (a.mean() - r * b.mean()) ** 2
                <= t.ppf(1 - (1 - level) / 2, var_df(a - r * b)[1]) ** 2 * var_df(a - r * b)[0]]
        return min(keep), (max(keep) if max(keep) < 8 else np.inf)

    tests = []
    for row in results["summary"]:
        p, b, seeds = row["protection"], float(row["budget"]), sorted(table[("none", 0.0, "none")])
        for q in row["relative"]:
            num, den = (p, b, q), ("none", 0.0, q)
            tests.append((f"{p}@{b:g}", q, tab(num, seeds), tab(den, seeds)))
    ps = np.array([p_value(a, b) for *_, a, b in tests])
    m, alphas, stop = len(ps), [0.0] * len(ps), None
    for rank, i in enumerate(np.argsort(ps, kind="stable")):
        stop = stop or (0.05 / (m - rank) if ps[i] >= 0.05 / (m - rank) else None)
        alphas[i] = stop or 0.05 / (m - rank)
    bounds = {}
    for (row, q, a, b), alpha in zip(tests, alphas):
        bounds.setdefault(row, {})[q] = fieller(a, b, 1 - alpha)
    clean = tab(("none", 0.0, "none"), sorted(table[("none", 0.0, "none")]))
    v, df = var_df(clean)
    if clean.mean() - t.ppf(0.975, df) * np.sqrt(v) < 0.3:
        return {row: "inconclusive: clean mimicry is too weak" for row in bounds}
    out = {}
    for row, b in bounds.items():
        (lo, hi), rest = b["none"], {q: v for q, v in b.items() if q != "none"}
        out[row] = ("does not protect" if lo > 0.5 else "holds" if hi <= 0.5 and all(h <= 0.5 for _, h in rest.values())
                    else "broken by" if hi <= 0.5 and any(lo_ > 0.5 for lo_, _ in rest.values()) else "inconclusive")
    return out


def test_the_committed_verdicts_follow_from_the_committed_cells_recomputed_independently():
    """A reader can recompute every committed verdict from the stored cells by the rule README
    states; this does, without bench/stats.py, and agrees with results.json and with stats.py."""
    from dataclasses import fields
    from pathlib import Path

    path = Path(__file__).parents[1] / "docs" / "results" / "bench-standard" / "results.json"
    results = json.loads(path.read_text())
    mine = _independent_verdicts(results)
    committed = {f"{r['protection']}@{r['budget']:g}": r["verdict"] for r in results["summary"]}
    assert {k: v.split(":")[0] for k, v in committed.items()} == {k: v.split(":")[0] for k, v in mine.items()}
    known = {f.name for f in fields(Preset)}
    again = summary(results["cells"], Preset(**{k: v for k, v in results["preset"].items() if k in known}))
    assert [r["verdict"] for r in again] == [r["verdict"] for r in results["summary"]]
    assert [r["relative"] for r in again] == [r["relative"] for r in results["summary"]]


def test_report_shows_relative_mimicry_quality_the_rule_and_a_labelled_chart_and_escapes_text():
    records = _records(120, {"none": 10, "jpeg": 12, "bilateral": 100}, 128)
    for r in records:
        r.update(condition=r["protection"] + " <script>", domain_fid=1.0, precision=0.5, recall=0.5)
    rows = summary(records, PRESET)
    results = {"preset": {"purifiers": PRESET.purifiers}, "preset_name": "t", "model": {"spec": "mini", "image_size": 32},
               "cells": records, "controls": experiment.controls(records), "command": "artshield bench", "seconds": 1,
               "analysis": experiment.analysis(rows)}
    html = report_html.render(results, rows)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert rows[0]["verdict"] == "broken by bilateral" and "broken by bilateral" in html
    for text in ("relative mimicry (protected / clean)", "protection and budget (/255)", "holds bar (0.5)",
                 "no purifier", "bilateral", "3 relative-mimicry tests (family-wise 5", "Quality per purifier",
                 "no change shown"):
        assert text in html, text
    assert html.count("<path d=") == 3            # an interval whisker per bar: none, jpeg, bilateral


def test_check_stops_before_training_when_the_judge_cannot_tell_the_style(tmp_path, tiny_bundle):
    from artshield.bench import check

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 20, 24, generator=g), torch.rand(1, 16, 16, generator=g), torch.rand(3, 30, 30, generator=g)]
    results = check.check(tiny_bundle, images, tmp_path, method="advdm", budget=8, purifiers=("jpeg",), level="quick",
                          log=lambda m: None)
    assert results["cells"] == [] and results["summary"] == [] and not list(tmp_path.glob("cells/*.json"))
    assert results["verdict"].startswith("inconclusive: this judge cannot tell this style apart (too few")
    html = report_html.render(results, results["summary"], tmp_path)
    assert "cannot tell this style apart" in html and "Nothing was trained" in html and "32 x 32" in html
    with pytest.raises(ValueError, match="at least 2 images"):
        check.check(tiny_bundle, images[:1], tmp_path / "x")


def test_check_on_the_users_own_images_judges_distinct_prompts_against_a_held_out_reference(tmp_path, tiny_bundle,
                                                                                          monkeypatch):
    from artshield import corpus
    from artshield.bench import check

    items = corpus.items(theme="gartoon")[:18]
    images = list(corpus.load_images(items, 64))
    seen = {}
    real = check.Runner.__init__

    def spy(self, bundle, judge, preset, out, log=print, artists=None):
        seen.update(judge=judge, data=artists[check.ARTIST])
        real(self, bundle, judge, preset, out, log=log, artists=artists)

    monkeypatch.setattr(check.Runner, "__init__", spy)
    check.LEVELS["test"] = check.Thoroughness((0,), 4, 2)
    try:
        results = check.check(tiny_bundle, images, tmp_path, method="advdm", budget=8, purifiers=("jpeg",), level="test",
                              protect_options={"steps": 1}, log=lambda m: None)
    finally:
        del check.LEVELS["test"]
    assert results["judge_check"]["can_tell"], results["judge_check"]["why"]
    data = seen["data"]
    assert len(data.reference) == 6 and len(data.images) == 12                 # a third held out, never trained on
    trained = torch.stack(data.images)
    assert all(not any(torch.equal(r, t) for t in trained) for r in data.reference)
    assert len(set(data.prompts)) == 4 and all("sks" in p for p in data.prompts)   # distinct prompts
    # the readout names the artist for its own held-out images and not for another style
    assert seen["judge"].predict(data.reference)[0].count(check.ARTIST) >= 5
    papirus = corpus.load_images(corpus.items(theme="papirus")[:8], 64)
    assert check.ARTIST not in seen["judge"].predict(papirus)[0]
    run, pruned = [c["condition"] for c in results["cells"]], [c["condition"] for c in results["pruned"]]
    assert sorted(run) == sorted(["clean", "advdm@8", "clean + jpeg"]) and pruned == ["advdm@8 + jpeg"]
    assert all(len(c["outcomes"]) == 4 for c in results["cells"]) and results["summary"][0]["relative"]["none"]["prompts"] == 4
    assert results["summary"][0]["verdict"] == "inconclusive: one training seed of one prompt gives no interval" \
        or results["summary"][0]["verdict"].startswith("inconclusive")
    html = report_html.render(results, results["summary"], tmp_path)
    assert "check on your art" in html and "It can:" in html and html.count("<img") == 2 * len(run)


def test_a_run_under_way_decides_only_what_its_finished_cells_can():
    preset = Preset(artists=["a"], protections=["advdm"], budgets=[8], purifiers=["jpeg", "bilateral"],
                    mimicry=["lora"], seeds=[0, 1])

    def rec(protection, purifier, k, seed, n=128):
        return {"artist": "a", "mimicry": "lora", "protection": protection, "budget": 8.0 if protection != "none" else 0,
                "purifier": purifier, "seed": seed, "outcomes": [1] * k + [0] * (n - k), "prompts": n,
                "mimicry_success": k / n}

    clean = [rec("none", "none", 120, s) for s in (0, 1)]
    low = [rec("advdm", "none", 5, s) for s in (0, 1)] + [rec("advdm", "jpeg", 6, s) for s in (0, 1)]
    (row,) = summary(clean + low, preset)
    assert row["verdict"] == "pending: 6 of 12 cells done"              # "holds" needs bilateral and the controls
    high = [rec("advdm", "none", 100, s) for s in (0, 1)]
    (row,) = summary(clean + high, preset)
    assert row["verdict"] == "does not protect"                          # decided by the unpurified cells
    (row,) = summary(clean[:1] + high, preset)
    assert row["verdict"].startswith("pending")                          # not every seed of clean yet
    controls = [rec("none", q, 118, s) for q in ("jpeg", "bilateral") for s in (0, 1)]
    (row,) = summary(clean + low + controls + [rec("advdm", "bilateral", 4, s) for s in (0, 1)], preset)
    assert row["verdict"] == "holds"


def test_bench_workers_share_an_output_folder_that_other_runs_cannot_take(tmp_path):
    from artshield.errors import ArtshieldError
    from artshield.io import claim_output, release_locks

    try:
        claim_output(tmp_path / "b", "bench", ("cells",), shared=True)
        claim_output(tmp_path / "b", "bench", ("cells",), shared=True)      # a second worker
        with pytest.raises(ArtshieldError, match="another artshield run"):
            claim_output(tmp_path / "b", "generate")
    finally:
        release_locks()
    claim_output(tmp_path / "b", "bench", ("cells",))                      # free again once they are done
    release_locks()


def test_a_new_rows_options_do_not_refuse_a_folder_but_changed_settings_do():
    from artshield.bench.experiment import compatible

    stored = {"generations_per_prompt": 2, "protect_options": {"aspl": {"steps": 5}}, "purify_options": {}}
    grown = {**stored, "protect_options": {"aspl": {"steps": 5}, "advdm-eot": {"method": "advdm", "eot": ["jpeg"]}},
             "purify_options": {"noisy-upscale": {"upscaler_steps": 25}}}
    assert compatible(stored, grown) and compatible(stored, stored)
    assert not compatible(stored, {**grown, "protect_options": {"aspl": {"steps": 6}}})      # an existing row changed
    assert not compatible(stored, {**stored, "generations_per_prompt": 3})
    # a mimic with no stored cell may be added or retuned; a stored mimic's settings may not change
    before = {**stored, "mimicry_steps": {"lora": 200}, "mimicry_lr": {"lora": 1e-2}}
    added = {**before, "mimicry_steps": {"lora": 200, "dreambooth": 150}, "mimicry_lr": {"lora": 1e-2, "dreambooth": 3e-4}}
    assert compatible(before, added, {"lora"}) and not compatible(before, added)
    assert not compatible(before, {**added, "mimicry_lr": {"lora": 3e-3, "dreambooth": 3e-4}}, {"lora"})
    assert not compatible(added, {**added, "mimicry_steps": {"lora": 200, "dreambooth": 100}}, {"lora", "dreambooth"})
    assert compatible(added, {**added, "mimicry_steps": {"lora": 200, "dreambooth": 100}}, {"lora"})


def test_a_variant_row_protects_with_its_method_and_options(tmp_path, monkeypatch):
    calls = []

    def fake_protect(bundle, images, method, budget, seed, score, **options):
        calls.append((method, options))

        class Made:
            def protected(self, xs):
                return xs
        return Made()

    monkeypatch.setattr(experiment, "protect", fake_protect)
    monkeypatch.setattr(experiment, "_visibility", lambda *a: {})
    p = Preset(artists=["a"], protections=["advdm-eot"], budgets=[16], purifiers=[], mimicry=["lora"], seeds=[0],
               protect_options={"advdm-eot": {"method": "advdm", "eot": ["jpeg", "blur"]}})
    runner = experiment.Runner(None, None, p, tmp_path, artists={"a": experiment.ArtistData([torch.rand(3, 8, 8)],
                                                                                            ["c"], ["c"], None)})
    runner.condition_images(Cell("a", "advdm-eot", 16.0, "none", "lora", 0))
    assert calls == [("advdm", {"eot": ["jpeg", "blur"]})]


def test_training_seeds_share_no_noise_seed_and_a_folder_of_the_first_scheme_stays_usable(tmp_path):
    from artshield.bench.experiment import PRESETS, noise_base

    default = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=[], mimicry=["lora"], seeds=[0, 1, 2])
    noise = [set(range(noise_base(default, s), noise_base(default, s) + 128)) for s in (0, 1, 2)]
    assert not (noise[0] & noise[1]) and not (noise[1] & noise[2]) and not (noise[0] & noise[2])
    standard = PRESETS["standard"]
    assert [noise_base(standard, s) for s in range(5)] == [0, 1, 2, 3_000_000, 4_000_000]   # its committed cells
    runner = experiment.Runner(None, None, standard, tmp_path, log=lambda m: None)
    old = {k: v for k, v in runner.protocol().items() if k != "distinct_noise_from"}         # written before the scheme
    (tmp_path / "protocol.json").write_text(json.dumps(old))
    (tmp_path / "cells" / "c.json").write_text(json.dumps({"seed": 2}))
    runner.check_protocol()                                      # seeds 0-2 were made as the scheme makes them
    (tmp_path / "protocol.json").write_text(json.dumps(old))
    (tmp_path / "cells" / "d.json").write_text(json.dumps({"seed": 3}))
    with pytest.raises(ValueError, match="other settings"):      # a seed 3 made with noise 3 + i is not
        runner.check_protocol()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "dreambooth", "textual-inversion", "hypernetwork"])
def test_a_bench_cell_of_every_mimic_changes_what_the_model_generates(tmp_path, mini_bundle, monkeypatch, method):
    from artshield.metrics.judge import Judge

    real, made = experiment.generate, []

    def spy(bundle, prompts, seed, **options):
        made.append(real(bundle, prompts, seed=seed, **options))
        return made[-1]

    monkeypatch.setattr(experiment, "generate", spy)
    preset = Preset(artists=["gartoon"], protections=[], budgets=[], purifiers=[], mimicry=[method], seeds=[0],
                    images_per_artist=6, prompts_per_artist=4, generations_per_prompt=1, mimicry_steps={method: 10},
                    sampling={"sampler": "dpm-solver++", "steps": 8})
    runner = experiment.Runner(mini_bundle, Judge.load(), preset, tmp_path, log=lambda m: None)
    record = runner.run_cell(Cell("gartoon", "none", 0, "none", method, 0))
    assert record["mimicry"] == method and record["mimicry_steps"] == 10 and record["prompts"] == 4
    assert record["sampling"] == preset.sampling and record["phase_seconds"]["train"] > 0
    base = real(mini_bundle, runner.artist("gartoon").prompts, seed=0, **preset.sampling)
    assert not torch.allclose(made[-1], base)               # the mimic's adaptation reached the generations


def test_the_check_command_stops_in_one_line_or_writes_its_report(tmp_path, tiny_model_dir, capsys):
    from PIL import Image

    from artshield.cli import main

    art = tmp_path / "art"
    art.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(art / f"{i}.png")
    (art / "broken.png").write_bytes(b"not an image")
    base = ["check", str(art), "--model", str(tiny_model_dir), "--purifiers", "jpeg", "-q"]
    assert main(base + ["-o", str(tmp_path / "a"), "--judge", "clip"]) == 2
    assert "--judge clip" in capsys.readouterr().err and not (tmp_path / "a").exists()
    (tmp_path / "p.txt").write_text("a cat\n")
    assert main(base + ["-o", str(tmp_path / "b"), "--prompts", str(tmp_path / "p.txt")]) == 2
    assert "trigger word" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "c"), "--purifiers", "sandpaper"]) == 2
    # three images: the judge cannot prove itself, so nothing is trained; the bad file is reported (exit 1)
    assert main(base + ["-o", str(tmp_path / "d")]) == 1
    assert "broken.png" in capsys.readouterr().err
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    assert results["verdict"].startswith("inconclusive: this judge cannot tell") and results["cells"] == []
    assert "cannot tell this style apart" in (tmp_path / "d" / "report.html").read_text()
