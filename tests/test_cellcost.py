"""The bench's speed levers: faster samplers, the tuning of mimic settings, and the per-cell cost."""
import argparse
import json
import statistics

import pytest
import torch

from artshield.bench import cellcost, experiment, tables, tuning
from artshield.bench.experiment import Preset
from artshield.generate import generate


def test_dpm_solver_and_bf16_autocast_give_images_near_ddims_and_bad_options_are_refused(mini_bundle):
    prompts = ["trash can icon, papirus style", "folder icon, tango style"]
    ddim = generate(mini_bundle, prompts, seed=3, steps=10)
    dpm = generate(mini_bundle, prompts, seed=3, steps=10, sampler="dpm-solver++")
    bf16 = generate(mini_bundle, prompts, seed=3, steps=10, autocast="bf16")
    for x in (dpm, bf16):
        assert x.shape == ddim.shape and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert not torch.equal(dpm, ddim) and not torch.equal(bf16, ddim)         # each option is really used
    assert float((bf16 - ddim).pow(2).mean().sqrt()) < 0.05                    # rounding, not another picture
    assert float((dpm - ddim).pow(2).mean().sqrt()) < 0.25
    with pytest.raises(ValueError, match="autocast"):
        generate(mini_bundle, prompts, autocast="int8")
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(mini_bundle, prompts, sampler="euler")


def test_a_folder_from_before_the_sampling_settings_stays_usable_and_other_sampling_is_refused(tmp_path):
    standard = experiment.PRESETS["standard"]
    runner = experiment.Runner(None, None, standard, tmp_path, log=lambda m: None)
    old = {k: v for k, v in runner.protocol().items() if k not in ("mimicry_batch", "sampling", "mimicry_options")}
    (tmp_path / "protocol.json").write_text(json.dumps(old))
    runner.check_protocol()                                        # the defaults were what it ran
    assert json.loads((tmp_path / "protocol.json").read_text())["sampling"] == {}
    (tmp_path / "cells" / "a-lora-cell.json").write_text(json.dumps({"mimicry": "lora"}))   # a stored LoRA cell
    for change in ({"sampling": {"sampler": "dpm-solver++", "steps": 10}}, {"mimicry_batch": {"lora": 4}},
                   {"mimicry_options": {"lora": {"rank": 16}}}):
        other = experiment.Runner(None, None, Preset(**{**standard.__dict__, **change}), tmp_path, log=lambda m: None)
        with pytest.raises(ValueError, match="other settings"):
            other.check_protocol()


def _row(artist, seed, success, steps=100, lr=1e-3, seconds=10.0):
    return {"artist": artist, "mimic": "lora", "steps": steps, "lr": lr, "batch_size": 8, "seed": seed,
            "success": success, "train_seconds": seconds}


def test_the_cheapest_setting_that_reaches_the_bar_on_every_seed_of_every_artist_is_chosen():
    rows = [_row(a, s, 0.6, steps=300, seconds=90) for a in ("g", "m") for s in (0, 1, 2)]        # usable, dear
    rows += [_row(a, s, 0.5, steps=100, seconds=30) for a in ("g", "m") for s in (0, 1, 2)]       # usable, cheap
    rows += [_row(a, s, 0.9 if s else 0.39, steps=50, seconds=15) for a in ("g", "m") for s in (0, 1, 2)]  # one seed low
    rows += [_row("g", s, 0.9, steps=20, seconds=5) for s in (0, 1, 2)]                          # one artist missing
    chosen = tuning.choose(rows, ["g", "m"], [0, 1, 2])
    assert (chosen["chosen"]["lora"]["steps"], chosen["chosen"]["lora"]["train_seconds"]) == (100, 30)
    by_steps = {e["steps"]: e for e in chosen["settings"]}
    assert not by_steps[50]["usable"] and by_steps[50]["success"]["g"]["min"] == 0.39
    assert not by_steps[20]["complete"] and not by_steps[20]["usable"]
    assert tuning.choose(rows[12:], ["g", "m"], [0, 1, 2])["chosen"] == {}


def test_a_known_style_is_a_control_that_never_makes_a_setting_usable(mini_bundle):
    from artshield import corpus

    images, captions, prompts = tuning.tuning_data("papirus", images=6)
    pool = corpus.items(split="train", theme="papirus")           # a style and objects mini learnt
    assert len(images) == 6 and len(prompts) == tuning.TUNING_PROMPTS * tuning.GENERATIONS
    assert captions[0] == pool[0].caption.replace("papirus style", "sks style")
    assert prompts[0] == prompts[1] == pool[6].caption.replace("papirus style", "sks style")
    assert all(c.endswith("sks style") for c in captions + prompts)
    assert torch.equal(images[0], next(iter(corpus.load_images(pool[:1], 64))))
    assert tuning.known("papirus") and not tuning.known("gartoon")
    with pytest.raises(SystemExit, match="fewer than"):
        tuning.tuning_data("nuovext", images=200)
    with pytest.raises(SystemExit, match="not a theme"):
        tuning.tuning_data("vangogh")
    rows = [_row(a, s, 0.6) for a in ("gartoon", "moka") for s in (0, 1)] + [_row("breeze", s, 0.1) for s in (0, 1)]
    rows[-2:] = [dict(r, known_style=True) for r in rows[-2:]]
    report = tuning._mimic_report(rows, argparse.Namespace(model="mini"), {"breeze": {"named": 0.8, "trigger": 0.05,
                                                                                     "prompts": 64, "seed": 0}})
    (setting,) = report["settings"]
    assert setting["usable"] and setting["success"]["breeze"]["max"] == 0.1      # shown, not a condition
    header, _, line, _, note = tables.settings(report).splitlines()
    assert header.index("moka") < header.index("breeze (a style mini learnt: control)")
    assert line.split(" | ")[5:8] == ["0.60 / 0.60 / 0.60 (2)"] * 2 + ["0.10 / 0.10 / 0.10 (2)"]
    assert note.startswith("Control breeze") and "reaches 0.80 with the word" in note and "0.05 with the" in note
    rows = [_row("papirus", s, 0.9) for s in (0, 1)]
    assert tuning._mimic_report(rows, argparse.Namespace(model="mini"))["chosen"] == {}
    from artshield.metrics.judge import Judge

    bounds = tuning.known_style_bounds(mini_bundle, Judge.load(), "papirus", tuning.CANDIDATES["dpm-10-bf16"])
    assert bounds["prompts"] == len(prompts) and bounds["named"] > bounds["trigger"] + 0.3   # mini draws it when named


def test_the_mimic_grid_writes_its_rows_and_a_rerun_skips_them(tmp_path, monkeypatch):
    out = tmp_path / "grid.json"
    args = ["mimic", "--mimic", "lora", "--artists", "gartoon", "--seeds", "0", "--steps", "2", "--lr", "1e-3",
            "--sampling", "dpm-10-bf16", "--json", str(out)]
    assert tuning.main(args) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert (row["artist"], row["steps"], row["seed"], row["prompts"]) == ("gartoon", 2, 0, 64)
    assert row["success"] == round(sum(row["outcomes"]) / 64, 4) and row["sampling"]["sampler"] == "dpm-solver++"
    monkeypatch.setattr(tuning, "probe", lambda *a, **k: pytest.fail("a finished row was run again"))
    assert tuning.main(args) == 0


def test_conditions_are_read_as_the_bench_names_them():
    assert cellcost.parse_condition("clean") == ("none", 0.0, "none")
    assert cellcost.parse_condition("clean + jpeg") == ("none", 0.0, "jpeg")
    assert cellcost.parse_condition("advdm@16 + bilateral") == ("advdm", 16.0, "bilateral")
    with pytest.raises(SystemExit, match="advdm"):
        cellcost.parse_condition("advdm")


def test_cells_time_their_phases_and_two_presets_are_compared_on_the_same_cells(monkeypatch):
    smoke = experiment.PRESETS["smoke"]
    fast = Preset(**{**smoke.__dict__, "sampling": {"sampler": "dpm-solver++", "steps": 4}})
    monkeypatch.setitem(experiment.PRESETS, "smoke-fast", fast)
    logged = []
    figures = cellcost.compare("smoke", "smoke-fast", ["clean", "clean + jpeg"], [0, 1], log=logged.append)
    assert len(figures["cells"]) == 8 and len(logged) == 8
    for row in figures["cells"]:
        assert row["phases"]["train"] > 0 and row["phases"]["generate"] > 0 and row["phases"]["judge"] > 0
        assert row["cell_seconds"] == pytest.approx(sum(row["phases"][p] for p in cellcost.PHASES), abs=0.11)
    old = [r["cell_seconds"] for r in figures["cells"] if r["side"] == "old"]
    assert figures["median_cell_seconds"]["old"] == pytest.approx(statistics.median(old), abs=0.06)
    assert figures["speed_up"] == pytest.approx(figures["median_cell_seconds"]["old"] / figures["median_cell_seconds"]["new"],
                                                rel=0.02)
    assert list(figures["condition_seconds"]) == ["clean (seed 0)", "clean (seed 1)", "clean + jpeg (seed 0)",
                                                  "clean + jpeg (seed 1)"]
    for a in figures["agreement"]:
        new = [r for r in figures["cells"] if r["side"] == "new" and r["condition"] == a["condition"]]
        assert a["seeds"] == [0, 1] and a["new"] == pytest.approx(sum(r["mimicry_success"] for r in new) / 2, abs=1e-3)
        assert a["agree"] == (a["new_minus_old"]["low"] <= 0 <= a["new_minus_old"]["high"])
    (e,) = figures["effect_agreement"]                 # a condition's effect against clean, both sides
    by = {a["condition"]: a for a in figures["agreement"]}
    assert e["condition"] == "clean + jpeg" and e["seeds"] == [0, 1]
    assert e["new_effect"] == pytest.approx(by["clean + jpeg"]["new"] - by["clean"]["new"], abs=2e-3)
    assert e["old_effect"] == pytest.approx(by["clean + jpeg"]["old"] - by["clean"]["old"], abs=2e-3)
    assert e["new_minus_old"]["mean"] == pytest.approx(e["new_effect"] - e["old_effect"], abs=2e-3)


def test_other_mimic_options_form_a_grid_and_are_part_of_a_settings_identity():
    assert tuning.option_grid(["rank=4,16", "lr_schedule=cosine"]) == [
        {"rank": 4, "lr_schedule": "cosine"}, {"rank": 16, "lr_schedule": "cosine"}]
    assert tuning.option_grid([]) == [{}] and tuning.option_grid(["warmup_steps=1.5"]) == [{"warmup_steps": 1.5}]
    with pytest.raises(SystemExit, match="NAME=V1"):
        tuning.option_grid(["rank"])
    rows = [dict(_row(a, s, 0.5, seconds=30), options={"rank": 4}) for a in ("g", "m") for s in (0, 1)]
    rows += [dict(_row(a, s, 0.5 if s else 0.2, seconds=10), options={"rank": 16}) for a in ("g", "m") for s in (0, 1)]
    chosen = tuning.choose(rows, ["g", "m"], [0, 1])
    assert len(chosen["settings"]) == 2 and chosen["chosen"]["lora"]["options"] == {"rank": 4}


def test_the_ablation_pairs_each_variants_protected_runs_with_its_clean_ones():
    import argparse

    def rows(variant, condition, rates):
        return [{"variant": json.dumps(variant, sort_keys=True), "options": variant, "condition": condition, "seed": s,
                 "success": r, "outcomes": [1] * int(r * 64) + [0] * (64 - int(r * 64))} for s, r in enumerate(rates)]

    a, b = {"layers": "all"}, {"layers": "cross"}
    found = rows(a, "clean", [0.5, 0.75, 0.5]) + rows(a, "advdm@16", [0.5, 0.75, 0.5])
    found += rows(b, "clean", [0.5, 0.5, 0.75]) + rows(b, "advdm@16", [0.25, 0.25, 0.375])
    found = [dict(r, command=f"run {r['options']['layers']}") for r in found]      # two invocations
    args = argparse.Namespace(argv=["ablation"], model="mini", artist="gartoon", mimic="lora", protection="advdm",
                              budget=16.0, sampling="dpm-10-bf16")
    report = tuning._ablation_report(found, args)
    same, halved = report["variants"]
    assert report["commands"] == ["run all", "run cross"]
    assert same["relative"]["mean"] == pytest.approx(1.0) and same["seeds"] == [0, 1, 2]
    assert halved["relative"]["mean"] == pytest.approx(0.875 / 1.75) and halved["success"]["advdm@16"] == pytest.approx(0.2917, abs=1e-3)
    table = tables.ablation(report)
    assert "| layers cross | 0.583 | 0.292 | 0.50 [" in table
