"""Ray: the bench's cells and protect's chunks on a cluster give the serial run's results; a worker
killed mid-run loses only its cell, which is retried; without Ray, --ray says which extra to install."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from artshield.batch import protect_batch
from artshield.bench import experiment
from artshield.io import plan_batch, write_image

ARTSHIELD = [sys.executable, "-m", "artshield.cli"]


def _images(folder: Path, n: int = 4) -> Path:
    g = torch.Generator().manual_seed(3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(torch.rand(3, 24 + 8 * i, 32, generator=g), folder / f"art{i}.png")
    return folder


def test_without_ray_the_flag_names_the_extra(tmp_path, monkeypatch):
    from artshield import cli

    monkeypatch.setitem(sys.modules, "ray", None)            # import ray raises ImportError
    code = cli.main(["protect", str(_images(tmp_path / "in", 1)), "-o", str(tmp_path / "out"), "--ray", "-q"])
    assert code == 2 and not (tmp_path / "out" / "art0.png").exists()


class InlinePool:
    """protect_batch's pool interface, run here: what a Ray pool does, without Ray."""

    def __init__(self, bundle):
        self.bundle, self.jobs = bundle, []

    def map(self, jobs, method, options):
        from artshield.protect import protect

        for pixels, seed in jobs:
            self.jobs.append((len(pixels), seed))
            try:
                yield protect(self.bundle, pixels, method=method, seed=seed, **options), 1.0
            except ValueError as e:
                from artshield.errors import ArtshieldError

                yield ArtshieldError(str(e))


def test_a_pool_gets_the_serial_runs_chunks_and_seeds_and_the_files_are_the_same(tmp_path, tiny_bundle):
    folder = _images(tmp_path / "in", 5)
    serial = plan_batch([str(folder)], str(tmp_path / "serial"), "protected copy")
    protect_batch(tiny_bundle, serial, "advdm", seed=7, batch_size=2, steps=2)
    pooled = plan_batch([str(folder)], str(tmp_path / "pooled"), "protected copy")
    pool = InlinePool(tiny_bundle)
    done = protect_batch(None, pooled, "advdm", seed=7, batch_size=2, pool=pool, steps=2)
    assert pool.jobs == [(2, 7), (2, 9), (1, 11)]
    assert [r["output"] for r in done.records] == [f"art{i}.png" for i in range(5)]
    for i in range(5):
        assert (tmp_path / "serial" / f"art{i}.png").read_bytes() == (tmp_path / "pooled" / f"art{i}.png").read_bytes()


# ------------------------------------------------------------------------------------- a local cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster on loopback: a head node and one more worker node, one CPU each, started as a
    user on a fresh machine would: no HOME, no RAY_* variable inherited, no token file anywhere;
    the cluster's token is made here and handed to every node and driver in their environment."""
    pytest.importorskip("ray")
    from artshield.cluster import local_cluster_env

    port = _free_port()
    env = local_cluster_env(OMP_NUM_THREADS="1")
    env.pop("HOME", None)
    ray = _ray_cli()
    try:
        for role in (["--head", "--port", str(port), "--include-dashboard", "false"], ["--address", f"127.0.0.1:{port}"]):
            started = subprocess.run([ray, "start", *role, "--num-cpus", "1", "--node-ip-address", "127.0.0.1"],
                                     env=env, capture_output=True, text=True, timeout=300)
            assert started.returncode == 0, started.stderr[-3000:]
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=300)


@pytest.mark.slow
def test_a_local_cluster_started_without_home_or_token_file_protects(tmp_path, cluster):
    address, env = cluster
    assert "HOME" not in env and "RAY_AUTH_TOKEN_PATH" not in env and env["RAY_AUTH_MODE"] == "token"
    images = _images(tmp_path / "art", 2)
    done = subprocess.run([*ARTSHIELD, "protect", str(images), "-o", str(tmp_path / "out"), "--batch", "1",
                           "--steps", "1", "--ray", address, "-q"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["ray"]["workers"] == 2 and results["failed"] == [] and len(results["images"]) == 2
    without = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}      # the token is what lets a driver in
    refused = subprocess.run([*ARTSHIELD, "protect", str(images), "-o", str(tmp_path / "refused"), "--steps", "1",
                              "--ray", address, "-q"], env=without, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "cannot join the cluster" in refused.stderr
    assert not (tmp_path / "refused" / "art0.png").exists()


def test_ray_auto_starts_a_private_token_checked_cluster_and_leaves_home_alone(tmp_path):
    """--ray with no cluster running starts one for the command, with a token held in its environment:
    nothing is written to HOME (Ray's own default would save a token in ~/.ray/auth_token)."""
    pytest.importorskip("ray")
    home, ray_tmp = tmp_path / "home", Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))   # short: socket paths
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    try:
        code = ("import os; from artshield.cluster import connect; ray = connect('auto'); "
                "print(os.environ['RAY_AUTH_MODE'], len(os.environ['RAY_AUTH_TOKEN']), "
                "ray.get(ray.remote(lambda: 6 * 7).remote()))")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["token", "64", "42"]
    assert list(home.iterdir()) == []


def _cells(out: Path) -> dict:
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k not in experiment.TIMING}
            for p in sorted((out / "cells").glob("*.json"))}


def _leftovers(out: Path) -> list[str]:
    """Half-written files and cell locks (not the folder's own .artshield.lock, which stays by design)."""
    return [str(p) for p in out.rglob("*") if p.suffix == ".part" or (p.suffix == ".lock" and p.parent.name == "cells")]


@pytest.mark.slow
def test_bench_and_protect_on_a_local_cluster_equal_the_serial_runs(tmp_path, cluster):
    address, env = cluster
    run = (lambda *a: subprocess.run([*ARTSHIELD, *a, "-q"], env=env, capture_output=True, text=True, timeout=1800))
    serial = run("bench", "--preset", "smoke", "-o", str(tmp_path / "serial"))
    wide = run("bench", "--preset", "smoke", "-o", str(tmp_path / "ray"), "--ray", address, "--ray-cpus", "1")
    assert serial.returncode == 0 and wide.returncode == 0, serial.stderr + wide.stderr
    assert len(_cells(tmp_path / "serial")) == 8 and _cells(tmp_path / "serial") == _cells(tmp_path / "ray")
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "ray"))
    assert one["summary"] == two["summary"] and one["controls"] == two["controls"] and two["failed"] == []
    for rel in ("grids", "inputs", "conditions"):
        names = sorted(p.name for p in (tmp_path / "serial" / rel).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "ray" / rel).iterdir())
        assert all((tmp_path / "serial" / rel / n).read_bytes() == (tmp_path / "ray" / rel / n).read_bytes()
                   for n in names if not n.endswith(".safetensors")), rel
    assert not _leftovers(tmp_path / "ray")

    images = _images(tmp_path / "art")
    serial = run("protect", str(images), "-o", str(tmp_path / "p1"), "--batch", "1", "--steps", "3")
    wide = run("protect", str(images), "-o", str(tmp_path / "p2"), "--batch", "1", "--steps", "3", "--ray", address)
    assert serial.returncode == 0 and wide.returncode == 0, serial.stderr + wide.stderr
    for i in range(4):
        assert (tmp_path / "p1" / f"art{i}.png").read_bytes() == (tmp_path / "p2" / f"art{i}.png").read_bytes()
    results = json.loads((tmp_path / "p2" / "results.json").read_text())
    assert results["ray"]["workers"] == 2 and len(results["images"]) == 4 and results["failed"] == []


def _cell_workers() -> list[int]:
    """Processes of Ray workers that are running a bench cell now (Ray names them after the task)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().startswith(b"ray::bench_cell"):
                    found.append(int(p.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_bench_loses_only_its_cell_which_is_retried(tmp_path, cluster):
    address, env = cluster
    out = tmp_path / "killed"
    bench = subprocess.Popen([*ARTSHIELD, "bench", "--preset", "smoke", "-o", str(out), "--ray", address, "-q"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, killed = time.time() + 900, None
        while killed is None and time.time() < deadline and bench.poll() is None:
            running = _cell_workers()
            if running and len(list((out / "cells").glob("*.json"))) >= 1:     # mid-run: a cell done, others running
                killed = running[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.5)
        _, stderr = bench.communicate(timeout=1800)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert killed is not None, "no cell was running to kill"
    assert bench.returncode == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == [] and len(results["cells"]) == results["cells_planned"] == 8
    assert len(list((out / "cells").glob("*.json"))) == 8 and not _leftovers(out)


class _FakeRay:
    """Enough of Ray's API for the bench driver: tasks run when their result is asked for; a cell
    named in `dies` fails as a task whose worker kept dying does (a RayError from get)."""

    class exceptions:
        RayError = type("RayError", (Exception,), {})

    def __init__(self, dies):
        self.dies, self.asked = dies, []

    def cluster_resources(self):
        return {"CPU": 2.0}

    def remote(self, **options):
        ray = self

        class Task:
            def __init__(self, f):
                self.f = f

            def options(self, **resources):
                ray.asked.append(resources)
                return self

            def remote(self, *args):
                return lambda: self.f(*args)
        return Task

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        answer = ref()
        if answer.get("record", {}).get("condition") in self.dies:
            raise self.exceptions.RayError("the worker died 3 times")
        return answer


def test_the_driver_reports_a_cell_whose_worker_keeps_dying_and_writes_the_others(tmp_path, monkeypatch):
    from artshield import cluster
    from artshield.bench.experiment import Preset, Runner

    fake = _FakeRay(dies={"x@8"})
    monkeypatch.setattr(cluster, "connect", lambda address: fake)
    monkeypatch.setattr(cluster, "_model", lambda model: None)
    monkeypatch.setattr(cluster, "_judge", lambda: None)

    def run_cell(self, cell):
        (self.out / "grids").mkdir(exist_ok=True)
        (self.out / "grids" / f"{cell.key}.png").write_bytes(b"png")
        return {**cell.__dict__, "condition": cell.condition, "outcomes": [1, 0], "mimicry_success": 0.5,
                "grid": f"grids/{cell.key}.png"}

    monkeypatch.setattr(experiment.Runner, "run_cell", run_cell)
    p = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=["q"], mimicry=["lora"], seeds=[0], prune=False)
    runner = Runner(None, None, p, tmp_path, log=lambda m: None)
    done = cluster.run_bench(runner, {"spec": "mini"}, "auto", cpus=1)
    assert [r["condition"] for r in done] == ["clean", "clean + q", "x@8 + q"]
    assert [f["condition"] for f in runner.failed] == ["x@8"] and "died" in runner.failed[0]["error"]
    assert fake.asked == [{"num_cpus": 1, "num_gpus": 0}]
    assert all((tmp_path / r["grid"]).read_bytes() == b"png" for r in done)
    assert not _leftovers(tmp_path)
