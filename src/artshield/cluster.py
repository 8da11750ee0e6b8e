"""The bench's cells and protect's images as Ray tasks: many workers behind one driver.

Ray (an optional extra, `pip install "artshield[ray]"`) runs the same code on a laptop as a local
cluster and on a cluster of GPU machines unchanged. `--ray` (or `--ray auto`) joins the cluster
this machine already runs (`ray start --head`) or, when there is none, starts one in-process;
`--ray ADDRESS` joins the cluster at ADDRESS (`host:port` of its head, or `ray://host:10001`).

Tokens. Ray can check a token on every connection (`RAY_AUTH_MODE=token`, the token in
RAY_AUTH_TOKEN, in the file RAY_AUTH_TOKEN_PATH names, or in ~/.ray/auth_token); a cluster that
does must be joined with its token. The private cluster `--ray auto` starts is token-checked with
a fresh token that lives only in this process's environment (and its children's), unless
RAY_AUTH_MODE says otherwise, so nothing is read from or written to the user's home.
`local_cluster_env` gives a `ray start` the same: the scale benchmark and the tests start their
loopback clusters with it.

bench   every cell is a task: one GPU when the cluster has GPUs, else `cpus` CPUs (`--ray-cpus`).
        Cells already finished in OUT are skipped. The driver alone writes OUT: a task works in a
        private temporary folder, gets the condition images it needs from the driver and sends
        back its record and pictures, which the driver writes atomically (the cell's JSON last),
        so workers on other machines need no shared disk. Cells run in two waves: the unpurified
        cells and the controls first (they make the protected sets the purified cells start
        from), then the purified cells of protections that wave did not already decide (see
        bench/experiment.py on pruning). A task whose worker dies is retried by Ray (`retries`
        times); a cell that keeps failing is reported in results.json ("failed") and the others
        complete.
protect the chunks of `--batch` images are tasks on actors, one per worker, each of which loads the
        model once. The seeds are the serial run's (chunk k: seed + k), so the files are the same.

Results equal the serial run's, cell for cell, when both run their tensors on the same number of
threads (`--ray-cpus` sets a task's; a serial run uses torch's default or OMP_NUM_THREADS): only the
`seconds` figures differ. Paths (a `--model` folder, `--surrogate-images`) must exist on every
worker; mini ships inside the package, which every worker needs installed.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from .errors import ArtshieldError

RETRIES = 2          # Ray's retries of a task whose worker died (not of a task that raised)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ArtshieldError("--ray needs Ray, which is an optional extra: pip install 'artshield[ray]'") from None
    return ray


TOKEN_VARIABLES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def local_cluster_env(base: dict | None = None, **extra: str) -> dict:
    """An environment for starting a cluster on this machine (`ray start`) and for its drivers:
    `base` (default os.environ) without any RAY_* variable it carried, in token mode with a fresh
    token of its own (in RAY_AUTH_TOKEN, so no file and no home folder is needed), usage reports
    off, and `extra` on top. Every node and driver given it shares the token."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    env.update(extra)
    return env


UNKNOWN = "unknown"


def _running_cluster() -> str | None:
    """The address of the cluster this machine runs (RAY_ADDRESS, or the last `ray start`), found
    as ray.init(address=None) finds it; None when there is none and a new one would start;
    UNKNOWN when this Ray cannot say (the helper moved): ray.init then decides with its defaults."""
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return UNKNOWN
    return get_ray_address_from_environment(None, None)


def _private_token() -> None:
    """Token mode with a fresh token for the cluster this process is about to start, held in the
    environment its children inherit; a RAY_AUTH_MODE or token the user set is left as it is."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if not any(os.environ.get(k) for k in TOKEN_VARIABLES):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:                                   # Ray caches its settings at import: read the environment again
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        pass


def connect(address: str | None = "auto"):
    """Join the Ray cluster at `address` ("auto"/None: the one this machine runs, else a new local
    one, private to this process and checked with a token of its own); the ray module, initialised."""
    ray = import_ray()
    if not ray.is_initialized():
        target = None if address in (None, "", "auto") else address
        try:
            if target is None:
                target = _running_cluster()
                if target is None:
                    _private_token()
                elif target == UNKNOWN:
                    target = None
            ray.init(address=target, log_to_driver=False, logging_level="ERROR",
                     **({"include_dashboard": False} if target is None else {}))
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            hint = "" if any(os.environ.get(k) for k in TOKEN_VARIABLES) else (
                " (a cluster that checks tokens is joined with its token: copy ~/.ray/auth_token from its head, "
                "or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)")
            raise ArtshieldError(f"--ray {address}: cannot join the cluster: {str(e).splitlines()[0]}{hint}") from None
    return ray


def task_resources(ray, cpus: int) -> dict:
    """What one task asks for: a GPU when the cluster has any (and `cpus` CPUs beside it), else `cpus` CPUs."""
    if cpus < 1:
        raise ArtshieldError("--ray-cpus must be at least 1", param="cpus", value=cpus)
    gpus = ray.cluster_resources().get("GPU", 0)
    return {"num_cpus": cpus, "num_gpus": 1 if gpus >= 1 else 0}


def workers(ray, resources: dict) -> int:
    """How many such tasks the cluster can run at once."""
    total = ray.cluster_resources()
    if resources["num_gpus"]:
        return max(1, int(total.get("GPU", 0)))
    return max(1, int(total.get("CPU", 1) // resources["num_cpus"]))


_MODELS: dict[str, object] = {}


def _model(model: dict):
    """The model of `model` (spec, device, dtype, config, memory options), loaded once per worker
    process: Ray reuses a worker for the next task, which then finds it here."""
    from .models import load_model

    key = json.dumps(model, sort_keys=True)
    if key not in _MODELS:
        _MODELS.clear()
        bundle = load_model(model["spec"], model.get("device", "auto"), dtype=model.get("dtype"),
                            config=model.get("config"))
        if any((model.get("memory") or {}).values()):        # the command's memory options, on the worker too
            bundle.save_memory(**model["memory"])
        _MODELS[key] = bundle
    return _MODELS[key]


@functools.cache
def _judge():
    from .metrics.judge import Judge

    return Judge.load()


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


# ---------------------------------------------------------------------------------------------- bench

def bench_cell(model: dict, preset: dict, cell: dict, files: dict[str, bytes], threads: int) -> dict:
    """One cell, on a worker: {"record", "files"} (the pictures and condition sets it made, by path
    relative to OUT), or {"error"} when the cell raised."""
    from .bench.experiment import Cell, Preset, Runner

    _threads(threads)
    bundle = _model(model)
    the_cell = Cell(**cell)
    with tempfile.TemporaryDirectory(prefix="artshield-cell-") as tmp:
        root = Path(tmp)
        for rel, blob in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(blob)
        runner = Runner(bundle, _judge(), Preset(**preset), root, log=lambda m: None)
        t0 = time.time()
        try:
            record = runner.run_cell(the_cell)
        except (ValueError, RuntimeError, OSError) as e:
            return {"error": f"{the_cell.key}: {type(e).__name__}: {e}"}
        record["seconds"] = round(time.time() - t0, 1)
        made = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and str(p.relative_to(root)) not in files}
    return {"record": record, "files": made}


def run_bench(runner, model: dict, address: str | None = "auto", cpus: int = 1, retries: int = RETRIES,
              log=print) -> list[dict]:
    """Run the cells of `runner`'s preset that OUT lacks, as Ray tasks; the stored records of every
    finished cell (as Runner.run returns them). Failed cells are in runner.failed."""
    from .bench.experiment import Cell, _claim, cells
    from .io import write_json

    runner.check_protocol()
    ray = connect(address)
    resources = task_resources(ray, cpus)
    remote = ray.remote(max_retries=retries)(bench_cell).options(**resources)
    preset, out = asdict(runner.preset), runner.out
    todo = cells(runner.preset)
    index = {c: k for k, c in enumerate(todo)}
    runner.failed, runner.elsewhere = [], []
    (out / "cells").mkdir(parents=True, exist_ok=True)
    log(f"ray: {workers(ray, resources)} task(s) at a time, each with {resources['num_cpus']} CPU(s)"
        + (" and 1 GPU" if resources["num_gpus"] else ""))

    def wave(batch):
        running, locks = {}, {}
        for cell in batch:
            path = runner.cell_path(cell)
            if path.exists():
                continue
            lock = path.with_suffix(".lock")
            if not _claim(lock):                   # a serial worker on the same folder has it
                runner.elsewhere.append(cell.condition)
                continue
            files = {str(p.relative_to(out)): p.read_bytes() for p in runner.condition_files(cell) if p.exists()}
            ref = remote.remote(model, preset, asdict(cell), files, resources["num_cpus"])
            running[ref], locks[ref] = cell, lock
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            cell, lock = running.pop(ref), locks.pop(ref)
            tag = f"[{index[cell] + 1}/{len(todo)}] {cell.artist} {cell.condition} {cell.mimicry}"
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayError as e:       # its worker died more often than Ray retries
                answer = {"error": f"{cell.key}: {type(e).__name__}: {str(e).splitlines()[0]}"}
            try:
                if "error" in answer:
                    runner.failed.append({"cell": asdict(cell), "condition": cell.condition, "error": answer["error"]})
                    log(f"{tag}: FAILED ({answer['error']})")
                    continue
                for rel, blob in answer["files"].items():
                    target = out / rel
                    if not (rel.startswith("conditions/") and target.exists()):
                        _write_bytes(blob, target)
                write_json(answer["record"], runner.cell_path(cell))     # last: a cell's JSON means it is whole
                log(f"{tag}: mimicry success {answer['record']['mimicry_success']:.3f} "
                    f"({answer['record']['seconds']:.0f}s on a worker; {len(running)} running)")
            finally:
                lock.unlink(missing_ok=True)

    first = [c for c in todo if c.purifier == "none" or c.protection == "none"]
    wave(first)
    pruned = {Cell(**p["cell"]) for p in runner.pruned()}
    wave([c for c in todo if c not in first and c not in pruned])
    return [json.loads(runner.cell_path(c).read_text()) for c in todo if runner.cell_path(c).exists()]


def _write_bytes(blob: bytes, path: Path) -> None:
    from .io import _atomic_write

    _atomic_write(path, lambda f: f.write(blob))


# -------------------------------------------------------------------------------------------- protect

class Protector:
    """A worker that holds the model (loaded once) and protects the chunks it is given."""

    def __init__(self, model: dict, threads: int):
        _threads(threads)
        self.bundle = _model(model)

    def describe(self) -> dict:
        return self.bundle.describe()

    def protect(self, pixels: list, method: str, seed: int, options: dict):
        """(ProtectResult, seconds), or (the error as one line, None) when the method raised."""
        from .protect import protect

        t0 = time.time()
        try:
            made = protect(self.bundle, pixels, method=method, seed=seed, **options)
        except (RuntimeError, ValueError, ArtshieldError) as e:
            return str(e).splitlines()[0] if str(e) else type(e).__name__, None
        return made, time.time() - t0


class ProtectPool:
    """Protect's chunks on a pool of Protector actors; `map` yields results in the order of its jobs."""

    def __init__(self, model: dict, address: str | None = "auto", cpus: int = 1, retries: int = RETRIES,
                 size: int | None = None):
        ray = connect(address)
        self.ray = ray
        resources = task_resources(ray, cpus)
        n = size or workers(ray, resources)
        actor = ray.remote(max_restarts=retries, max_task_retries=retries)(Protector).options(**resources)
        self.actors = [actor.remote(model, resources["num_cpus"]) for _ in range(n)]
        self.size, self.resources = n, resources

    def describe(self) -> dict:
        return self.ray.get(self.actors[0].describe.remote())

    def map(self, jobs, method: str, options: dict):
        """For each (pixels, seed) of `jobs`, in order: (ProtectResult, seconds), or an ArtshieldError
        for a chunk that raised (or whose actor died more often than Ray restarts it). Jobs are
        taken as actors become free, so a long batch is not read into memory all at once."""
        ray, jobs = self.ray, iter(jobs)
        free, busy, done = list(self.actors), {}, {}
        taken = given = 0
        exhausted = False
        while True:
            while free and not exhausted:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                actor = free.pop()
                busy[actor.protect.remote(job[0], method, job[1], options)] = (actor, taken)
                taken += 1
            if given in done:
                yield done.pop(given)
                given += 1
                continue
            if exhausted and given == taken:
                return
            (ref,), _ = ray.wait(list(busy), num_returns=1)
            actor, k = busy.pop(ref)
            free.append(actor)
            try:
                made, seconds = ray.get(ref)
                done[k] = ArtshieldError(made) if seconds is None else (made, seconds)
            except ray.exceptions.RayError as e:
                done[k] = ArtshieldError(f"a Ray worker failed: {type(e).__name__}: {str(e).splitlines()[0]}")

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
