"""The committed bench report, opened in Debian's chromium: relative mimicry and quality per
protection and purifier, with intervals, and the rule in one paragraph, as a reader sees them."""
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench-standard"


@contextmanager
def _opened(path: Path):
    """`path` opened in Debian's chromium: the page, and the console errors it logs."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "this test needs Debian's chromium: apt-get install chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(path.as_uri())
            yield page, errors
        finally:
            browser.close()


def test_the_committed_bench_report_reads_in_a_real_browser():
    results = json.loads((REPORT / "results.json").read_text())
    robust = next(r for r in results["summary"] if r["protection"] == "robust" and r["budget"] == 16)
    with _opened(REPORT / "report.html") as (page, errors):
        rule = page.locator(".note").first.inner_text()
        for words in ("relative-mimicry tests", "holds", "does not protect", "broken by P", "inconclusive",
                      "Quality"):
            assert words in rule, words
        table = page.locator("table").first
        header = table.locator("tr").first.inner_text()
        for column in ("no purifier", *results["preset"]["purifiers"], "verdict", "quality"):
            assert column in header, column
        row = table.locator("tr", has_text="robust 16/255")
        cells = row.locator("td").all_inner_texts()
        shown = f"{robust['relative']['none']['mean']:.2f} [{robust['relative']['none']['low']:.2f}, "
        assert any(c.startswith(shown) for c in cells), cells
        assert robust["verdict"] in cells and sum("[" in c for c in cells) >= 2 + len(results["preset"]["purifiers"])
        quality = page.get_by_role("heading", name="Quality per purifier")
        assert quality.count() == 1
        assert page.locator("svg").first.is_visible() and "Relative mimicry" in page.locator("svg").first.inner_html()
        assert errors == []


def test_the_dataset_inference_page_reads_in_a_real_browser(tmp_path):
    """The page `audit --dataset` writes, from a record made of constructed signals: the verdict and
    its one-sentence p-value, the two charts drawn, one row per signal, no console error."""
    import numpy as np

    from artshield.audit import dataset
    from artshield.audit.report import dataset_page

    rng = np.random.default_rng(0)
    suspect, heldout = rng.normal(size=(12, 15)) - 0.8, rng.normal(size=(12, 15))
    r = dataset.dataset_inference(suspect, heldout, permutations=199)
    d = dataset.effect_sizes(suspect, heldout)
    record = {**{k: v for k, v in r.items() if k != "scores"}, "alpha": 0.01, "trained_on": r["p_value"] <= 0.01,
              "verdict": dataset.verdict(r["p_value"], 0.01), "explained": dataset.explain(r["p_value"]),
              "scores": {"suspect": r["scores"][:12], "heldout": r["scores"][12:]}, "timesteps": list(dataset.TIMESTEPS),
              "features": [{"name": n, "suspect_mean": float(suspect[:, j].mean()), "heldout_mean":
                            float(heldout[:, j].mean()), "effect_size": float(d[j])}
                           for j, n in enumerate(dataset.feature_names())],
              "model": {"spec": "mini"}, "adapter": None, "folders": {"dataset": "mine/", "heldout": "unpublished/"},
              "failed": [], "seconds": 1.0}
    (tmp_path / "report.html").write_text(dataset_page(record))
    with _opened(tmp_path / "report.html") as (page, errors):
        note = page.locator(".note").first.inner_text()
        assert "evidence that the model was trained on the suspect images" in note and "once in" in note
        assert page.locator("svg").count() == 2 and all(page.locator("svg").nth(i).is_visible() for i in range(2))
        assert page.locator("table").nth(1).locator("tr").count() == 1 + 15
        assert "mine/" in page.content() and errors == []
