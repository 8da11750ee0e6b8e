"""scripts/mutation.py, the mutation-testing habit: it must tell tests that catch breakage from tests
that do not. Slow: each run is a mutmut run (about two minutes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, *args) -> dict:
    out = tmp_path / "records"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation.py"), "purify/median.py", "-j", "2", "-o",
                           str(out), *args], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((out / "purify-median.json").read_text())
    summary = json.loads((out / "summary.json").read_text())["modules"]["src/artshield/purify/median.py"]
    assert summary["score"] == record["score"] and summary["left"] == len(record["survivors"])
    return record


@pytest.mark.slow
def test_the_mutation_script_kills_the_median_filters_mutants_with_its_tests_and_none_without(tmp_path):
    pytest.importorskip("mutmut")
    own = _run(tmp_path / "own")
    assert own["mutants"] >= 5 and own["score"] >= 0.85, own["counts"]
    unrelated = _run(tmp_path / "unrelated", "--tests", "tests/test_layers.py")
    assert unrelated["mutants"] == own["mutants"] and unrelated["score"] == 0.0
    assert {s["status"] for s in unrelated["survivors"]} <= {"no tests", "survived"}
    assert all(s["diff"] for s in unrelated["survivors"])
