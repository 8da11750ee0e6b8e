"""Copy a bench run's summary into the repository: results.json, report.html, protocol.json and
each finished cell's grid and inputs image (nothing else: no model, no protected set).

    python scripts/publish_bench.py standard /work/bench-standard-v3 docs/results/bench-standard

It first re-summarises the run folder (`artshield bench --summarise`), so that the committed
table is the one the stored cells give now; a cell being computed meanwhile is left out.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path


def main(preset: str, run: str, dest: str) -> None:
    run_dir, out = Path(run), Path(dest)
    subprocess.run(["artshield", "bench", "--preset", preset, "-o", str(run_dir), "--summarise", "-q"], check=True)
    results = json.loads((run_dir / "results.json").read_text())
    for sub in ("grids", "inputs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    copied = 0
    for cell in results["cells"]:
        for key in ("grid", "inputs"):
            if cell.get(key):
                target = out / cell[key]
                if not target.exists():
                    shutil.copyfile(run_dir / cell[key], target)
                    copied += 1
    for name in ("results.json", "report.html", "protocol.json"):
        shutil.copyfile(run_dir / name, out / name)
    print(f"{len(results['cells'])} cells, {copied} new images -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
