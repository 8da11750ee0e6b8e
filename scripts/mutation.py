"""Mutation testing of the core numerical modules (mutmut 3): does a test fail when the code breaks?

    pip install -e ".[mutation]"                         # mutmut 3 and pytest-timeout
    python scripts/mutation.py bench/stats.py            # one module (a path under src/artshield/)
    python scripts/mutation.py --all                     # every module in MODULES, one after another
    python scripts/mutation.py --list                    # the modules and the tests run against each

mutmut writes its mutants beside the code, so each module is run in a scratch copy of src/, tests/,
docs/results/ and pyproject.toml (the checkout is never touched) with a [tool.mutmut] section that mutates that
module alone and runs only its tests (MODULES: the fast tests that exercise it; mutmut then runs,
for each mutant, only the tests that call the mutated function). Each module's record goes to
docs/results/mutation/NAME.json: the command, the tests, mutmut's count of each status, the score,
and every mutant that no test killed with its diff; summary.json keeps every module's figures. The score is killed / (killed + survived + no
tests): a mutant no selected test reaches counts against the module, a timeout counts as killed (the
tests did not pass). docs/mutation.md renders the scores from those files
(`python scripts/render_readme.py`) and says why each remaining survivor is harmless or what test
would kill it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "mutation"

# module under src/artshield/ -> the tests run against its mutants (fast lane unless named)
MODULES = {
    "bench/stats.py": ["tests/test_stats.py"],
    "protect/transforms.py": ["tests/test_transforms.py", "tests/test_engine.py"],
    "protect/engine.py": ["tests/test_engine.py"],
    "protect/robust.py": ["tests/test_robust.py"],
    # the shared primitives have their own known-answer tests (every other test reaches them too, through
    # a protection's or a mimic's whole run, at minutes per mutant)
    "models/diffusion.py": ["tests/test_primitives.py"],
    "models/views.py": ["tests/test_primitives.py"],
    **{f"metrics/{name}.py": ["tests/test_metrics.py", "tests/test_judge.py", "tests/test_judges.py"]
       for name in ("image", "lpips")},
    # the judges' known answers (test_judging.py); of test_judges.py all but the two that run a bench cell and an
    # erasure on mini (minutes per mutant, and every part they reach has its known answer)
    **{f"metrics/{name}.py": ["tests/test_judging.py", "tests/test_judge.py", "tests/test_judges.py", "-k",
                              "not bench_judges and not erase_reads"] for name in ("judge", "judges")},
    # known answers in test_metrics.py (the judges' tests reach them too, at a model's cost per mutant)
    **{f"metrics/{name}.py": ["tests/test_metrics.py"] for name in ("distribution", "precision_recall")},
    **{f"purify/{name}.py": ["tests/test_purify.py"]
       for name in ("base", "bilateral", "jpeg", "gaussian_noise", "gaussian_blur", "median", "denoiser", "diffpure",
                    "impress", "noisy_upscale")},
    "purify/_redraw.py": ["tests/test_primitives.py", "tests/test_purify.py"],
}
# mutmut's statuses as `mutmut results --all true` prints them
KILLED = ("killed", "timeout", "caught by type check")
COUNTED = KILLED + ("survived", "no tests")


def _config(module: str, tests: list[str], timeout: int) -> str:
    return ("\n[tool.mutmut]\n"
            'source_paths = ["src"]\n'
            'also_copy = ["docs"]\n'
            f'only_mutate = ["src/artshield/{module}"]\n'
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
            'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-q", '
            f'"--timeout", "{timeout}"]\n')


def fork_safe_environment() -> dict:
    """This environment with one thread per process for OpenMP, MKL and OpenCV. mutmut forks each
    mutant's test process from one that has already run tests; a child forked after torch's OpenMP
    pool has started waits forever on the pool's lock at its first parallel operation, and mutmut
    would record that as a timeout (a false kill). -j runs processes side by side instead."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}


def _limit_memory(gib: float):
    """For the mutmut process and every test process it forks: allocations past `gib` GiB of address
    space fail (a mutant that makes a test allocate without bound fails that test instead of
    swapping the machine to a halt)."""
    def apply():
        import resource

        limit = int(gib * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_module(module: str, tests: list[str], jobs: int, log=print, timeout: int = 600,
               memory_gib: float = 8.0) -> dict:
    """Mutate one module in a scratch copy and return its record. Each test may run `timeout`
    seconds (pytest-timeout) and each process that runs tests `memory_gib` GiB of address space; past
    either the test fails, so the mutant counts as killed."""
    if not (ROOT / "src" / "artshield" / module).is_file():
        raise SystemExit(f"{module}: no such module under src/artshield/")
    with tempfile.TemporaryDirectory(prefix="artshield-mutation-") as scratch:
        work = Path(scratch)
        shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "docs" / "results", work / "docs" / "results")     # records some tests read
        text = (ROOT / "pyproject.toml").read_text()
        (work / "pyproject.toml").write_text(re.sub(r"\n\[tool\.mutmut\].*?(?=\n\[|\Z)", "", text, flags=re.S)
                                             + _config(module, tests, timeout))
        env = fork_safe_environment()
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)], cwd=work,
                              env=env, capture_output=True, text=True, preexec_fn=_limit_memory(memory_gib))
        seconds = time.time() - start
        reached_none = "could not find any test case for any mutant" in done.stdout + done.stderr
        if done.returncode != 0 and not reached_none:
            raise SystemExit(f"{module}: mutmut failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
        listed = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                                capture_output=True, text=True, check=True).stdout
        status = dict(re.findall(r"^\s*(\S+): (.+?)\s*$", listed, re.M))
        if reached_none:             # mutmut stops before running anything when no test reaches a mutant
            status = {name: "no tests" for name in status}
        counts = {s: sum(v == s for v in status.values()) for s in sorted(set(status.values()))}
        survivors = []
        for name, state in sorted(status.items()):
            if state not in KILLED:
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=env,
                                      capture_output=True, text=True).stdout
                survivors.append({"mutant": name, "status": state, "diff": _trim(diff)})
    killed = sum(counts.get(s, 0) for s in KILLED)
    counted = sum(counts.get(s, 0) for s in COUNTED)
    record = {"command": f"python scripts/mutation.py {module}" + ("" if tests == MODULES.get(module) else
                                                                  f" --tests {' '.join(tests)}"), "module": f"src/artshield/{module}",
              "tests": tests, "counts": counts, "mutants": len(status), "killed": killed, "counted": counted,
              "score": round(killed / counted, 4) if counted else None, "seconds": round(seconds),
              "mutmut": _version(), "limits": {"test_seconds": timeout, "memory_gib": memory_gib},
              "survivors": survivors}
    log(f"{module}: {killed}/{counted} killed ({100 * record['score']:.1f} %), {len(survivors)} left, "
        f"{seconds / 60:.1f} min")
    return record


def _trim(diff: str) -> str:
    """The diff's changed lines and a line of context, without mutmut's file headers."""
    keep = [line for line in diff.splitlines() if line[:1] in "+-@ " and not line.startswith(("+++", "---"))]
    return "\n".join(keep[:40])


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="paths under src/artshield/ (default: none; see --all)")
    ap.add_argument("--all", action="store_true", help="every module in MODULES")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tests", nargs="+", help="the tests to run instead of the module's own (MODULES)")
    ap.add_argument("-j", "--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--timeout", type=int, default=600, help="seconds one test may run (default 600)")
    ap.add_argument("--memory-gib", type=float, default=8.0,
                    help="address space the tests may take, in GiB (default 8)")
    ap.add_argument("-o", "--output", default=str(OUT))
    args = ap.parse_args(argv)
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    modules = list(MODULES) if args.all else args.modules
    if not modules:
        ap.error("name a module (or --all, --list)")
    try:
        import mutmut  # noqa: F401
        import pytest_timeout  # noqa: F401
    except ImportError:
        ap.error('mutmut or pytest-timeout is not installed: pip install -e ".[mutation]"')
    from artshield.io import write_json

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for module in modules:
        record = run_module(module, args.tests or MODULES.get(module, ["tests"]), args.jobs,
                            timeout=args.timeout, memory_gib=args.memory_gib)
        name = module.replace("/", "-").removesuffix(".py") + ".json"
        write_json(record, out / name)
        write_json(summarise(out), out / "summary.json")
    return 0


def summarise(out: Path) -> dict:
    """Every module's figures, from the records in `out` (so runs side by side cannot drop each other's)."""
    modules = {}
    for path in sorted(out.glob("*.json")):
        if path.name == "summary.json":
            continue
        record = json.loads(path.read_text())
        modules[record["module"]] = {"record": path.name, **{k: record[k] for k in (
            "command", "tests", "counts", "mutants", "killed", "counted", "score", "seconds", "mutmut")},
            "left": len(record["survivors"])}
    return {"modules": dict(sorted(modules.items()))}


if __name__ == "__main__":
    sys.exit(main())
