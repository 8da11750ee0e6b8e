"""bench: an experiment runs end to end on mini, finished cells are reused, the report is written."""
import json

import pytest

from artshield.bench import experiment, report_html
from artshield.bench.experiment import Cell, Preset, cells, summary


def tiny_preset():
    return Preset(artists=["sugar"], protections=["advdm"], budgets=[8], purifiers=["jpeg"], mimicry=["lora"],
                  seeds=[0], images_per_artist=6, prompts_per_artist=6, mimicry_steps={"lora": 4},
                  protect_options={"advdm": {"steps": 2}})


def test_cells_cover_clean_and_every_protection_budget_purifier():
    p = Preset(artists=["a"], protections=["x", "y"], budgets=[8, 16], purifiers=["q"], mimicry=["lora"], seeds=[0, 1])
    cs = cells(p)
    assert len(cs) == 2 * (1 + 2 * 2 * 2)
    assert Cell("a", "none", 0, "none", "lora", 1) in cs and Cell("a", "y", 16.0, "q", "lora", 0) in cs
    assert len({c.key for c in cs}) == len(cs)


def test_worst_case_is_the_best_purifier_for_the_mimic():
    records = [{"artist": "a", "mimicry": "lora", "protection": "none", "budget": 0, "purifier": "none",
                "mimicry_success": 0.8}]
    for q, v in (("none", 0.1), ("jpeg", 0.3), ("bilateral", 0.7)):
        records.append({"artist": "a", "mimicry": "lora", "protection": "advdm", "budget": 8.0, "purifier": q,
                        "mimicry_success": v})
    p = Preset(artists=["a"], protections=["advdm"], budgets=[8], purifiers=["jpeg", "bilateral"], mimicry=["lora"],
               seeds=[0])
    (row,) = summary(records, p)
    assert row["worst_case"] == 0.7 and row["worst_purifier"] == "bilateral" and row["verdict"] == "broken by bilateral"
    records[-1]["mimicry_success"] = 0.35
    assert summary(records, p)[0]["verdict"] == "holds"
    records[0]["mimicry_success"] = 0.1
    assert summary(records, p)[0]["verdict"].startswith("inconclusive")


@pytest.mark.slow
def test_experiment_runs_and_reuses_finished_cells(tmp_path, mini_bundle, monkeypatch):
    from artshield.metrics.judge import Judge

    preset = tiny_preset()
    first = experiment.Runner(mini_bundle, Judge.load(), preset, tmp_path).run()
    assert [c["condition"] for c in first] == ["clean", "advdm@8", "advdm@8 + jpeg"]
    for c in first:
        assert 0 <= c["mimicry_success"] <= 1 and (tmp_path / c["grid"]).is_file()
    assert first[1]["protection_psnr_db"] > 20 and "purifier_psnr_db" in first[2]

    def fail(*a, **k):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(experiment.Runner, "run_cell", fail)
    again = experiment.Runner(mini_bundle, Judge.load(), preset, tmp_path).run()
    assert again == first
    results = {"preset": {"purifiers": preset.purifiers}, "preset_name": "test", "model": {"spec": "mini"},
               "cells": first, "command": "test", "seconds": 0}
    html = report_html.render(results, summary(first, preset))
    assert html.count("<img") == 6 and "Verdict" in html and "<svg" in html


def test_bench_cli_rejects_other_models(tmp_path, tiny_model_dir, capsys):
    from artshield.cli import main

    assert main(["bench", "--preset", "quick", "--model", str(tiny_model_dir), "-o", str(tmp_path / "b"), "-q"]) == 2
    assert "needs --model mini" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["quick", "full"])
def test_presets_name_real_methods(name):
    from artshield.mimic import MIMICS
    from artshield.protect import METHODS
    from artshield.purify import PURIFIERS

    p = experiment.PRESETS[name]
    assert set(p.protections) <= set(METHODS) and set(p.purifiers) <= set(PURIFIERS) and set(p.mimicry) <= set(MIMICS)
    assert p.artists and json.dumps(p.mimicry_steps)
