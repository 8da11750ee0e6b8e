"""The documentation site (mkdocs.yml, docs/): it builds in strict mode (a broken link or anchor, or
a page left out of the navigation, fails the build), every page opens in Debian's chromium with
every image loaded and every link to a file of the site resolving, and README stays a short
entrance whose links all lead somewhere."""
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(out)], capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def _nav_pages() -> list[str]:
    import yaml

    pages = []

    def walk(entries):
        for entry in entries:
            for value in entry.values():
                walk(value) if isinstance(value, list) else pages.append(value)
    walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    return pages


def test_every_page_of_the_site_is_in_its_navigation():
    pages = _nav_pages()
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    for need in ("getting-started.md", "artists.md", "verdicts.md", "results.md", "own-model.md", "api.md"):
        assert need in pages, need


def test_the_built_site_shows_every_image_and_links_only_to_files_it_has(site):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "this test needs Debian's chromium: apt-get install chromium"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    seen_images = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                for name in _nav_pages():
                    url = urljoin(base, "" if name == "index.md" else name[:-3] + "/")
                    response = page.goto(url, wait_until="load")
                    assert response is not None and response.ok, (name, response and response.status)
                    assert page.locator("h1").count() >= 1, name
                    broken = page.evaluate("Array.from(document.images)"
                                           ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
                    assert not broken, (name, broken)
                    source = (ROOT / "docs" / name).read_text()
                    wanted = len(re.findall(r"!\[[^\]]*\]\(", source)) + source.count("<img ")
                    shown = page.evaluate("document.querySelectorAll('article img').length")
                    assert shown >= wanted, (name, shown, wanted)
                    seen_images += shown
                    for href in page.evaluate("Array.from(document.querySelectorAll('article a[href]'))"
                                              ".map(a => a.href)"):
                        target = urlparse(href)
                        if target.netloc != urlparse(base).netloc:
                            continue
                        path = site / unquote(target.path).lstrip("/")
                        assert path.is_file() or (path / "index.html").is_file(), (name, href)
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert seen_images >= 2                   # the app's screenshot and mini's samples, at least


def test_readme_is_a_short_entrance_whose_links_lead_somewhere():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 10
    for link in local:
        assert (ROOT / link).exists(), link
    for page in _nav_pages():
        assert f"docs/{page}" in text or page == "index.md", page
