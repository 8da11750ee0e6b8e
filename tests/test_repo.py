"""The repository's own promises: CI runs README's test command, from a home with nothing in it."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = block.splitlines()
    return next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("# the tests"))


def test_ci_runs_readmes_test_command_word_for_word():
    command = _readme_test_command()
    assert "python -m pytest" in command
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert steps[-1] == command


def test_ci_gives_the_suite_an_empty_home_and_no_ray_settings(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": "/somewhere/auth_token", "RAY_ADDRESS": "x:1"}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a developer's token")
    seen = subprocess.run([str(ROOT / ".ci" / "run"), "bash", "-c", 'echo "$HOME"; ls -A "$HOME" | wc -l; env'],
                          env=env, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    home, entries, variables = seen[0], int(seen[1]), seen[2:]
    assert home != str(tmp_path) and entries == 0
    assert f"HOME={home}" in variables and not [v for v in variables if v.startswith("RAY_")]
    assert not Path(home).exists()                                           # removed when the run ends


def test_the_result_tables_of_readme_and_the_site_are_the_rendering_of_the_committed_json():
    from artshield.bench.tables import MARK, render

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert sum(len(MARK.findall(p.read_text())) for p in pages) >= 10
    assert MARK.search((ROOT / "README.md").read_text())
    for page in pages:
        text = page.read_text()
        assert render(text, ROOT) == text, f"{page.name}'s tables differ from the committed JSON: python scripts/render_readme.py"
