"""Make a bench output folder from a committed run's results.json, so that the run can be resumed
(more seeds, more rows) without computing its finished cells again.

    python scripts/restore_bench.py docs/results/bench-standard OUT
    artshield bench --preset standard -o OUT          # computes only the cells OUT lacks

Each cell's record goes to OUT/cells/KEY.json (KEY from its stored grid's name), its pictures to
OUT/grids and OUT/inputs, and the committed protocol to OUT/protocol.json. Protected and purified
image sets are not committed: a resumed cell that needs one makes it again (same seed, same bytes).
"""
import json
import shutil
import sys
from pathlib import Path

from artshield.io import write_json


def main(source: str, out: str) -> None:
    src, dst = Path(source), Path(out)
    results = json.loads((src / "results.json").read_text())
    (dst / "cells").mkdir(parents=True, exist_ok=True)
    for cell in results["cells"]:
        key = Path(cell["grid"]).stem
        write_json(cell, dst / "cells" / f"{key}.json")
        for rel in (cell["grid"], cell.get("inputs")):
            if rel and (src / rel).is_file():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dst / rel)
    shutil.copy2(src / "protocol.json", dst / "protocol.json")
    print(f"{dst}: {len(results['cells'])} cells restored from {src}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
