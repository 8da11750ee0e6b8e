"""Wall time of a bench preset run serially and on a local Ray cluster, side by side in one run.

    python -m artshield.bench.scale [--preset smoke] [--workers 2] [--json OUT.json]

Three runs of the same preset into fresh folders, one after the other on this machine:
    serial, 1 thread     `artshield bench` with OMP_NUM_THREADS=1 (what one Ray task gets)
    serial, all threads  `artshield bench` with torch's default threads
    ray, W workers       `artshield bench --ray ADDRESS --ray-cpus 1` on a cluster started here with
                         `ray start --head --num-cpus W` (its start is timed apart and not counted)
Each is the whole command as a user runs it (model loading, Ray's connection and scheduling, the
driver's writes). The Ray run's cells are checked to equal the 1-thread serial run's. The cluster is
stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cluster import local_cluster_env


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.time() - t0


def _cells(out: Path) -> dict:
    from .experiment import TIMING

    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k not in TIMING}
            for p in (out / "cells").glob("*.json")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artshield.bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster, one per task (default 2)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(ray).exists():
        raise SystemExit("Ray is not installed: pip install 'artshield[ray]'")
    cli = [sys.executable, "-m", "artshield.cli", "bench", "--preset", args.preset, "-q"]
    base = local_cluster_env()                 # the cluster's own token, for its nodes and the driver
    one = {**base, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="artshield-scale-") as tmp:
        root = Path(tmp)
        serial_one = _timed([*cli, "-o", str(root / "serial-1")], one)
        serial_all = _timed([*cli, "-o", str(root / "serial-all")], {k: v for k, v in base.items()
                                                                      if k != "OMP_NUM_THREADS"})
        t0 = time.time()
        subprocess.run([ray, "start", "--head", "--port", str(port), "--num-cpus", str(args.workers),
                        "--include-dashboard", "false", "--node-ip-address", "127.0.0.1"], env=one, check=True,
                       capture_output=True)
        start = time.time() - t0
        try:
            wide = _timed([*cli, "-o", str(root / "ray"), "--ray", f"127.0.0.1:{port}", "--ray-cpus", "1"], one)
        finally:
            subprocess.run([ray, "stop", "--force"], env=one, capture_output=True)
        same = _cells(root / "serial-1") == _cells(root / "ray")
        cells = len(_cells(root / "ray"))
    figures = {"command": f"python -m artshield.bench.scale --preset {args.preset} --workers {args.workers}",
               "preset": args.preset, "cells": cells, "cpus": os.cpu_count(), "workers": args.workers,
               "serial_1_thread_s": round(serial_one, 1), "serial_all_threads_s": round(serial_all, 1),
               "ray_s": round(wide, 1), "ray_cluster_start_s": round(start, 1),
               "speedup_vs_1_thread": round(serial_one / wide, 2), "speedup_vs_all_threads": round(serial_all / wide, 2),
               "ray_cells_equal_serial": same}
    print(f"bench --preset {args.preset} ({cells} cells) on {os.cpu_count()} CPU(s)")
    print(f"  serial, 1 thread        {serial_one:7.1f} s")
    print(f"  serial, all threads     {serial_all:7.1f} s")
    print(f"  ray, {args.workers} workers x 1 CPU  {wide:7.1f} s   (cluster start {start:.1f} s, not counted)")
    print(f"  speed-up: {figures['speedup_vs_1_thread']:.2f}x over 1 thread, "
          f"{figures['speedup_vs_all_threads']:.2f}x over all threads; cells equal the serial run's: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
