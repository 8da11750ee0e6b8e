"""scripts/mutation.py, the mutation-testing habit: it must tell tests that catch breakage from tests
that do not. Slow: each run is a mutmut run (about two minutes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, *args, module: str = "purify/median.py") -> dict:
    out = tmp_path / "records"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation.py"), module, "-j", "2", "-o",
                           str(out), *args], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((out / (module.replace("/", "-").removesuffix(".py") + ".json")).read_text())
    summary = json.loads((out / "summary.json").read_text())["modules"][f"src/artshield/{module}"]
    assert summary["score"] == record["score"] and summary["left"] == len(record["survivors"])
    return record


# the subset CI measures on every push (a few minutes): the shared primitives and the optimiser every
# protection runs on; the other modules are measured by hand (docs/mutation.md)
EVERY_PUSH = ["models/views.py", "models/diffusion.py", "protect/engine.py"]


@pytest.mark.slow
@pytest.mark.parametrize("module", EVERY_PUSH)
def test_the_core_modules_keep_their_mutation_score_on_every_push(tmp_path, module):
    pytest.importorskip("mutmut")
    record = _run(tmp_path, module=module)
    assert record["score"] >= 0.85, (record["counts"], [s["mutant"] for s in record["survivors"]])


@pytest.mark.slow
def test_the_mutation_script_kills_the_median_filters_mutants_with_its_tests_and_none_without(tmp_path):
    pytest.importorskip("mutmut")
    own = _run(tmp_path / "own")
    assert own["mutants"] >= 5 and own["score"] >= 0.85, own["counts"]
    unrelated = _run(tmp_path / "unrelated", "--tests", "tests/test_layers.py")
    assert unrelated["mutants"] == own["mutants"] and unrelated["score"] == 0.0
    assert {s["status"] for s in unrelated["survivors"]} <= {"no tests", "survived"}
    assert all(s["diff"] for s in unrelated["survivors"])


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_mutant_that_hangs_or_allocates_without_bound_fails_its_test_instead_of_stalling_the_run():
    script = _script()
    config = script._config("bench/stats.py", ["tests/test_stats.py"], 90)
    assert '"--timeout", "90"' in config and 'only_mutate = ["src/artshield/bench/stats.py"]' in config
    grab = "import torch\ntry:\n    torch.zeros(2 ** 29)\nexcept RuntimeError:\n    print('refused')\nelse:\n    print('allowed')"
    limited = subprocess.run([sys.executable, "-c", grab], capture_output=True, text=True,
                             preexec_fn=script._limit_memory(1.5))
    assert limited.stdout.strip() == "refused", limited.stderr[-500:]      # 2 GiB of floats past a 1.5 GiB limit
    free = subprocess.run([sys.executable, "-c", grab], capture_output=True, text=True)
    assert free.stdout.strip() == "allowed"


FORK = """
import os, numpy as np, cv2, torch
a = np.random.rand(256, 256).astype(np.float32)
cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
torch.randn(512, 512) @ torch.randn(512, 512)          # starts torch's thread pool in the parent
pid = os.fork()
if pid == 0:
    cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    torch.randn(512, 512) @ torch.randn(512, 512)
    os._exit(0)
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_mutants_run_in_processes_that_a_fork_cannot_deadlock():
    # mutmut forks each mutant's tests from a process that already ran tests: with torch's OpenMP pool
    # started, the child hangs, and mutmut counts the hang as a timeout, a kill the tests never made
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=120,
                          env=_script().fork_safe_environment())
    assert done.stdout.strip() == "child 0", done.stderr[-500:]


def short_name(mutant: str) -> str:
    """mutmut's mutant name as docs/mutation.md writes it: `ssim__mutmut_15`, `Median.one__mutmut_9`."""
    last = mutant.split(".")[-1]
    if last.startswith("x\u01c1"):
        return last[2:].replace("\u01c1", ".", 1)
    return last.removeprefix("x_")


def test_every_survivor_of_every_measured_module_is_explained_on_the_mutation_page():
    import re

    page = (ROOT / "docs" / "mutation.md").read_text()
    missing, survivors = [], set()
    for record in sorted((ROOT / "docs" / "results" / "mutation").glob("*.json")):
        if record.name == "summary.json":
            continue
        for survivor in json.loads(record.read_text())["survivors"]:
            survivors.add(short_name(survivor["mutant"]))
            if f"`{short_name(survivor['mutant'])}`" not in page:
                missing.append(f"{record.stem}: {short_name(survivor['mutant'])}")
    assert not missing, missing
    stale = set(re.findall(r"`([A-Za-z_.]+__mutmut_\d+)`", page)) - survivors     # killed since, or renumbered
    assert not stale, sorted(stale)
    assert short_name("artshield.purify.median.x\u01c1Median\u01c1one__mutmut_9") == "Median.one__mutmut_9"
