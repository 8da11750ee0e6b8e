"""The artshield command line: parse, call the Python API, write files. No algorithm lives here.

Exit codes: 0 done; 1 some inputs failed (the others were done, the failures are listed);
2 usage or setup error (one line on stderr saying what and where).

Only the standard library is imported at module level: `artshield --help` answers without
loading torch, diffusers or transformers; each command imports what it runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from . import __version__, names
from .errors import ArtshieldError
from .provenance import environment

# library parameter -> the flag a command-line user typed it with
FLAGS = {p: f"--{p}" for p in ("model", "device", "adapter", "method", "prompts", "candidates", "batch", "option")} | {
    "concepts": "--concept", "output": "-o"}


def _quiet_libraries(quiet: bool) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", module=r"huggingface_hub(\..*)?")
    for name in ("transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if quiet:                    # -q: no library warning reaches stderr either
        warnings.simplefilter("ignore")


def _progress(args, total: int | None, desc: str, unit: str = "img"):
    """A tqdm bar on stderr, silent with --quiet; its `update` is the API's progress callback."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=args.quiet)


def _load(args, **kw):
    from .models import load_model

    return load_model(args.model, args.device, **kw)


def _output_dir(args, *own: str) -> Path:
    from .io import claim_output

    return claim_output(args.output, args.command, own)


def _write_images(out: Path, files: dict) -> None:
    from .io import write_image

    for name, image in files.items():
        write_image(image, out / name)


def _finish(args, out: Path, results: dict) -> int:
    """Write results.json and list the inputs that failed (even when results.json cannot be written:
    a full disk); exit code 1 when some failed, else 0."""
    from .io import write_json

    failures = results.get("failed") or []
    try:
        write_json(results, out / "results.json")
    finally:
        if failures:
            print(f"artshield: {len(failures)} input(s) failed:", *(f"  {f['error']}" for f in failures), sep="\n",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    elif not args.quiet:
        print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 1 if failures else 0


def _warn(args, message: str) -> None:
    if not args.quiet:
        print(f"artshield: warning: {message}", file=sys.stderr)


def _check_method(args, family: str, **options) -> None:
    """--method names a method of `family` and `options` fit its config: checked before any model is
    loaded or any folder made."""
    from .options import registry

    known = names.FAMILIES[family]
    if args.method not in known:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(known)}")
    try:
        registry(family).config(args.method, **options)
    except (ValueError, TypeError) as e:
        raise ArtshieldError(f"--method {args.method}: {e}") from None


def _check_common(args) -> None:
    """The options several commands share, checked before anything is loaded or written."""
    import math

    from .io import check_output_folder
    from .models.loader import check_spec

    check_output_folder(args.output)
    check_spec(getattr(args, "model", "mini"))
    if not 0 <= getattr(args, "seed", 0) < 2**63:
        raise ArtshieldError(f"--seed {args.seed}: must be in [0, 2**63 - 1]")
    if getattr(args, "steps", None) is not None and args.command in ("generate", "bench", "erase", "audit") \
            and not 1 <= args.steps <= 1000:
        raise ArtshieldError(f"--steps {args.steps}: sampling steps must be in [1, 1000]")
    guidance = getattr(args, "guidance", None)
    if guidance is not None and not (math.isfinite(guidance) and 0 <= guidance <= 100):
        raise ArtshieldError(f"--guidance {guidance}: must be a finite number in [0, 100]")
    for flag in ("n", "per_theme", "eval_prompts", "detect_generations", "detect_steps", "batch"):
        value = getattr(args, flag, None)
        if value is not None and not 1 <= value <= 100_000:
            raise ArtshieldError(f"-{'-' * (len(flag) > 1)}{flag.replace('_', '-')} {value}: must be in [1, 100000]")
    if getattr(args, "recovery_steps", 0) < 0:
        raise ArtshieldError(f"--recovery-steps {args.recovery_steps}: must be 0 (no attack) or more")


def cmd_generate(args) -> int:
    from .generate import generate

    start = time.time()
    bundle = _load(args)
    adapter = None
    if args.adapter:
        from .mimic import Adapter

        adapter = Adapter.load(args.adapter)
        if adapter.info.get("base_model") not in (None, args.model):
            _warn(args, f"--adapter {args.adapter} was trained on {adapter.info['base_model']}, not {args.model}")
        adapter.apply(bundle, folder=args.adapter)
    prompts = [adapter.prompt(p) if adapter else p for p in args.prompt for _ in range(args.n)]
    bar = _progress(args, len(prompts), "generate")
    images = generate(bundle, prompts, seed=args.seed, steps=args.steps, guidance=args.guidance, progress=bar.update)
    bar.close()
    out = _output_dir(args)
    _write_images(out, {f"{i:04d}.png": img for i, img in enumerate(images)})
    return _finish(args, out, {
        "command": "generate", "model": bundle.describe(), "seed": args.seed,
        "adapter": {"folder": args.adapter, **adapter.info} if adapter else None,
        "steps": args.steps or bundle.conventions.steps,
        "guidance": args.guidance if args.guidance is not None else bundle.conventions.guidance,
        "images": [{"file": f"{i:04d}.png", "prompt": p, "seed": args.seed + i} for i, p in enumerate(prompts)],
        "seconds": round(time.time() - start, 2), "environment": environment()})


def cmd_bench(args) -> int:
    if args.preset not in names.BENCH_PRESETS:
        raise ArtshieldError(f"bench --preset {args.preset}: unknown (available: {', '.join(names.BENCH_PRESETS)})")
    if args.preset != "model-quality":
        return _bench_experiment(args)
    from .bench import model_quality

    out = _output_dir(args)
    bundle = _load(args)
    bar = _progress(args, model_quality.generations(args.per_theme), "model-quality")
    results, sheet = model_quality.report(bundle, seed=args.seed, per_theme=args.per_theme, steps=args.steps,
                                          guidance=args.guidance, progress=bar.update)
    bar.close()
    _write_images(out, {"samples.png": sheet})
    results = {"command": f"artshield bench --preset {args.preset} -o {args.output}", "preset": args.preset,
               **results, "environment": environment()}
    return _finish(args, out, results)


def _bench_experiment(args) -> int:
    from .bench import experiment, report_html
    from .io import write_text

    if args.model != "mini":
        raise ArtshieldError(f"bench --preset {args.preset} measures with the icon judge, so it needs --model mini")
    out = _output_dir(args, "cells")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    results = experiment.run_preset(_load(args), args.preset, out, log=log)
    results["command"] = f"artshield bench --preset {args.preset} -o {args.output}"
    results["environment"] = environment()
    write_text(report_html.render(results, results["summary"]), out / "report.html")
    return _finish(args, out, results)


def _parse_target(value: str | None):
    """--target: a named target ("texture", "grey", "zero") or an image file."""
    if value is None or value in ("texture", "grey", "zero"):
        return value
    from .io import read_image

    return read_image(value)


def _settings(args) -> dict:
    """What makes a batch's outputs what they are: every option but where, how loud, and the device."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "images", "output", "quiet", "json", "device",
                                                            "overwrite")}


def cmd_protect(args) -> int:
    from .batch import (PROTECT_BYTES_PER_PIXEL, BatchResult, check_memory, chunk_size, protect_batch, protect_steps,
                        reporter)
    from .io import plan_batch

    start = time.time()
    options = {"budget": args.budget, "steps": args.steps, "step": args.step, "prompt": args.prompt,
               "eot": tuple(args.eot.split(",")) if args.eot else None, "target": _parse_target(args.target),
               "target_style": args.target_style}
    _check_method(args, "protect", **options)
    batch = plan_batch(args.images, args.output, "protected copy", args.format == "keep", args.overwrite,
                       settings=_settings(args))
    head = {"command": "protect", "method": args.method, "model": {"spec": args.model}, "seed": args.seed}
    report, checkpoint = reporter(batch, head, start)
    done = BatchResult(batch.done, batch.failures)
    if batch.todo:
        check_memory(batch, chunk_size(args.method, len(batch.todo), args.batch), PROTECT_BYTES_PER_PIXEL)
        bundle = _load(args)
        head["model"] = bundle.describe()
        total = protect_steps(bundle, len(batch.todo), args.method, args.batch, **options)
        bar = _progress(args, total, f"protect ({args.method})", unit="step")
        done = protect_batch(bundle, batch, args.method, args.seed, args.batch, args.format == "keep",
                             progress=bar.update, checkpoint=checkpoint, **options)
        bar.close()
    for rec in (r for r in done.records if "skipped" not in r):
        for note in rec["notes"]:
            _warn(args, f"{rec['file']}: {note}")
    return _finish(args, batch.out, report(done))


def cmd_demo(args) -> int:
    from . import demo
    from .io import write_text

    options = {"budget": args.budget, "steps": args.steps}
    _check_method(args, "protect", **options)
    start = time.time()
    out = _output_dir(args)
    bundle = _load(args)
    total = demo.total_steps(bundle, args.method, **options)     # options were checked by _check_method
    bar = _progress(args, total, f"protect ({args.method})", unit="step")
    made = demo.run(bundle, args.method, seed=args.seed, progress=bar.update, **options)
    bar.close()
    _write_images(out, made.files)
    write_text(made.html, out / "index.html")
    results = {"command": "demo", "method": args.method, "model": bundle.describe(), "seed": args.seed,
               "config": made.config, **made.extra, "images": made.records, "page": "index.html",
               "seconds": round(time.time() - start, 2), "environment": environment()}
    _finish(args, out, results)
    if not args.quiet:
        print(f"open {out / 'index.html'}", file=sys.stderr)
    return 0


def cmd_mimic(args) -> int:
    import torch

    from .io import read_captioned_folder
    from .mimic import fill_captions
    from .options import make_method

    start = time.time()
    options = {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "trigger": args.trigger,
               "seed": args.seed}
    _check_method(args, "mimic", **options)
    folder = read_captioned_folder(args.images) if Path(args.images).is_dir() else None
    if not folder or not (folder.images or folder.failures):
        raise ArtshieldError(f"{args.images}: expected a folder of images (with optional .txt captions beside them)")
    if not folder.images:
        raise ArtshieldError(f"{args.images}: none of its {len(folder.failures)} images could be read")
    bundle = _load(args, dtype=torch.float32)
    template = args.caption or bundle.conventions.style("{trigger}")
    captions = fill_captions(folder.files, folder.captions, template, args.trigger)
    method = make_method("mimic", args.method, bundle, **options)
    bar = _progress(args, method.total_steps(len(folder.images)), f"mimic ({args.method})", unit="step")
    adapter = method.run(folder.images, captions, progress=bar.update)
    bar.close()
    adapter.info.update({"captions": captions, "folder": str(args.images)})
    out = _output_dir(args, "adapter.json")
    adapter.save(out)
    results = {"command": "mimic", "method": args.method, "model": bundle.describe(), "adapter": str(out),
               **{k: v for k, v in adapter.info.items() if k != "captions"}, "captions": captions,
               "failed": folder.failures, "seconds": round(time.time() - start, 2), "environment": environment(),
               "generate_with": f"artshield generate --model {args.model} --adapter {out} "
                                f"--prompt \"{template.format(trigger=args.trigger, name='your subject')}\""}
    return _finish(args, out, results)


def cmd_purify(args) -> int:
    import torch

    from .batch import PURIFY_BYTES_PER_PIXEL, check_memory, purify_batch, reporter
    from .io import plan_batch
    from .options import make_method, parse_assignments, registry

    start = time.time()
    options = parse_assignments(args.option or [])
    _check_method(args, "purify", **options)
    batch = plan_batch(args.images, args.output, "purified copy", args.format == "keep", args.overwrite,
                       settings=_settings(args))
    check_memory(batch, 1, PURIFY_BYTES_PER_PIXEL)
    bundle = _load(args) if batch.todo and registry("purify")[args.method].needs_model else None
    try:
        purifier = make_method("purify", args.method, bundle, **options) if batch.todo else None
    except (OSError, ValueError) as e:       # an upscaler folder that does not load
        raise ArtshieldError(f"--method {args.method}: {str(e).splitlines()[0]}") from None
    head = {"command": "purify", "method": args.method, "config": vars(registry("purify").config(args.method,
            **options)), "model": bundle.describe() if bundle else None, "seed": args.seed}
    report, checkpoint = reporter(batch, head, start)
    bar = _progress(args, len(batch.todo), f"purify ({args.method})")
    done = purify_batch(purifier, batch, torch.Generator("cpu").manual_seed(args.seed), args.format == "keep",
                        progress=bar.update, checkpoint=checkpoint)
    bar.close()
    return _finish(args, batch.out, report(done))


def cmd_erase(args) -> int:
    from .erase.evaluate import default_preserve, judged_targets
    from .models.weights import Edit
    from .options import make_method

    start = time.time()
    common = {"templates": args.template, "seed": args.seed}
    own = {"guide": args.guide, "preserve": args.preserve} if args.method == "uce" else \
        {"iterations": args.iterations, "lr": args.lr, "eta": args.eta}
    _check_method(args, "erase", **common, **own)
    concepts = [c.strip() for c in args.concept]
    Edit.check_destination(args.output, args.model)
    bundle = _load(args)
    targets = judged_targets(bundle, concepts)
    per_other = max(2, args.eval_prompts // 4)
    if args.method == "uce" and args.preserve is None:
        own["preserve"] = default_preserve(targets, args.seed, args.eval_prompts, per_other)
    eraser = make_method("erase", args.method, bundle, **common, **own)
    bar = _progress(args, eraser.total_steps(len(concepts)), f"erase ({args.method})",
                    unit="matrix" if args.method == "uce" else "step")
    edit = eraser.run(concepts, progress=bar.update)
    bar.close()
    out = _output_dir(args, "edit.json")
    edit.save(out)
    results = {"command": "erase", "method": args.method, "concept": concepts[0] if len(concepts) == 1 else concepts,
               "model": bundle.describe(), "seed": args.seed, "edit": str(out),
               **{k: v for k, v in edit.info.items() if k not in ("method",)},
               "erase_seconds": edit.info["seconds"],
               "generate_with": f"artshield generate --model {out} --prompt \"{concepts[0]}\""}
    evaluations = [] if args.no_eval else _evaluate_erasure(args, bundle, edit, targets, concepts, per_other, out)
    if len(concepts) == 1 and evaluations:       # one concept: its figures at the top level too
        results.update({k: evaluations[0][k] for k in ("before", "after", "recovery") if k in evaluations[0]})
    return _finish(args, out, {**results, "evaluations": evaluations, "seconds": round(time.time() - start, 2),
                               "environment": environment()})


def _evaluate_erasure(args, bundle, edit, targets: dict, concepts: list[str], per_other: int, out: Path) -> list:
    from .erase.evaluate import evaluate_all

    bar, records = _progress(args, None, "evaluate"), []
    for i, (record, sheet) in enumerate(evaluate_all(
            bundle, edit, targets, concepts, seed=args.seed, n_target=args.eval_prompts, per_other=per_other,
            recovery_steps=args.recovery_steps, steps=args.steps, guidance=args.guidance, progress=bar.update)):
        if sheet is None:
            _warn(args, f"no evaluation of {record['concept']!r}: {record['skipped']}")
        else:
            _write_images(out, {f"eval_{i}.png": sheet})
            record = {**record, "grid": f"eval_{i}.png"}
        records.append(record)
    bar.close()
    return records


def cmd_audit(args) -> int:
    from .audit import AuditSet, DetectConfig, ExtractConfig, audit, corpus_audit_set, membership
    from .audit.report import page
    from .io import read_lines, write_text

    start = time.time()
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods or any(m not in names.AUDIT for m in methods):
        raise ArtshieldError(f"--method {args.method}: choose from {', '.join(names.AUDIT)} (comma-separated)")
    try:
        threshold = args.threshold if args.threshold == "auto" else float(args.threshold)
        extract = ExtractConfig(generations=args.generations, threshold=threshold, min_clique=args.min_clique,
                                grid=args.grid, seed=args.seed, sampling_steps=args.steps, guidance=args.guidance)
        detect = DetectConfig(generations=args.detect_generations, steps=args.detect_steps,
                              sampling_steps=args.steps, guidance=args.guidance)
    except ValueError as e:
        raise ArtshieldError(f"audit: {e}") from None
    chosen = AuditSet(read_lines(args.prompts, "--prompts", "prompts"), source=args.prompts) if args.prompts else None
    bundle = _load(args)
    if chosen is None:
        if not bundle.conventions.corpus:
            raise ArtshieldError("--prompts FILE is needed: only mini's own training captions are built in")
        chosen = corpus_audit_set(bundle, args.seed, args.control)
    prompts, training = chosen.prompts, chosen.training
    if extract.threshold == "auto" and training is None:
        raise ArtshieldError("--threshold auto needs the training images (built in for mini only)")
    out = _output_dir(args)
    bar = _progress(args, sum(c.generations * len(prompts) for m, c in (("extract", extract), ("detect", detect))
                              if m in methods), "audit")
    result = audit(bundle, prompts, truth=chosen.truth, training=training, methods=methods, extract=extract,
                   detect=detect, progress=bar.update)
    bar.close()
    results, failures = result.to_dict(), []
    if args.candidates:
        results["membership"], failures = membership(bundle, args.candidates)
    html, files = page(result, bundle.spec, chosen.source, training, chosen.training_names)
    _write_images(out, files)
    write_text(html, out / "report.html")
    results = {"command": "audit", "model": bundle.describe(), "seed": args.seed, "prompt_source": chosen.source,
               "methods": methods, **results, "report": "report.html", "failed": failures,
               "seconds": round(time.time() - start, 2), "environment": environment()}
    return _finish(args, out, results)


class _Parser(argparse.ArgumentParser):
    def error(self, message):        # one line, as every usage error; not argparse's usage block
        self.exit(2, f"artshield: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    common.add_argument("--json", action="store_true", help="also print results.json to stdout")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="mini",
                       help="'mini' (embedded, default), a local diffusers folder, or a hub id org/name")
    model.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    model.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed+i (default 0)")
    batch = argparse.ArgumentParser(add_help=False)
    batch.add_argument("images", nargs="+", help="image files or folders of images")
    batch.add_argument("--format", choices=("keep", "png"), default="keep",
                       help="keep each input's format (default), or write PNG (lossless)")
    batch.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    sampling.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")

    ap = _Parser(prog="artshield", description="Copyright protection around text-to-image "
                                 "diffusion models: protect, purify, mimic, measure, erase, audit.")
    ap.add_argument("--version", action="version", version=f"artshield {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", parents=[common, model, sampling], help="generate images from text prompts")
    g.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    g.add_argument("-n", type=int, default=4, help="images per prompt (default 4)")
    g.add_argument("-o", "--output", required=True, help="output folder (PNG files and results.json)")
    g.add_argument("--adapter", default=None, help="a folder written by artshield mimic, applied to the model")
    g.set_defaults(func=cmd_generate)

    b = sub.add_parser("bench", parents=[common, model, sampling], help="run a measured experiment, write results.json")
    b.add_argument("--preset", default="model-quality", help=f"one of: {', '.join(names.BENCH_PRESETS)}")
    b.add_argument("--per-theme", type=int, default=16, help="generations per training theme (default 16)")
    b.add_argument("-o", "--output", required=True, help="report folder")
    b.set_defaults(func=cmd_bench)

    pr = sub.add_parser("protect", parents=[common, model, batch], help="protect images against fine-tuning mimicry",
                        description="Protect artworks with an adversarial perturbation. Defaults of each method "
                        "are its paper's; README's Protect section lists them.")
    pr.add_argument("-o", "--output", required=True, help="output folder (protected copies and results.json)")
    pr.add_argument("--method", default="advdm", help=f"one of: {', '.join(names.PROTECT)} (default advdm)")
    pr.add_argument("--budget", type=float, default=None,
                    help="L-infinity budget in 0-255 pixel units (default: the method's paper value)")
    pr.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    pr.add_argument("--step", type=float, default=None, help="PGD step size in 0-255 units")
    pr.add_argument("--eot", default=None, help="robustness: EOT transforms, comma-separated (jpeg,blur,resize)")
    pr.add_argument("--prompt", default=None, help="text condition (default: the model's generic prompt)")
    pr.add_argument("--target", default=None, help="mist/photoguard target: texture, grey, zero, or an image file")
    pr.add_argument("--target-style", default=None, help="glaze: the target style (default: chosen automatically)")
    pr.add_argument("--batch", type=int, default=4, help="images optimised together (default 4; aspl: all)")
    pr.set_defaults(func=cmd_protect)

    pu = sub.add_parser("purify", parents=[common, model, batch], help="strip protections the way a mimic would",
                        description="Purify images: filters (bilateral, jpeg, gaussian-noise, gaussian-blur, median) "
                        "or diffusion redraws with the model (noisy-upscale, diffpure, impress).")
    pu.add_argument("-o", "--output", required=True, help="output folder (purified copies and results.json)")
    pu.add_argument("--method", required=True, help=f"one of: {', '.join(names.PURIFY)}")
    pu.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="override a default of the purifier, e.g. quality=50, sigma=0.1, upscaler=DIR (repeatable)")
    pu.set_defaults(func=cmd_purify)

    mi = sub.add_parser("mimic", parents=[common, model], help="fine-tune a model on an artist's images",
                        description="Fine-tune the model on a folder of images (captions from NAME.txt beside "
                        "each image, else --caption) and save the adaptation in safetensors.")
    mi.add_argument("images", help="a folder of images, with optional .txt captions")
    mi.add_argument("-o", "--output", required=True, help="output folder (adapter.safetensors, adapter.json)")
    mi.add_argument("--method", default="lora", help=f"one of: {', '.join(names.MIMIC)} (default lora)")
    mi.add_argument("--steps", type=int, default=None, help="training steps (default: the method's)")
    mi.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    mi.add_argument("--batch-size", type=int, default=None)
    mi.add_argument("--trigger", default="sks", help="the word that stands for the artist (default sks)")
    mi.add_argument("--caption", default=None,
                    help="caption template for images without a .txt; {trigger} and {name} (the file name) "
                    "are filled in (default: the model's style prompt, e.g. 'icon, {trigger} style')")
    mi.set_defaults(func=cmd_mimic)

    de = sub.add_parser("demo", parents=[common, model], help="the main job on bundled sample images, with mini",
                        description="Protect bundled sample artworks and photos and write before/after/difference "
                        "images and an HTML page.")
    de.add_argument("-o", "--output", required=True, help="output folder")
    de.add_argument("--method", default="advdm", help=f"one of: {', '.join(names.PROTECT)} (default advdm)")
    de.add_argument("--budget", type=float, default=None, help="L-infinity budget, 0-255 units (default: the method's)")
    de.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    de.set_defaults(func=cmd_demo)

    er = sub.add_parser("erase", parents=[common, model, sampling], help="remove a concept or style from the weights",
                        description="Erase concepts from the model's UNet (ESD-x, ESD-u: fine-tuning without data; "
                        "uce: closed form, seconds). Writes the changed tensors to OUT/edit.safetensors; "
                        "--model OUT then loads the erased model in every command. On mini the erasure is "
                        "evaluated (before, after, and after a concept-inversion attack) into OUT/results.json.")
    er.add_argument("--concept", action="append", required=True,
                    help="text of the concept, e.g. 'faenza style' or 'trash can' (repeat for several)")
    er.add_argument("--method", default="esd-x", help=f"one of: {', '.join(names.ERASE)} (default esd-x)")
    er.add_argument("-o", "--output", required=True, help="output folder (edit.safetensors, edit.json, results.json)")
    er.add_argument("--iterations", type=int, default=None, help="esd: iterations (default: the model's, else 1000)")
    er.add_argument("--lr", type=float, default=None, help="esd: learning rate (default: the model's, else 1e-5)")
    er.add_argument("--eta", type=float, default=None, help="esd: negative guidance strength (default 1)")
    er.add_argument("--guide", default=None, help="uce: what the concept should read as (default: nothing)")
    er.add_argument("--preserve", action="append", default=None,
                    help="uce: a prompt to keep as it is (repeatable; default on mini: captions of the other "
                    "styles or concepts)")
    er.add_argument("--template", action="append", default=None,
                    help="a sentence with {} for the concept, to edit it in context (repeatable; default: the model's)")
    er.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    er.add_argument("--eval-prompts", type=int, default=32, help="evaluation: prompts with the concept (default 32)")
    er.add_argument("--recovery-steps", type=int, default=300,
                    help="evaluation: textual-inversion steps of the recovery attack (default 300; 0 skips it)")
    er.set_defaults(func=cmd_erase)

    au = sub.add_parser("audit", parents=[common, model, sampling], help="find training images a model memorised",
                        description="Memorisation audit: the generate-and-filter extraction attack and the "
                        "text-conditional noise magnitude detector, on prompts from a file, or on mini on its "
                        "planted-duplicate captions mixed with as many ordinary ones (then with precision, recall "
                        "and AUC). Writes results.json and report.html.")
    au.add_argument("-o", "--output", required=True, help="report folder")
    au.add_argument("--prompts", default=None, help="a text file, one prompt per line (default on mini: its corpus)")
    au.add_argument("--control", choices=("novel", "training"), default="novel",
                    help="mini's built-in set: the negatives beside the planted duplicates are captions no "
                    "training image has (novel, default) or ordinary training captions (training)")
    au.add_argument("--method", default="extract,detect", help="extract, detect, or both (default)")
    au.add_argument("--generations", type=int, default=500, help="extract: generations per prompt (default 500)")
    au.add_argument("--threshold", default="0.15",
                    help="extract: delta, normalised L2 (default 0.15, the paper's), or 'auto': the 5 %% quantile "
                    "of distances between distinct training images (needs them: mini)")
    au.add_argument("--min-clique", type=int, default=10, help="extract: clique size that flags a prompt (default 10)")
    au.add_argument("--grid", type=int, default=4, help="extract: tiles per side for the tiled L2 (default 4)")
    au.add_argument("--detect-generations", type=int, default=4, help="detect: seeds per prompt (default 4)")
    au.add_argument("--detect-steps", type=int, default=1, help="detect: first sampling steps averaged (default 1)")
    au.add_argument("--candidates", default=None,
                    help="a folder of images to score for training membership (captions from NAME.txt)")
    au.set_defaults(func=cmd_audit)

    return ap


def _terminated(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.quiet)
    signal.signal(signal.SIGTERM, _terminated)      # a polite kill unwinds like ^C: no partial file stays
    code = 2
    try:
        _check_common(args)
        code = args.func(args)
        return code
    except ArtshieldError as e:
        print(f"artshield: error: {e.render(FLAGS)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artshield: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # output piped into a reader that stopped (head, less)
        sys.stderr.close()
        return 0
    except OSError as e:             # the disk filled up, a folder turned read-only mid-run
        where = f"{e.filename}: " if e.filename else ""
        print(f"artshield: error: {where}{e.strerror or str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if "artshield.io" in sys.modules:
            sys.modules["artshield.io"].release_locks(refused=code == 2)


if __name__ == "__main__":
    sys.exit(main())
