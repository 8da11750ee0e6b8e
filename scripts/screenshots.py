"""Screenshots of the app and of every report at 1280 px, taken in Debian's chromium (Playwright).

    python scripts/screenshots.py -o docs/screenshots

The Protect tab after protecting two sample images with the default strength on mini; the demo
page (`artshield demo`); the protect page of the same two images; the committed bench, audit and
erase reports. JPEG, the top 2,400 pixels of each page.
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def samples(folder: Path) -> list[Path]:
    import skimage.data

    from artshield import corpus

    folder.mkdir(parents=True, exist_ok=True)
    icon = corpus.items(split="finetune", theme="gartoon")[0]
    a = folder / f"{icon.path.stem}.png"
    Image.open(icon.path).convert("RGB").save(a)
    b = folder / "coffee.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.coffee())).save(b)
    return [a, b]


def shoot(page, url: str, target: Path) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    height = min(2400, page.evaluate("document.documentElement.scrollHeight"))
    page.screenshot(path=str(target), type="jpeg", quality=80, full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": height})
    print(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import sync_playwright

    from artshield.app import serve
    from artshield.cli import main as artshield

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="artshield-shots-"))
    images = samples(work / "art")
    assert artshield(["demo", "-o", str(work / "demo"), "-q"]) == 0
    assert artshield(["protect", *map(str, images), "-o", str(work / "protected"), "-q"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, url = serve(port=port, block=False, jobs=str(work / "jobs"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#protect-files input[type=file]").set_input_files([str(p) for p in images])
            page.locator("#protect-eta").get_by_text("2 file(s)").wait_for(timeout=300_000)
            page.locator("#protect-go").click()
            page.locator("#protect-status").get_by_text("Protected 2 image(s)").wait_for(timeout=3_600_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "app-protect.jpg"), type="jpeg", quality=80, full_page=True)
            print(args.out / "app-protect.jpg")
            results = ROOT / "docs" / "results"
            for name, where in (("demo-page", work / "demo" / "index.html"),
                                ("protect-page", work / "protected" / "protect-report.html"),
                                ("bench-report", results / "bench-quick" / "report.html"),
                                ("audit-report", results / "audit" / "report.html"),
                                ("erase-report", results / "erase" / "uce-faenza-style" / "report.html")):
                shoot(page, where.resolve().as_uri(), args.out / f"{name}.jpg")
            browser.close()
    finally:
        app.close()


if __name__ == "__main__":
    main()
