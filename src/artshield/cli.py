"""The artshield command line: parse, call the Python API, write files. No algorithm lives here.

Exit codes: 0 done; 1 some inputs failed (the others were done, the failures are listed);
2 usage or setup error (one line on stderr saying what and where).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import ArtshieldError

# Commands of the design that this version does not have yet: the CLI says so instead of faking.
PLANNED = {
    "protect": "adversarial protections (advdm, mist, sds, photoguard, glaze, aspl)",
    "purify": "purifiers (bilateral, jpeg, noise, noisy-upscale, diffpure, impress)",
    "mimic": "mimicry fine-tuning (lora, textual-inversion, dreambooth, hypernetwork)",
    "erase": "concept erasure (esd-x, esd-u)",
    "audit": "memorisation audit (extraction attack, memorisation detection)",
    "demo": "the protect-purify-mimic demo",
}
BENCH_PRESETS = ("model-quality",)


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", module=r"huggingface_hub(\..*)?")
    for name in ("transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


class _Progress:
    """A tqdm bar on stderr unless --quiet."""

    def __init__(self, args, total: int, desc: str):
        self.bar = None
        if not args.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _environment() -> dict:
    import diffusers
    import torch
    import transformers

    return {"artshield": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _output_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ArtshieldError(f"-o {path}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(args, out: Path, results: dict) -> int:
    from .io import write_json

    write_json(results, out / "results.json")
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    elif not args.quiet:
        print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 0


def cmd_generate(args) -> int:
    from .generate import generate
    from .io import write_image
    from .models import load_model

    if args.n < 1:
        raise ArtshieldError("-n must be at least 1")
    start = time.time()
    out = _output_dir(args.output)
    bundle = load_model(args.model, args.device)
    prompts = [p for p in args.prompt for _ in range(args.n)]
    bar = _Progress(args, len(prompts), "generate")
    images = generate(bundle, prompts, seed=args.seed, steps=args.steps, guidance=args.guidance,
                      progress=bar)
    bar.close()
    files = []
    for i, (img, prompt) in enumerate(zip(images, prompts)):
        path = write_image(img, out / f"{i:04d}.png")
        files.append({"file": path.name, "prompt": prompt, "seed": args.seed + i})
    results = {
        "command": "generate", "model": bundle.describe(), "seed": args.seed,
        "steps": args.steps or bundle.defaults.get("steps"),
        "guidance": args.guidance if args.guidance is not None else bundle.defaults.get("guidance"),
        "images": files, "seconds": round(time.time() - start, 2), "environment": _environment(),
    }
    return _finish(args, out, results)


def cmd_bench(args) -> int:
    if args.preset not in BENCH_PRESETS:
        raise ArtshieldError(f"bench --preset {args.preset}: not available in artshield {__version__} yet "
                             f"(available: {', '.join(BENCH_PRESETS)})")
    from . import corpus
    from .bench import model_quality
    from .io import grid, write_image
    from .metrics.judge import Judge
    from .models import load_model

    out = _output_dir(args.output)
    bundle = load_model(args.model, args.device)
    judge = Judge.load()
    n = args.per_theme * len(corpus.themes(heldout=False))
    bar = _Progress(args, n, "model-quality")
    figures, images, items = model_quality.run(bundle, judge, seed=args.seed, per_theme=args.per_theme,
                                               steps=args.steps, guidance=args.guidance, progress=bar)
    bar.close()
    # a sample sheet: one row per training theme, its first 8 generations
    rows = []
    for theme in corpus.themes(heldout=False):
        rows.extend([k for k, it in enumerate(items) if it.theme == theme][:8])
    write_image(grid(images[rows], columns=8), out / "samples.png")
    results = {"command": "bench", "preset": args.preset, "model": bundle.describe(), "seed": args.seed,
               "per_theme": args.per_theme, **figures,
               "samples": {"file": "samples.png", "rows": "training themes in corpus order, 8 captions each",
                           "captions": [items[k].caption for k in rows]},
               "environment": _environment()}
    return _finish(args, out, results)


def cmd_planned(args) -> int:
    raise ArtshieldError(f"'{args.command}' ({PLANNED[args.command]}) is not in artshield {__version__} yet")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    common.add_argument("--json", action="store_true", help="also print results.json to stdout")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="mini",
                       help="'mini' (embedded, default), a local diffusers folder, or a hub id org/name")
    model.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    model.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed+i (default 0)")
    model.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    model.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")

    ap = argparse.ArgumentParser(prog="artshield", description="Copyright protection around text-to-image "
                                 "diffusion models: protect, purify, mimic, measure, erase, audit.")
    ap.add_argument("--version", action="version", version=f"artshield {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", parents=[common, model], help="generate images from text prompts")
    g.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    g.add_argument("-n", type=int, default=4, help="images per prompt (default 4)")
    g.add_argument("-o", "--output", required=True, help="output folder (PNG files and results.json)")
    g.set_defaults(func=cmd_generate)

    b = sub.add_parser("bench", parents=[common, model], help="run a measured experiment, write results.json")
    b.add_argument("--preset", default="model-quality", help=f"one of: {', '.join(BENCH_PRESETS)}")
    b.add_argument("--per-theme", type=int, default=16, help="generations per training theme (default 16)")
    b.add_argument("-o", "--output", required=True, help="report folder")
    b.set_defaults(func=cmd_bench)

    for name, what in PLANNED.items():
        p = sub.add_parser(name, help=f"{what} (not in this version yet)", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_planned)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.func(args)
    except ArtshieldError as e:
        print(f"artshield: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artshield: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
