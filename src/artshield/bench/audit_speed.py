"""CPU time of the extraction attack's filter: all pairwise tiled-L2 distances of N generations of
one caption, the near-duplicate graph and the clique search, as in `artshield audit`.

    python -m artshield.bench.audit_speed [--n 500] [--sizes 32,64,128] [--json FILE]

Half of the images are noisy copies of one picture (a memorised caption), half are random, so the
clique search has real work. Each figure is the best of --repeats runs, in process CPU seconds.
"""
from __future__ import annotations

import argparse
import time

import torch

from ..audit.extract import ExtractConfig, filter_generations


def measure(n: int, size: int, repeats: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size, size, generator=g)
    copies = (base + 0.02 * torch.randn(n // 2, 3, size, size, generator=g)).clamp(0, 1)
    images = torch.cat([copies, torch.rand(n - n // 2, 3, size, size, generator=g)])
    cfg = ExtractConfig(generations=n)
    best, rec = float("inf"), {}
    for _ in range(repeats):
        t0 = time.process_time()
        rec = filter_generations(images, cfg)
        best = min(best, time.process_time() - t0)
    return {"generations": n, "size": size, "cpu_seconds": round(best, 4), "clique_size": rec["clique_size"],
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [measure(args.n, int(s), args.repeats) for s in args.sizes.split(",")]
    for r in rows:
        print(f"{r['generations']} generations of {r['size']}x{r['size']}: {r['cpu_seconds']:.3f} s CPU "
              f"(clique {r['clique_size']}, {r['threads']} threads)")
    if args.json:
        from ..io import write_json

        write_json({"command": "python -m artshield.bench.audit_speed " + f"--n {args.n} --sizes {args.sizes}",
                    "rows": rows}, args.json)


if __name__ == "__main__":
    main()
