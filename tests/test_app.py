"""The app (artshield ui): uploads and limits, the protect job, a gradio_client call, and the page
driven in a real headless Chromium (Debian's, through Playwright)."""
import hashlib
import io
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artshield.app import Jobs, Limits, Models, UploadError, gather_uploads, protect_job


def _png(path: Path, size=(24, 20), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_uploads_take_images_and_zips_and_refuse_the_rest_in_one_line_each(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    (tmp_path / "notes.png").write_text("this is text, not a picture")
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        z.write(b, "inner/b.png")                       # same name as an upload: kept under another name
        z.writestr("../../escape.png", _png(tmp_path / "c.png", seed=2).read_bytes())
    big = _png(tmp_path / "big.png", size=(40, 40))
    accepted, problems = gather_uploads([str(a), str(tmp_path / "notes.png"), str(b), str(tmp_path / "set.zip"),
                                         str(big)], tmp_path / "job", Limits(pixels=1000))
    assert [p.name for p in accepted] == ["a.png", "b.png", "b-2.png", "escape.png"]
    assert all(p.parent == tmp_path / "job" for p in accepted) and not (tmp_path.parent / "escape.png").exists()
    assert len(problems) == 2 and problems[0].startswith("notes.png") and "40x40" in problems[1]
    assert all("\n" not in m and str(tmp_path / "job") not in m for m in problems)
    _, problems = gather_uploads([str(a)] * 3, tmp_path / "job2", Limits(files=2))
    assert problems == ["a.png: skipped, at most 2 images per job"]
    _, problems = gather_uploads([str(a)], tmp_path / "job3", Limits(bytes=100))
    assert "MB allowed" in problems[0]
    bad_zip = tmp_path / "broken.zip"
    bad_zip.write_bytes(b"PK not really")
    assert gather_uploads([str(bad_zip)], tmp_path / "job4", Limits())[1] == ["broken.zip: not a readable zip file"]


def test_a_protect_job_stays_within_budget_and_never_touches_the_uploads(tmp_path, tiny_model_dir):
    uploads = [_png(tmp_path / "a.png"), _png(tmp_path / "b.png", size=(16, 16), seed=3)]
    (tmp_path / "bad.png").write_text("text")
    before = {p: _digest(p) for p in uploads}
    made = protect_job(Models(), Jobs(tmp_path / "jobs"), Limits(), [str(p) for p in uploads] + [str(tmp_path / "bad.png")],
                       strength="low", steps=2, model=str(tiny_model_dir))
    assert {p: _digest(p) for p in uploads} == before
    assert [p.name for p in made["outputs"]] == ["a.png", "b.png"] and made["budget"] == 8
    assert len(made["problems"]) == 1 and made["problems"][0].startswith("bad.png")
    for out, src in zip(made["outputs"], uploads):
        change = np.abs(np.asarray(Image.open(out), int) - np.asarray(Image.open(src), int)).max()
        assert 0 < change <= 8
    with zipfile.ZipFile(made["zip"]) as z:
        assert sorted(z.namelist()) == ["a.png", "b.png"]
    assert len(made["gallery"]) == 6 and (made["job"] / "protected" / "protect-report.html").is_file()
    with pytest.raises(UploadError, match="no image to protect: bad.png"):
        protect_job(Models(), Jobs(tmp_path / "jobs"), Limits(), [str(tmp_path / "bad.png")], model=str(tiny_model_dir))
    with pytest.raises(UploadError, match="strength 'max'"):
        protect_job(Models(), Jobs(tmp_path / "jobs"), Limits(), [str(uploads[0])], strength="max")


def test_ui_without_gradio_names_the_extra(monkeypatch, capsys):
    import builtins

    from artshield.cli import main

    real = builtins.__import__

    def no_gradio(name, *a, **k):
        if name == "gradio":
            raise ImportError("no gradio")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    assert main(["ui", "--port", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "artshield[ui]" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    from artshield.app import serve

    app, url = serve(port=_free_port(), block=False, jobs=str(tmp_path / "jobs"))
    yield url
    app.close()


def _budget_respected(zip_bytes: bytes, originals: dict[str, Path], budget: int) -> None:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        assert sorted(z.namelist()) == sorted(originals)
        for name in z.namelist():
            protected = np.asarray(Image.open(io.BytesIO(z.read(name))), int)
            original = np.asarray(Image.open(originals[name]), int)
            assert protected.shape == original.shape and 0 < np.abs(protected - original).max() <= budget


@pytest.mark.slow
def test_a_script_protects_through_gradio_client(served, tmp_path):
    from gradio_client import Client, handle_file

    a, b = _png(tmp_path / "a.png", (32, 32)), _png(tmp_path / "b.png", (40, 28), seed=1)
    before = {p: _digest(p) for p in (a, b)}
    result = Client(served, verbose=False).predict([handle_file(str(a)), handle_file(str(b))], "default",
                                                   api_name="/protect")
    _budget_respected(Path(result).read_bytes(), {"a.png": a, "b.png": b}, 16)
    assert {p: _digest(p) for p in (a, b)} == before


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the app's browser test needs Debian's chromium: apt-get install chromium"
    return chromium


@pytest.mark.slow
def test_the_app_in_a_real_browser(served, tmp_path, monkeypatch):
    """Upload two images, protect with the default strength on mini, download the zip, check every file
    against the budget and the originals; a text file named .png gives its error in the page; the Check
    tab produces a report (a reduced quick check: the server runs in this process)."""
    from playwright.sync_api import sync_playwright

    from artshield.bench import check

    monkeypatch.setitem(check.LEVELS, "quick", check.Thoroughness((0,), 4, 10))      # were anything to run

    a, b = _png(tmp_path / "a.png", (48, 48)), _png(tmp_path / "b.png", (30, 40), seed=1)
    before = {p: _digest(p) for p in (a, b)}
    (tmp_path / "notes.png").write_text("this is text, not a picture")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            page.goto(served)
            page.locator("#protect-files input[type=file]").set_input_files([str(a), str(b)])
            page.locator("#protect-eta").get_by_text("2 file(s)").wait_for(timeout=120_000)
            page.locator("#protect-go").click()
            page.locator("#protect-status").get_by_text("Protected 2 image(s)").wait_for(timeout=600_000)
            with page.expect_download() as download:
                page.locator("#protect-zip a[download]").first.click()
            _budget_respected(Path(download.value.path()).read_bytes(), {"a.png": a, "b.png": b}, 16)
            assert page.locator("#protect-gallery img").count() >= 6
            page.locator("#protect-files button[aria-label='Clear']").first.click()
            page.locator("#protect-files input[type=file]").set_input_files([str(tmp_path / "notes.png")])
            page.locator("#protect-eta").get_by_text("1 file(s)").wait_for(timeout=120_000)
            page.locator("#protect-go").click()
            page.locator("#protect-status").get_by_text("Could not protect").wait_for(timeout=120_000)
            message = page.locator("#protect-status").inner_text()
            assert "notes.png" in message and "not" in message.split("notes.png")[1]
            page.get_by_role("tab", name="Check").click()
            page.locator("#check-files input[type=file]").set_input_files([str(a), str(b)])
            page.locator("#check-go").click()
            page.locator("#check-status").get_by_text("16/255:").wait_for(timeout=600_000)
            verdict = page.locator("#check-status").inner_text()
            # two images cannot show that the judge tells this style apart: the page says exactly that, and
            # that nothing was trained (no number that would read as a verdict)
            assert "inconclusive: this judge cannot tell this style apart (too few of the artist's images" in verdict
            assert "holds" not in verdict and "does not protect" not in verdict
            frame = page.frame_locator("#check-report iframe")
            frame.get_by_role("heading", name="The judge: can it tell this style apart?").wait_for(timeout=60_000)
            assert "Nothing was trained" in frame.locator("body").inner_text()
            assert frame.locator("img").count() == 0 and page.locator("#check-zip a[download]").count() == 1
        finally:
            browser.close()
    assert {p: _digest(p) for p in (a, b)} == before


def test_model_tools_run_the_cli_into_a_job_and_report_its_error_in_one_line(tmp_path, tiny_model_dir):
    from artshield.app import tool_job

    jobs = Jobs(tmp_path / "jobs")
    made = tool_job(jobs, "erase", ["--concept", "folder", "--method", "uce", "--model", str(tiny_model_dir), "--no-eval"])
    assert made["results"]["method"] == "uce" and made["report"].is_file()
    with zipfile.ZipFile(made["zip"]) as z:
        assert "report.html" in z.namelist() and not any(n.endswith(".safetensors") for n in z.namelist())
    prompts = tmp_path / "p.txt"
    prompts.write_text("folder icon\ntrash can icon\n")
    made = tool_job(jobs, "audit", ["--prompts", str(prompts), "--generations", "3", "--min-clique", "2", "--steps", "2",
                                    "--model", str(tiny_model_dir)])
    assert made["results"]["prompts"] == 2 and "Every prompt" in made["report"].read_text()
    with pytest.raises(UploadError, match="--method nope") as e:
        tool_job(jobs, "erase", ["--concept", "x", "--method", "nope", "--model", str(tiny_model_dir)])
    assert "\n" not in str(e.value)
    with pytest.raises(UploadError, match="needs local weights"):        # the erase tab's judge, without its weights
        tool_job(jobs, "erase", ["--concept", "x", "--method", "uce", "--model", str(tiny_model_dir), "--judge", "clip"])


def test_the_check_job_takes_a_style_judge_and_refuses_a_missing_one_in_one_line(tmp_path, tiny_model_dir):
    from artshield.app import check_job

    files = [str(_png(tmp_path / f"{i}.png", (32, 32), seed=i)) for i in range(3)]
    with pytest.raises(UploadError, match="judge='clip': needs local weights") as e:
        check_job(Models(), Jobs(tmp_path / "jobs"), Limits(), files, judge="clip", model=str(tiny_model_dir))
    assert "\n" not in str(e.value)
    made = check_job(Models(), Jobs(tmp_path / "jobs"), Limits(), files, judge="icon", model=str(tiny_model_dir))
    assert made["results"]["judge_check"]["judge"] == "icon" and "too few of the artist's images" in made["summary"]


def test_the_dataset_job_tests_two_upload_sets_and_refuses_short_ones_in_one_line(tmp_path, tiny_model_dir):
    from artshield.app import dataset_job

    jobs = Jobs(tmp_path / "jobs")
    mine = [str(_png(tmp_path / f"m{i}.png", (32, 32), seed=i)) for i in range(10)]
    held = [str(_png(tmp_path / f"h{i}.png", (32, 32), seed=100 + i)) for i in range(10)]
    (tmp_path / "notes.png").write_text("text")
    before = {p: _digest(Path(p)) for p in mine + held}
    made = dataset_job(jobs, Limits(), mine + [str(tmp_path / "notes.png")], held, model=str(tiny_model_dir))
    r = made["results"]
    assert r["mode"] == "dataset inference" and r["suspect"] == 10 and r["heldout"] == 10
    assert 0 < r["p_value"] <= 1 and r["alpha"] == 0.01 and made["report"].is_file()
    assert len(made["problems"]) == 1 and made["problems"][0].startswith("your images: notes.png")
    with pytest.raises(UploadError, match="at least 10 usable images in each set .unpublished images: 9") as e:
        dataset_job(jobs, Limits(), mine, held[:9], model=str(tiny_model_dir))
    assert "\n" not in str(e.value)
    with pytest.raises(UploadError, match="--adapter"):
        dataset_job(jobs, Limits(), mine, held, adapter=str(tmp_path / "nowhere"), model=str(tiny_model_dir))
    assert {p: _digest(Path(p)) for p in mine + held} == before


@pytest.mark.slow
def test_the_dataset_tab_in_a_real_browser(served, tmp_path):
    """Upload ten images and ten unpublished ones on mini, run the test, read the verdict and the report."""
    from playwright.sync_api import sync_playwright

    mine = [str(_png(tmp_path / f"m{i}.png", (32, 32), seed=i)) for i in range(10)]
    held = [str(_png(tmp_path / f"h{i}.png", (32, 32), seed=100 + i)) for i in range(10)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(served)
            page.get_by_role("tab", name="Was my art used?").click()
            page.locator("#dataset-mine input[type=file]").set_input_files(mine)
            page.locator("#dataset-heldout input[type=file]").set_input_files(held[:5])
            page.locator("#dataset-go").click()
            page.locator("#dataset-status").get_by_text("Could not test").wait_for(timeout=120_000)
            assert "unpublished images: 5" in page.locator("#dataset-status").inner_text()
            page.locator("#dataset-heldout button[aria-label='Clear']").first.click()
            page.locator("#dataset-heldout input[type=file]").set_input_files(held)
            page.locator("#dataset-go").click()
            page.locator("#dataset-status").get_by_text("10 of your images against 10 unpublished").wait_for(
                timeout=600_000)
            status = page.locator("#dataset-status").inner_text()
            assert "p = " in status and ("No evidence" in status or "Evidence of training" in status)
            frame = page.frame_locator("iframe[title=report]")
            frame.locator("body").get_by_text("p = ").first.wait_for(timeout=60_000)
        finally:
            browser.close()
