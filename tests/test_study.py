"""artshield study: the human A/B kit (pairs from a run, a rater's balanced arrangement, answers
saved as they are clicked, the analysis's rates and intervals, a scripted rater in chromium)."""
import csv
import html
import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artshield import study
from artshield.cli import main
from artshield.io import grid, write_image

CONDITIONS = ["clean", "advdm@16", "glaze@16", "advdm@16 + jpeg", "clean + jpeg"]
SIDE = 12


def _colour(condition: str, seed: int, prompt: int) -> tuple:
    return (20 + 40 * CONDITIONS.index(condition), 20 + 50 * seed, 10 + 25 * prompt)


def _run(folder: Path, seeds=(0, 1, 2)) -> Path:
    """A bench folder whose generation k of (condition, seed) is a flat tile of a known colour."""
    cells = []
    for condition in CONDITIONS:
        protection, _, purifier = condition.partition(" + ")
        for s in seeds:
            key = f"a-{condition.replace(' ', '').replace('@', '-')}-{s}"
            tiles = torch.stack([torch.tensor(_colour(condition, s, k), dtype=torch.float32)[:, None, None]
                                 .expand(3, SIDE, SIDE) / 255 for k in range(8)])
            write_image(grid(tiles, columns=8), folder / "grids" / f"{key}.png")
            originals = torch.stack([torch.tensor((200, 10 * i, 90), dtype=torch.float32)[:, None, None]
                                     .expand(3, SIDE, SIDE) / 255 for i in range(4)])
            write_image(grid(originals, columns=4), folder / "inputs" / f"{key}.png")
            cells.append({"artist": "a", "mimicry": "lora", "seed": s, "condition": condition,
                          "protection": "none" if protection == "clean" else protection.split("@")[0],
                          "purifier": purifier or "none", "grid": f"grids/{key}.png", "inputs": f"inputs/{key}.png"})
    (folder / "results.json").write_text(json.dumps({"cells": cells}))
    return folder


def _pixel(folder: Path, name: str) -> tuple:
    with Image.open(folder / name) as im:
        return im.convert("RGB").getpixel((SIDE // 2, SIDE // 2))


def test_a_study_pairs_each_condition_with_clean_mimicry_of_the_same_seed_and_prompt(tmp_path):
    run = _run(tmp_path / "run")
    made = study.make_study(run, tmp_path / "s", pairs=6, attention=2, seed=3)
    pairs = [t for t in made["trials"] if t["kind"] == "pair"]
    assert {t["condition"] for t in pairs} == {"advdm@16", "glaze@16", "advdm@16 + jpeg"}
    for condition in ("advdm@16", "glaze@16", "advdm@16 + jpeg"):
        assert sum(t["condition"] == condition for t in pairs) == 6          # balanced: the same number each
    for t in pairs:
        assert t["baseline"] == "clean"
        assert _pixel(tmp_path / "s", t["images"]["condition"]) == _colour(t["condition"], t["seed"], t["prompt"])
        assert _pixel(tmp_path / "s", t["images"]["baseline"]) == _colour("clean", t["seed"], t["prompt"])
    assert len({(t["condition"], t["seed"], t["prompt"]) for t in pairs}) == len(pairs)
    names = [n for t in made["trials"] for n in t["images"].values()]
    assert not any(c.split("@")[0] in n or "clean" in n for n in names for c in CONDITIONS)   # names say nothing
    refs = made["references"]["a"]
    assert [_pixel(tmp_path / "s", n) for n in refs] == [(200, 10 * i, 90) for i in range(4)]
    checks = [t for t in made["trials"] if t["kind"] == "attention"]
    assert len(checks) == 2 and all(t["images"]["condition"] in refs for t in checks)
    # the matched baseline: a purified condition against the clean images through the same purifier
    matched = study.make_study(run, tmp_path / "m", pairs=4, baseline="matched", conditions=["advdm@16 + jpeg"])
    for t in (t for t in matched["trials"] if t["kind"] == "pair"):
        assert t["baseline"] == "clean + jpeg"
        assert _pixel(tmp_path / "m", t["images"]["baseline"]) == _colour("clean + jpeg", t["seed"], t["prompt"])
    page = (tmp_path / "s" / "index.html").read_text()
    assert "advdm" not in page and all(html.escape(q).replace("&#x27;", "&#39;") in page for q in study.QUESTIONS.values())


def test_each_rater_gets_a_balanced_arrangement_of_their_own():
    trials = [{"id": f"t{i}", "kind": "pair", "artist": "a", "mimicry": "lora", "condition": c, "baseline": "clean",
               "seed": 0, "prompt": i, "images": {"condition": "x", "baseline": "y"}}
              for c in ("p", "q") for i in range(7)]
    s = {"seed": 0, "trials": trials, "references": {}}
    one, again, other = study.arrangement(s, "ann"), study.arrangement(s, "ann"), study.arrangement(s, "bob")
    assert one == again and [t["id"] for t in one] != [t["id"] for t in other]
    assert sorted(t["id"] for t in one) == sorted(t["id"] for t in trials)
    for arranged in (one, other):
        for c in ("p", "q"):
            lefts = sum(t["condition_side"] == "left" for t in arranged if t["condition"] == c)
            assert lefts in (3, 4)                       # 7 trials: half on each side, the odd one at random
    public = study._public(s, one[0])
    assert set(public) == {"id", "left", "right", "references"}


def _answers(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=study.COLUMNS)
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"time": i, "position": i, "kind": "pair", "artist": "a", "mimicry": "lora",
                        "baseline": "clean", "condition_side": "left", "choice": "left", **r})
    return path


def _constructed(raters: list[str], rates: dict[str, float], seeds=range(4), prompts=range(8),
                 by_seed=("weak",)) -> list[dict]:
    """Answers with known rates: on style, a condition named in `by_seed` is chosen on its first share
    of training seeds only (a seed effect); any other on a share of each seed's and each prompt's
    items ((seed + prompt) mod 4 below 4 x rate). On quality, every other item."""
    rows = []
    for rater in raters:
        rows += [{"rater": rater, "trial": f"c{k}", "kind": "attention", "condition": "attention", "seed": -1,
                  "prompt": k, "question": q, "chose_condition": 1} for k in range(2) for q in ("style", "quality")]
        for condition, rate in rates.items():
            items = [(s, p) for s in seeds for p in prompts]
            for j, (s, p) in enumerate(items):
                for q in ("style", "quality"):
                    if q == "quality":
                        chose = j % 2
                    elif condition in by_seed:
                        chose = int(s < rate * len(seeds))
                    else:
                        chose = int((s + p) % 4 < 4 * rate)
                    rows.append({"rater": rater, "trial": f"{condition}-{s}-{p}", "condition": condition,
                                 "seed": s, "prompt": p, "question": q, "chose_condition": chose})
    return rows


def test_the_analysis_of_a_constructed_answers_file_gives_its_known_rates(tmp_path):
    rows = _constructed(["r1", "r2", "r3", "r4"], {"strong": 0.25, "weak": 0.5, "same": 1.0})
    rows += [{**r, "chose_condition": 0} if r.get("kind") == "attention" and r["trial"] == "c0" else r
             for r in _constructed(["sloppy"], {"strong": 1.0})]
    rows.append({**rows[5], "chose_condition": 1 - rows[5]["chose_condition"]})      # a repeat: the first counts
    result = study.analyse(_answers(tmp_path / "answers.csv", rows), resamples=1000)
    assert result["kept_raters"] == ["r1", "r2", "r3", "r4"]
    assert "passed 2 of 4" in result["excluded_raters"]["sloppy"]
    by = {(r["question"], r["condition"]): r for r in result["rows"]}
    assert by[("style", "strong")]["rate"] == 0.25 and by[("style", "weak")]["rate"] == 0.5
    assert by[("style", "same")]["rate"] == 1.0 and by[("quality", "strong")]["rate"] == 0.5
    assert by[("style", "strong")]["answers"] == 4 * 32 and by[("style", "strong")]["raters"] == 4
    strong = by[("style", "strong")]
    assert strong["high"] < 0.5 and "degrades" in strong["verdict"]
    assert strong["low"] <= strong["low95"] and strong["high95"] <= strong["high"]     # Holm widens
    assert "prefer the style of the condition" in by[("style", "same")]["verdict"]
    weak = by[("style", "weak")]          # every rater at 0.5, but on seeds 0-1 they choose it, on 2-3 never
    assert weak["low"] < 0.5 < weak["high"]
    # too few raters: no interval, the words say why
    few = study.analyse(_answers(tmp_path / "few.csv", _constructed(["r1", "r2"], {"strong": 0.25})))
    assert all(r["verdict"].startswith("inconclusive: too few samples (2 rater(s)") and "low" not in r
               for r in few["rows"])


def test_equivalence_needs_the_whole_interval_near_one_half(tmp_path):
    raters = [f"r{i}" for i in range(8)]
    rows = []
    for rater in raters:
        rows += [{"rater": rater, "trial": "c", "kind": "attention", "condition": "attention", "seed": -1,
                  "prompt": 0, "question": "style", "chose_condition": 1}]
        for s in range(6):
            for p in range(16):
                rows.append({"rater": rater, "trial": f"{s}-{p}", "condition": "x", "seed": s, "prompt": p,
                             "question": "style", "chose_condition": (s + p + int(rater[1:])) % 2})
    row = study.analyse(_answers(tmp_path / "a.csv", rows), resamples=1000)["rows"][0]
    assert row["rate"] == 0.5 and 0.4 <= row["low"] and row["high"] <= 0.6
    assert row["verdict"].startswith("indistinguishable")


def test_the_bootstrap_interval_covers_a_known_rate_under_rater_seed_and_prompt_effects():
    """Answers drawn from a logit model with random rater, seed and prompt effects: the 95 % interval
    must cover the population rate at least 90 % of the time (the module's documented coverage)."""
    rng = np.random.default_rng(7)
    sd, mu = 0.6, 0.4
    truth = float(np.mean(1 / (1 + np.exp(-(mu + rng.normal(0, sd * np.sqrt(3), 400_000))))))
    hits, runs = 0, 120
    for i in range(runs):
        r, s, p = rng.normal(0, sd, 5), rng.normal(0, sd, 5), rng.normal(0, sd, 8)
        logit = mu + r[:, None, None] + s[None, :, None] + p[None, None, :]
        y = (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(float).ravel()
        a, b, c = (x.ravel() for x in np.meshgrid(np.arange(5), np.arange(5), np.arange(8), indexing="ij"))
        means = study.bootstrap(y, a, b, c, resamples=400, seed=i)
        lo, hi = np.nanquantile(means, [0.025, 0.975])
        hits += lo <= truth <= hi
    assert hits / runs >= 0.9, hits / runs


def _serve(folder: Path):
    httpd = study.server(folder, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def _post(url: str, data: dict):
    req = urllib.request.Request(url + "/api/answer", json.dumps(data).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_server_saves_each_answer_as_it_comes_and_a_restart_keeps_them(tmp_path):
    study.make_study(_run(tmp_path / "run"), tmp_path / "s", pairs=3, attention=1)
    httpd, url = _serve(tmp_path / "s")
    try:
        with urllib.request.urlopen(url + "/api/trials?rater=ann") as r:
            trials = json.loads(r.read())["trials"]
        assert len(trials) == 3 * 3 + 1 and all(set(t) == {"id", "left", "right", "references"} for t in trials)
        with urllib.request.urlopen(url + "/" + trials[0]["left"]) as r:
            assert r.headers["Content-Type"] == "image/png"
        assert _post(url, {"rater": "ann", "trial": trials[0]["id"], "question": "style", "choice": "left"}) == \
            (200, {"ok": True, "recorded": True})
        rows = list(csv.DictReader(open(tmp_path / "s" / "answers.csv")))      # on disk at once
        assert len(rows) == 1 and rows[0]["choice"] == "left"
        assert _post(url, {"rater": "ann", "trial": trials[0]["id"], "question": "style", "choice": "right"})[1] == \
            {"ok": True, "recorded": False}                                    # a second click does not count
        for bad in ({"rater": "ann", "trial": "nope", "question": "style", "choice": "left"},
                    {"rater": "ann", "trial": trials[0]["id"], "question": "colour", "choice": "left"},
                    {"rater": "a b/../", "trial": trials[0]["id"], "question": "style", "choice": "left"},
                    {"rater": "ann"}):
            assert _post(url, bad)[0] == 400
        for path in ("/study.json", "/images/../study.json", "/answers.csv"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(url + path)                             # the key never leaves the server
    finally:
        httpd.shutdown()
        httpd.server_close()
    httpd, url = _serve(tmp_path / "s")
    try:
        with urllib.request.urlopen(url + "/api/trials?rater=ann") as r:
            assert json.loads(r.read())["answered"] == {trials[0]["id"]: ["style"]}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_study_command_makes_and_analyses_and_refuses_in_one_line(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["study", str(run), "-o", str(tmp_path / "s"), "--pairs", "4", "-q"]) == 0
    assert (tmp_path / "s" / "study.json").is_file() and (tmp_path / "s" / "index.html").is_file()
    csv_path = _answers(tmp_path / "answers.csv", _constructed(["r1", "r2", "r3"], {"advdm@16": 0.25}))
    capsys.readouterr()
    assert main(["study", "--analyse", str(csv_path), "-o", str(tmp_path / "an")]) == 0
    printed = capsys.readouterr().out
    assert "3 of 3 rater(s) kept" in printed and "advdm@16 vs clean: 0.25 [" in printed
    saved = json.loads((tmp_path / "an" / "results.json").read_text())["rows"]
    assert {r["question"]: r["rate"] for r in saved} == {"style": 0.25, "quality": 0.5}
    for argv, words in ((["study"], "give one of"), (["study", str(run)], "needs -o"),
                        (["study", str(run), "--analyse", str(csv_path)], "got RUN, --analyse"),
                        (["study", "--serve", str(tmp_path)], "not a study folder"),
                        (["study", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")], "no results.json"),
                        (["study", str(run), "-o", str(tmp_path / "y"), "--conditions", "sds@16"], "no cells of condition sds@16"),
                        (["study", "--analyse", str(run / "results.json")], "not a study's answers.csv")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)


def test_a_scripted_rater_answers_a_study_in_chromium_across_a_closed_tab(tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "this test needs Debian's chromium: apt-get install chromium"
    made = study.make_study(_run(tmp_path / "run"), tmp_path / "s", pairs=4, attention=2,
                            conditions=["advdm@16", "glaze@16"])
    key = {t["id"]: t for t in study.arrangement(made, "rater-1")}

    def pick(trial: str, question: str) -> str:
        """The scripted rater: the original on attention checks; on style, always the advdm mimicry
        and never the glaze one; on quality, always the left picture."""
        t = key[trial]
        other = "right" if t["condition_side"] == "left" else "left"
        if t["kind"] == "attention":
            return t["condition_side"]
        if question == "quality":
            return "left"
        return t["condition_side"] if t["condition"] == "advdm@16" else other

    httpd, url = _serve(tmp_path / "s")
    answered = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            try:
                for visit, limit in enumerate((3, None)):       # three pairs, close the tab; then the rest
                    page = browser.new_page()
                    errors = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(url)
                    page.fill("#rater", "rater-1")
                    page.click("#start")
                    done = 0
                    while limit is None or done < limit:
                        page.wait_for_selector("#task:not([hidden]), #done:not([hidden])")
                        if page.is_visible("#done"):
                            break
                        trial = page.get_attribute("#task", "data-trial")
                        assert page.locator("#refs img").count() == 4
                        for q in ("style", "quality"):
                            page.click(f'.q button[data-question="{q}"][data-choice="{pick(trial, q)}"]')
                        page.wait_for_function(f"document.querySelector('#task').dataset.trial !== '{trial}'"
                                               " || !document.querySelector('#done').hidden")
                        done += 1
                    answered += done
                    assert not errors, errors
                    if limit is not None:
                        page.close()            # mid-study: nothing may be lost
                    else:
                        assert page.is_visible("#done")
            finally:
                browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert answered == len(made["trials"]) == 2 * 4 + 2
    rows = list(csv.DictReader(open(tmp_path / "s" / "answers.csv")))
    assert len(rows) == 2 * len(made["trials"]) and len({(r["trial"], r["question"]) for r in rows}) == len(rows)
    result = study.analyse(tmp_path / "s" / "answers.csv", resamples=200)
    by = {(r["question"], r["condition"]): r["rate"] for r in result["rows"]}
    assert result["kept_raters"] == ["rater-1"]
    assert by[("style", "advdm@16")] == 1.0 and by[("style", "glaze@16")] == 0.0
    assert by[("quality", "advdm@16")] == 0.5 == by[("quality", "glaze@16")]      # sides balanced: half left
