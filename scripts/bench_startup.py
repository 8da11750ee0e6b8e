"""How long the command line takes to answer, against importing torch, measured side by side.

    python scripts/bench_startup.py [--repeats 3] [--json FILE]

Each command runs in a fresh interpreter, the commands in turn (round robin, so a busy moment of
the machine touches every one), `--repeats` times; each figure is the best wall time. The ratio
of each command to `python -c "import torch"` is the figure to watch: artshield's package import
and its parser import no heavy library, so --help should cost a small fraction of torch's import.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

BASELINE = "python -c 'import torch'"


def commands() -> dict[str, list[str]]:
    script = shutil.which("artshield")
    cli = [script] if script else [sys.executable, "-m", "artshield.cli"]
    return {BASELINE: [sys.executable, "-c", "import torch"],
            "python -c 'import artshield'": [sys.executable, "-c", "import artshield"],
            "artshield --help": cli + ["--help"],
            "artshield protect --help": cli + ["protect", "--help"],
            "artshield --version": cli + ["--version"]}


def measure(repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in commands()}
    for _ in range(repeats):
        for name, argv in commands().items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    best = measure(args.repeats)
    base = best[BASELINE]
    rows = [{"command": name, "seconds": round(s, 4), "ratio_to_import_torch": round(s / base, 3)}
            for name, s in best.items()]
    for r in rows:
        print(f"{r['command']:<32} {r['seconds']:7.3f} s   {r['ratio_to_import_torch']:5.2f} x import torch")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": f"python scripts/bench_startup.py --repeats {args.repeats}",
                       "best_of": args.repeats, "rows": rows}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
