"""The adaptive attack: train a denoiser against one protection, on images that are not the artist's.

    python -m artshield.bench.adaptive --protection robust --budget 16 -o docs/results/adaptive \\
        --cache /tmp/adaptive-pairs

The attacker knows the protection (it is published) and runs it, with the bench's settings, on icons
of mini's *training* themes (never a held-out artist the bench scores): `--per-theme` icons of each
theme's training split to train on and `--val-per-theme` others to validate on. A denoiser
(purify/denoiser.py) learns to map each protected icon back to its original. The weights go to
`--weights` (default: the shipped assets/denoisers/PROTECTION-BUDGET.safetensors, which
`purify --method denoiser` and the bench's `denoiser` purifier load), and OUT/results.json records the
command, the settings, and on the validation pairs the PSNR to the original of the protected copy,
of its denoised copy, and of the denoised *clean* image (what the denoiser does to art that was never
protected). Whether mimicry comes back is the bench's question: the `adaptive` preset runs the
denoiser as a purifier (`artshield bench --preset adaptive`).

The protected pairs are slow to make (robust: about 20 s an icon on one CPU thread), so `--cache`
keeps them in a safetensors file keyed by the settings; a rerun trains again without protecting again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import corpus
from ..io import write_json
from ..metrics.image import psnr
from ..models import load_model
from ..protect import protect
from ..purify.denoiser import SHIPPED, train_denoiser, save_denoiser


def pairs(bundle, protection: str, budget: float, per_theme: int, val_per_theme: int, seed: int, options: dict,
          cache: Path | None, log=print) -> dict:
    """{"train": (protected, clean), "val": (protected, clean)}: icons of every training theme at 64 px,
    chosen with `seed`, protected by one call of the protection (the bench's way: score=False)."""
    chosen = {"train": [], "val": []}
    rng = np.random.default_rng(seed)
    for theme in corpus.themes(heldout=False):
        items = corpus.items(split="train", theme=theme)
        order = rng.permutation(len(items))[:per_theme + val_per_theme]
        chosen["train"] += [items[i] for i in order[:per_theme]]
        chosen["val"] += [items[i] for i in order[per_theme:]]
    key = hashlib.sha256(json.dumps({"protection": protection, "budget": budget, "seed": seed, "options": options,
                                     "items": {k: [i.file for i in v] for k, v in chosen.items()}},
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = None if cache is None else Path(cache) / f"{protection}-{budget:g}-{key}.safetensors"
    if path is not None and path.is_file():
        from safetensors.torch import load_file

        stored = load_file(str(path))
        log(f"pairs: reused {path}")
        return {k: (list(stored[f"{k}_protected"]), list(stored[f"{k}_clean"])) for k in chosen}
    out = {}
    for split, items in chosen.items():
        clean = list(corpus.load_images(items, 64))
        t0 = time.time()
        result = protect(bundle, clean, method=options.get("method", protection), budget=budget, seed=seed,
                         score=False, **{k: v for k, v in options.items() if k != "method"})
        out[split] = (result.protected(clean), clean)
        log(f"pairs: {len(clean)} {split} icons protected by {protection}@{budget:g} in {time.time() - t0:.0f} s")
    if path is not None:
        from ..io import write_safetensors

        path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors({f"{k}_{which}": torch.stack(v[j]) for k, v in out.items()
                           for j, which in enumerate(("protected", "clean"))}, path, {"key": key})
    return out


def evaluate(net, protected: list[torch.Tensor], clean: list[torch.Tensor]) -> dict:
    """Mean PSNR to the originals (dB) of the protected, denoised-protected and denoised-clean images."""
    with torch.no_grad():
        den_p = [net(p[None])[0].clamp(0, 1) for p in protected]
        den_c = [net(c[None])[0].clamp(0, 1) for c in clean]
    return {"images": len(clean),
            "protected_psnr_db": float(np.mean([psnr(p, c) for p, c in zip(protected, clean)])),
            "denoised_protected_psnr_db": float(np.mean([psnr(d, c) for d, c in zip(den_p, clean)])),
            "denoised_clean_psnr_db": float(np.mean([psnr(d, c) for d, c in zip(den_c, clean)]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artshield.bench.adaptive", description=__doc__.split("\n\n")[0])
    ap.add_argument("--protection", default="robust")
    ap.add_argument("--budget", type=float, default=16)
    ap.add_argument("--preset", default="mimics", help="the bench preset whose protect_options the attacker copies")
    ap.add_argument("--per-theme", type=int, default=4)
    ap.add_argument("--val-per-theme", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--weights", default=None, help="where the denoiser goes (default: the shipped PROTECTION-BUDGET)")
    ap.add_argument("--cache", default=None, help="a folder that keeps the protected pairs between runs")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    from .experiment import PRESETS

    if args.per_theme < 1 or args.val_per_theme < 1:
        ap.error("--per-theme and --val-per-theme must be at least 1")
    if args.preset not in PRESETS:
        ap.error(f"--preset {args.preset}: not a bench preset ({', '.join(PRESETS)})")
    options = dict(PRESETS[args.preset].protect_options.get(args.protection, {}))
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    start = time.time()
    bundle = load_model(args.model, device="cpu")
    data = pairs(bundle, args.protection, args.budget, args.per_theme, args.val_per_theme, args.seed, options,
                 Path(args.cache) if args.cache else None, log)
    t0 = time.time()
    net, losses = train_denoiser(*data["train"], steps=args.steps, lr=args.lr, width=args.width, depth=args.depth,
                                 seed=args.seed)
    train_seconds = time.time() - t0
    name = f"{args.protection}-{args.budget:g}"
    about = {"protection": args.protection, "budget": args.budget, "protect_options": options,
             "model": args.model, "pairs": len(data["train"][0]), "image_size": 64, "steps": args.steps,
             "themes": corpus.themes(heldout=False)}
    weights = save_denoiser(net, Path(args.weights) if args.weights else SHIPPED / f"{name}.safetensors", about)
    command = "python -m artshield.bench.adaptive " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": command, "weights": name if not args.weights else str(weights),
               "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), **about,
               "lr": args.lr, "width": args.width, "depth": args.depth, "seed": args.seed,
               "loss_first_last": [losses[0], float(np.mean(losses[-100:]))],
               "train": evaluate(net, *data["train"]), "validation": evaluate(net, *data["val"]),
               "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - start, 1)}
    out = Path(args.output)
    write_json(results, out / "results.json")
    v = results["validation"]
    log(f"validation ({v['images']} icons): protected {v['protected_psnr_db']:.2f} dB -> denoised "
        f"{v['denoised_protected_psnr_db']:.2f} dB; clean through the denoiser {v['denoised_clean_psnr_db']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
