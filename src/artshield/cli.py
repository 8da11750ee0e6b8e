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

BENCH_PRESETS = ("model-quality", "quick", "full")


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

    def __init__(self, args, total: int, desc: str, unit: str = "img"):
        self.bar = None
        if not args.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

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
    adapter = None
    if args.adapter:
        from .mimic import Adapter

        adapter = Adapter.load(args.adapter)
        if adapter.info.get("base_model") not in (None, args.model):
            _warn(args, f"--adapter {args.adapter} was trained on {adapter.info['base_model']}, not {args.model}")
        try:
            adapter.apply(bundle)
        except (ValueError, RuntimeError) as e:
            raise ArtshieldError(f"--adapter {args.adapter}: {str(e).splitlines()[0]}") from None
    prompts = [p for p in args.prompt for _ in range(args.n)]
    if adapter is not None:
        prompts = [adapter.prompt(p) for p in prompts]
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
        "adapter": {"folder": args.adapter, **adapter.info} if adapter else None,
        "steps": args.steps or bundle.defaults.get("steps"),
        "guidance": args.guidance if args.guidance is not None else bundle.defaults.get("guidance"),
        "images": files, "seconds": round(time.time() - start, 2), "environment": _environment(),
    }
    return _finish(args, out, results)


def cmd_bench(args) -> int:
    if args.preset not in BENCH_PRESETS:
        raise ArtshieldError(f"bench --preset {args.preset}: unknown (available: {', '.join(BENCH_PRESETS)})")
    if args.preset != "model-quality":
        return _bench_experiment(args)
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
    results = {"command": f"artshield bench --preset {args.preset} -o {args.output}", "preset": args.preset,
               "model": bundle.describe(), "seed": args.seed,
               "per_theme": args.per_theme, **figures,
               "samples": {"file": "samples.png", "rows": "training themes in corpus order, 8 captions each",
                           "captions": [items[k].caption for k in rows]},
               "environment": _environment()}
    return _finish(args, out, results)


def _parse_target(value: str | None):
    """--target: a named target ("texture", "grey", "zero") or an image file."""
    if value is None or value in ("texture", "grey", "zero"):
        return value
    from .io import read_image

    return read_image(value)


def cmd_protect(args) -> int:
    from .io import load_image, save_perturbed
    from .metrics.image import linf_255, lpips, psnr, ssim
    from .models import load_model
    from .protect import METHODS, protect

    start = time.time()
    if args.method not in METHODS:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(METHODS)}")
    if args.budget is not None and not 0 < args.budget <= 255:
        raise ArtshieldError(f"--budget {args.budget}: must be in (0, 255] pixel units")
    if args.batch < 1:
        raise ArtshieldError("--batch must be at least 1")
    out, todo, records, failures = _gather_inputs(args, "protected copy")

    options = {"budget": args.budget, "steps": args.steps, "step": args.step, "prompt": args.prompt,
               "eot": tuple(args.eot.split(",")) if args.eot else None}
    if args.target is not None:
        options["target"] = _parse_target(args.target)
    if args.target_style is not None:
        options["target_style"] = args.target_style
    method_info, notes = {}, []
    if todo:
        bundle = load_model(args.model, args.device)
        batch = len(todo) if args.method == "aspl" else args.batch
        from .protect import make_method

        try:
            per_batch = make_method(bundle, args.method, **options).total_steps(batch)
        except ValueError as e:
            raise ArtshieldError(f"--method {args.method}: {e}") from None
        bar = _Progress(args, per_batch * ((len(todo) + batch - 1) // batch), f"protect ({args.method})", unit="step")
        for k in range(0, len(todo), batch):
            chunk = todo[k:k + batch]
            t0 = time.time()
            result = protect(bundle, [ld.pixels for ld, _ in chunk], method=args.method, seed=args.seed + k,
                             progress=bar, **options)
            seconds = (time.time() - t0) / len(chunk)
            method_info = {"config": result.config, **result.extra}
            for (loaded, name), delta, objective in zip(chunk, result.deltas, result.objective):
                try:
                    save_perturbed(loaded, delta, out / name, keep_format=args.format == "keep")
                    written = load_image(out / name).pixels
                except (OSError, ValueError, ArtshieldError) as e:
                    failures.append({"file": str(loaded.path), "error": f"{loaded.path}: cannot write {name}: {e}"})
                    continue
                clean = loaded.pixels
                rec = {"file": str(loaded.path), "output": name, "size": [clean.shape[2], clean.shape[1]],
                       "budget": result.config["budget"], "linf_255": round(linf_255(written, clean), 3),
                       "psnr_db": round(psnr(written, clean), 3), "ssim": round(ssim(written, clean), 5),
                       "lpips": round(lpips(written, clean), 5), "objective": objective,
                       "seconds": round(seconds, 3), "notes": loaded.notes}
                if loaded.format == "JPEG" and args.format == "keep":
                    rec["notes"] = rec["notes"] + ["JPEG re-encoding (quality 95) weakens the protection and can "
                                                   "exceed the budget; use --format png to keep it exact"]
                records.append(rec)
                notes.extend(f"{loaded.path}: {n}" for n in rec["notes"])
        bar.close()
        model = bundle.describe()
    else:
        model = {"spec": args.model}
    results = {"command": "protect", "method": args.method, "model": model, "seed": args.seed,
               **method_info, "images": records, "failed": failures,
               "seconds": round(time.time() - start, 2), "environment": _environment()}
    _finish(args, out, results)
    for n in notes:
        _warn(args, n)
    return _report_failures(args, failures)


def cmd_demo(args) -> int:
    from . import demo, report
    from .io import write_image, write_text
    from .metrics.image import linf_255, lpips, psnr, ssim
    from .models import load_model
    from .protect import METHODS, make_method, protect

    if args.method not in METHODS:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(METHODS)}")
    start = time.time()
    out = _output_dir(args.output)
    bundle = load_model(args.model, args.device)
    samples = demo.samples()
    images = [s.image for s in samples]
    options = {"budget": args.budget, "steps": args.steps}
    total = make_method(bundle, args.method, **options).total_steps(len(images))
    bar = _Progress(args, total, f"protect ({args.method})", unit="step")
    result = protect(bundle, images, method=args.method, seed=args.seed, progress=bar, **options)
    bar.close()
    protected = result.protected(images)
    budget = result.config["budget"]
    views = {"clean": demo.model_view(bundle, images, args.seed), "protected": demo.model_view(bundle, protected, args.seed)}
    rows, records = [], []
    for i, (s, x, p) in enumerate(zip(samples, images, protected)):
        files = {"original": f"original/{s.name}.png", "protected": f"protected/{s.name}.png",
                 "difference": f"difference/{s.name}.png"}
        write_image(x, out / files["original"])
        write_image(p, out / files["protected"])
        write_image(demo.difference(x, p, budget), out / files["difference"])
        for kind in ("clean", "protected"):
            for what, tensors in views[kind].items():
                files[f"{what}_{kind}"] = f"model/{s.name}-{what}-{kind}.png"
                write_image(tensors[i], out / files[f"{what}_{kind}"])
        obj = result.objective[i]
        rec = {"name": s.name, "credit": s.credit, "size": [x.shape[2], x.shape[1]], "files": files,
               "linf_255": round(linf_255(p, x), 3), "psnr_db": round(psnr(p, x), 3), "ssim": round(ssim(p, x), 5),
               "lpips": round(lpips(p, x), 5), "objective": obj}
        records.append(rec)
        moved = obj["protected"] - obj["clean"]
        baseline = obj["random_noise"] - obj["clean"]
        rows.append([report.Img(files["original"], f"{s.name} {x.shape[2]}x{x.shape[1]}"),
                     report.Img(files["protected"]), report.Img(files["difference"], f"|change| x{255 / budget:.0f}"),
                     report.Img(files["img2img_clean"]), report.Img(files["img2img_protected"]),
                     f"{obj['clean']:.4g} -> {obj['protected']:.4g} ({moved:+.3g}; random noise {baseline:+.3g})",
                     f"PSNR {rec['psnr_db']:.1f} dB, SSIM {rec['ssim']:.3f}, LPIPS {rec['lpips']:.3f}, "
                     f"max change {rec['linf_255']:.0f}/255"])
    cfg = result.config
    html = report.page(
        f"artshield demo: {args.method} on {bundle.spec}",
        report.para(f"Each image was protected with {args.method} (budget {budget}/255 L-infinity, {cfg['steps']} "
                    f"steps, seed {args.seed}) against the model {bundle.spec}, which sees a {bundle.image_size}x"
                    f"{bundle.image_size} view of it; the perturbation is computed and written at full size. "
                    f"The objective column is the quantity the method optimises ({result.objective[0]['name']}, "
                    f"goal: {result.objective[0]['goal']}), measured with fixed random draws on the clean image, "
                    "the protected one, and the clean image plus random noise of the same budget."),
        report.para("This page shows what the protection does to the image and to the model's own reading of it "
                    "(img2img at strength 0.5). Whether it stops a mimic who fine-tunes on the images, and whether "
                    "it survives purification, is measured by artshield bench, not here."),
        report.table(["original", "protected", "difference", "img2img of original", "img2img of protected",
                      "objective", "visibility"], rows),
        report.para("Credits: " + "; ".join(f"{s.name}: {s.credit}" for s in samples)))
    write_text(html, out / "index.html")
    results = {"command": "demo", "method": args.method, "model": bundle.describe(), "seed": args.seed,
               "config": cfg, **result.extra, "images": records, "page": "index.html",
               "seconds": round(time.time() - start, 2), "environment": _environment()}
    _finish(args, out, results)
    if not args.quiet:
        print(f"open {out / 'index.html'}", file=sys.stderr)
    return 0


def cmd_mimic(args) -> int:
    import torch

    from .io import list_images, load_image
    from .mimic import MIMICS, make_mimic
    from .models import load_model

    start = time.time()
    if args.method not in MIMICS:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(MIMICS)}")
    files = list_images([args.images])
    if not Path(args.images).is_dir() or not files:
        raise ArtshieldError(f"{args.images}: expected a folder of images (with optional .txt captions beside them)")
    bundle = load_model(args.model, args.device, dtype=torch.float32)
    template = args.caption or bundle.defaults.get("style_prompt", "an artwork in the style of {}").format("{trigger}")
    images, captions, failures = [], [], []
    for f in files:
        try:
            images.append(load_image(f).pixels)
        except ArtshieldError as e:
            failures.append({"file": str(f), "error": str(e)})
            continue
        sidecar = f.with_suffix(".txt")
        text = sidecar.read_text().strip() if sidecar.is_file() else template
        captions.append(text.format(trigger=args.trigger, name=f.stem.replace("_", " ").replace("-", " ")))
    if not images:
        raise ArtshieldError(f"{args.images}: none of its {len(files)} images could be read")
    options = {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "trigger": args.trigger,
               "seed": args.seed}
    try:
        method = make_mimic(bundle, args.method, **options)
    except ValueError as e:
        raise ArtshieldError(f"--method {args.method}: {e}") from None
    out = _output_dir(args.output)
    bar = _Progress(args, method.config.steps, f"mimic ({args.method})", unit="step")
    adapter = method.train(images, captions, progress=bar)
    bar.close()
    adapter.info.update({"captions": captions, "folder": str(args.images)})
    adapter.save(out)
    results = {"command": "mimic", "method": args.method, "model": bundle.describe(), "adapter": str(out),
                **{k: v for k, v in adapter.info.items() if k != "captions"}, "captions": captions,
                "failed": failures, "seconds": round(time.time() - start, 2), "environment": _environment(),
                "generate_with": f"artshield generate --model {args.model} --adapter {out} "
                                 f"--prompt \"{template.format(trigger=args.trigger, name='your subject')}\""}
    _finish(args, out, results)
    return _report_failures(args, failures)


def _gather_inputs(args, what: str) -> tuple[Path, list, list, list]:
    """Images named on the command line, checked and read: (out, todo [(LoadedImage, output name)],
    records of images already done, failures). Refuses an output folder that holds an input."""
    from .io import list_images, load_image, output_name

    out = Path(args.output)
    inputs = list_images(args.images)
    if not inputs:
        raise ArtshieldError("no input images: give image files or folders that contain them")
    for p in map(Path, args.images):
        folder = p if p.is_dir() else p.parent
        if out.exists() and folder.exists() and out.resolve() == folder.resolve():
            raise ArtshieldError(f"-o {args.output} is the folder of the input {p}; choose another folder, "
                                 "so that originals are never overwritten")
    out = _output_dir(args.output)
    previous = _previous_records(out / "results.json") if not args.overwrite else {}
    failures, records, todo, names = [], [], [], {}
    for path in inputs:
        try:
            loaded = load_image(path)
        except ArtshieldError as e:
            failures.append({"file": str(path), "error": str(e)})
            continue
        name = output_name(loaded, keep_format=args.format == "keep")
        if name in names:
            failures.append({"file": str(path), "error": f"{path}: its output {name} would overwrite the {what} "
                             f"of {names[name]}; run it separately"})
            continue
        names[name] = path
        if (out / name).exists() and not args.overwrite:
            rec = previous.get(name, {"file": str(path), "output": name})
            records.append({**rec, "skipped": "output exists (use --overwrite to redo)"})
            continue
        todo.append((loaded, name))
    return out, todo, records, failures


def cmd_purify(args) -> int:
    from .io import load_image, save_perturbed
    from .metrics.image import lpips, psnr, ssim
    from .models import load_model
    from .purify import PURIFIERS, make_purifier

    start = time.time()
    if args.method not in PURIFIERS:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(PURIFIERS)}")
    options = dict(_parse_options(args.option))
    out, todo, records, failures = _gather_inputs(args, "purified copy")
    bundle = None
    if todo and PURIFIERS[args.method].needs_model:
        bundle = load_model(args.model, args.device)
    try:
        purifier = make_purifier(args.method, bundle=bundle, **options) if todo else None
    except (ValueError, TypeError, OSError) as e:
        raise ArtshieldError(f"--method {args.method}: {e}") from None
    import torch

    generator = torch.Generator("cpu").manual_seed(args.seed)
    bar = _Progress(args, len(todo), f"purify ({args.method})")
    for loaded, name in todo:
        t0 = time.time()
        try:
            (cleaned,) = purifier([loaded.pixels], generator)
            delta = (cleaned.cpu().float().clamp(0, 1) * 255).round() / 255 - loaded.pixels
            save_perturbed(loaded, delta, out / name, keep_format=args.format == "keep")
            written = load_image(out / name).pixels
        except (OSError, ValueError, RuntimeError, ArtshieldError) as e:
            failures.append({"file": str(loaded.path), "error": f"{loaded.path}: {str(e).splitlines()[0]}"})
            continue
        finally:
            bar(1)
        records.append({"file": str(loaded.path), "output": name, "size": [written.shape[2], written.shape[1]],
                        "psnr_db": round(psnr(written, loaded.pixels), 3),
                        "ssim": round(ssim(written, loaded.pixels), 5),
                        "lpips": round(lpips(written, loaded.pixels), 5),
                        "seconds": round(time.time() - t0, 3), "notes": loaded.notes})
    bar.close()
    from dataclasses import asdict

    results = {"command": "purify", "method": args.method,
               "config": asdict(purifier.config) if purifier else options,
               "model": bundle.describe() if bundle else None, "seed": args.seed, "images": records,
               "failed": failures, "seconds": round(time.time() - start, 2), "environment": _environment()}
    _finish(args, out, results)
    return _report_failures(args, failures)


def _parse_options(pairs: list[str] | None) -> list[tuple[str, object]]:
    """--option key=value pairs; values parsed as JSON where they can be (numbers, true, null)."""
    parsed = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ArtshieldError(f"--option {pair}: expected key=value")
        try:
            parsed.append((key.replace("-", "_"), json.loads(value)))
        except ValueError:
            parsed.append((key.replace("-", "_"), value))
    return parsed


def _previous_records(path: Path) -> dict:
    try:
        return {r["output"]: r for r in json.loads(path.read_text()).get("images", []) if "output" in r}
    except (OSError, ValueError, AttributeError):
        return {}


def _warn(args, message: str) -> None:
    if not args.quiet:
        print(f"artshield: warning: {message}", file=sys.stderr)


def _report_failures(args, failures: list[dict]) -> int:
    if not failures:
        return 0
    print(f"artshield: {len(failures)} input(s) failed:", file=sys.stderr)
    for f in failures:
        print(f"  {f['error']}", file=sys.stderr)
    return 1


def _bench_experiment(args) -> int:
    from dataclasses import asdict

    from .bench import experiment, report_html
    from .io import write_text
    from .metrics.judge import Judge
    from .models import load_model

    start = time.time()
    preset = experiment.PRESETS[args.preset]
    if args.model != "mini":
        raise ArtshieldError(f"bench --preset {args.preset} measures with the icon judge, so it needs --model mini")
    out = _output_dir(args.output)
    bundle = load_model(args.model, args.device)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    log(f"bench {args.preset}: {len(experiment.cells(preset))} cells; finished ones in {out / 'cells'} are reused")
    records = experiment.Runner(bundle, Judge.load(), preset, out, log=log).run()
    rows = experiment.summary(records, preset)
    results = {"command": f"artshield bench --preset {args.preset} -o {args.output}",
               "preset_name": args.preset, "preset": asdict(preset), "model": bundle.describe(),
               "summary": rows, "cells": records, "seconds": round(time.time() - start, 1),
               "environment": _environment()}
    write_text(report_html.render(results, rows), out / "report.html")
    return _finish(args, out, results)


def cmd_erase(args) -> int:
    from .erase import ERASERS, make_eraser
    from .models import load_model

    start = time.time()
    if args.method not in ERASERS:
        raise ArtshieldError(f"--method {args.method}: unknown; choose one of {', '.join(ERASERS)}")
    concepts = [c.strip() for c in args.concept]
    if any(not c for c in concepts):
        raise ArtshieldError("--concept: empty text")
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "edit.json").is_file())):
        raise ArtshieldError(f"-o {args.output}: exists and is not an empty folder or an earlier edit")
    if Path(args.model).expanduser().resolve() == out.resolve():
        raise ArtshieldError(f"-o {args.output}: is the model being edited; write the edit to a new folder")
    bundle = load_model(args.model, args.device)
    targets = _erase_targets(bundle, concepts)
    options = {"templates": args.template, "seed": args.seed}
    if args.method == "uce":
        preserve = args.preserve
        if preserve is None and targets and all(targets.values()):
            from .erase.evaluate import preserve_captions

            preserve = sorted({p for t in targets.values() for p in preserve_captions(t, args.seed, args.eval_prompts,
                                                                                  _per_other(args))})
        options.update(guide=args.guide, preserve=preserve)
    else:
        options.update(iterations=args.iterations, lr=args.lr, eta=args.eta)
    try:
        eraser = make_eraser(args.method, **{k: v for k, v in options.items() if v is not None})
    except ValueError as e:
        raise ArtshieldError(f"--method {args.method}: {e}") from None
    if args.method == "uce":      # one solve per key/value projection
        from .erase import select_parameters

        total, unit = len(select_parameters(bundle.unet, "cross-attention-kv")), "matrix"
    else:
        total, unit = eraser.settings(bundle)[0], "step"
    bar = _Progress(args, total, f"erase ({args.method})", unit=unit)
    try:
        edit = eraser.erase(bundle, concepts, progress=bar)
    except ValueError as e:
        raise ArtshieldError(f"--concept: {e}") from None
    bar.close()
    out = _output_dir(args.output)
    edit.save(out)
    results = {"command": "erase", "method": args.method, "concept": concepts[0] if len(concepts) == 1 else concepts,
               "model": bundle.describe(), "seed": args.seed, "edit": str(out),
               **{k: v for k, v in edit.info.items() if k not in ("method",)},
               "erase_seconds": edit.info["seconds"],
               "generate_with": f"artshield generate --model {out} --prompt \"{concepts[0]}\""}
    results["evaluations"] = _evaluate_erasure(args, bundle, edit, targets, out)
    if len(concepts) == 1 and results["evaluations"] and "before" in results["evaluations"][0]:
        results.update({k: results["evaluations"][0][k] for k in ("before", "after", "recovery")
                        if k in results["evaluations"][0]})
    results["seconds"] = round(time.time() - start, 2)
    results["environment"] = _environment()
    return _finish(args, out, results)


def _per_other(args) -> int:
    return max(2, args.eval_prompts // 4)


def _erase_targets(bundle, concepts: list[str]) -> dict:
    """For each concept, what the judge calls it (None where it cannot tell); {} for models the
    judge was not made for (it knows the styles and concepts of mini's corpus only)."""
    from .erase.evaluate import parse_target

    if not bundle.defaults.get("styles"):
        return {}
    return {c: parse_target(c) for c in concepts}


def _evaluate_erasure(args, bundle, edit, targets: dict, out: Path) -> list[dict]:
    import torch

    from .erase.evaluate import evaluate
    from .io import grid, write_image

    if args.no_eval:
        return []
    if not targets:
        _warn(args, "no evaluation: the judge knows the styles and concepts of mini's corpus only")
        return [{"concept": c, "skipped": "the judge knows mini's corpus only"} for c in args.concept]
    records = []
    for i, (concept, target) in enumerate(targets.items()):
        if target is None:
            _warn(args, f"no evaluation of {concept!r}: not a training style or concept the judge knows")
            records.append({"concept": concept, "skipped": "not a training style or concept of mini's corpus"})
            continue
        n = args.eval_prompts
        bar = _Progress(args, None, f"evaluate {concept}")
        results, images = evaluate(bundle, edit, target, seed=args.seed, n_target=n, per_other=_per_other(args),
                                   recovery_steps=args.recovery_steps, steps=args.steps, guidance=args.guidance,
                                   progress=bar)
        bar.close()
        rows = [images[k][:8] for k in ("before", "after", "recovery") if k in images]
        name = f"eval_{i}.png"
        write_image(grid(torch.cat(rows), columns=len(rows[0])), out / name)
        records.append({"concept": concept, **results, "grid": name,
                        "grid_rows": [k for k in ("before", "after", "recovery") if k in images]})
    return records


def cmd_audit(args) -> int:
    from . import report
    from .audit import METHODS, ExtractConfig, audit, corpus_prompts, membership_loss
    from .io import list_images, load_image, write_image, write_text
    from .models import load_model

    start = time.time()
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ArtshieldError(f"--method {args.method}: choose from {', '.join(METHODS)} (comma-separated)")
    calibrated = args.threshold == "auto"
    try:
        threshold = 0.15 if calibrated else float(args.threshold)
        config = ExtractConfig(generations=args.generations, threshold=threshold, min_clique=args.min_clique,
                               grid=args.grid, seed=args.seed)
    except ValueError as e:
        raise ArtshieldError(f"audit: {e}") from None
    bundle = load_model(args.model, args.device)
    truth, source = None, args.prompts
    if args.prompts:
        try:
            prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ArtshieldError(f"--prompts {args.prompts}: cannot read it ({e.__class__.__name__})") from None
        if not prompts:
            raise ArtshieldError(f"--prompts {args.prompts}: no prompts in it (one per line)")
    elif bundle.defaults.get("styles"):
        prompts, truth = corpus_prompts(args.seed, args.control)
        source = (f"mini's corpus: its {sum(truth)} planted-duplicate captions and as many "
                  + ("captions no training image has" if args.control == "novel" else "ordinary training captions"))
    else:
        raise ArtshieldError("--prompts FILE is needed: only mini's own training captions are built in")
    training, training_items = None, None
    if truth is not None:
        from . import corpus

        training_items = corpus.items(split="train")
        training = corpus.load_images(training_items, bundle.image_size)
    if calibrated:
        if training is None:
            raise ArtshieldError("--threshold auto needs the training images (built in for mini only)")
        from .audit.extract import calibrate

        config.threshold, config.match_threshold = calibrate(training, config.grid)
    out = _output_dir(args.output)
    total = (len(prompts) * config.generations if "extract" in methods else 0) + \
        (len(prompts) * args.detect_generations if "detect" in methods else 0)
    bar = _Progress(args, total, "audit")
    results, flagged = audit(bundle, prompts, truth=truth, training=training, methods=methods, extract=config,
                             detect_generations=args.detect_generations, detect_steps=args.detect_steps,
                             steps=args.steps, guidance=args.guidance, progress=bar)
    bar.close()
    failures = []
    if args.candidates:
        results["membership"], failures = _membership(args, bundle, membership_loss, list_images, load_image)
    rows = []
    for k, image in flagged.items():
        rec = results["per_prompt"][k]
        write_image(image, out / f"flagged_{k:04d}.png")
        row = [rec["prompt"], report.Img(f"flagged_{k:04d}.png", f"clique {rec['clique_size']}")]
        if training is not None:
            write_image(training[rec["nearest_training"]], out / f"nearest_{k:04d}.png")
            row += [report.Img(f"nearest_{k:04d}.png", training_items[rec["nearest_training"]].file),
                    rec["nearest_l2"], "yes" if rec["extracted"] else "no"]
        if truth is not None:
            row.append("yes" if truth[k] else "no")
        rows.append(row)
    header = ["prompt", "flagged generation"] + (["nearest training image", "L2", "extracted"] if training is not None
                                                 else []) + (["planted duplicate"] if truth is not None else [])
    summary = {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}
               for k, v in results.items() if k in ("extraction", "detection")}
    write_text(report.page("artshield audit", report.para(f"Model {bundle.spec}; prompts: {source}."),
                           report.para(json.dumps(summary)), report.heading("Flagged prompts"),
                           report.table(header, rows) if rows else report.para("No prompt was flagged.")),
               out / "report.html")
    results = {"command": "audit", "model": bundle.describe(), "seed": args.seed, "prompt_source": source,
               "methods": methods, **results, "report": "report.html", "failed": failures,
               "seconds": round(time.time() - start, 2), "environment": _environment()}
    _finish(args, out, results)
    return _report_failures(args, failures)


def _membership(args, bundle, membership_loss, list_images, load_image) -> tuple[dict, list]:
    """Loss-based membership scores of the candidate images (captions from NAME.txt beside them)."""
    import torch

    from .protect.engine import fit_view

    files, images, captions, failures = list_images([args.candidates]), [], [], []
    for f in files:
        try:
            images.append(fit_view(load_image(f).pixels.float(), bundle.image_size))
        except ArtshieldError as e:
            failures.append({"file": str(f), "error": str(e)})
            continue
        side = f.with_suffix(".txt")
        captions.append(side.read_text().strip() if side.is_file() else "")
    if not images:
        raise ArtshieldError(f"--candidates {args.candidates}: no readable images")
    scores = membership_loss(bundle, torch.stack(images), captions)
    kept = [f for f in files if str(f) not in {x["file"] for x in failures}]
    return {"method": "minus the denoising loss at fixed draws (higher: more likely a training member)",
            "images": [{"file": str(f), "caption": c, "score": round(float(s), 6)}
                       for f, c, s in zip(kept, captions, scores)]}, failures


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    common.add_argument("--json", action="store_true", help="also print results.json to stdout")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="mini",
                       help="'mini' (embedded, default), a local diffusers folder, or a hub id org/name")
    model.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    model.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed+i (default 0)")
    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    sampling.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")

    ap = argparse.ArgumentParser(prog="artshield", description="Copyright protection around text-to-image "
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
    b.add_argument("--preset", default="model-quality", help=f"one of: {', '.join(BENCH_PRESETS)}")
    b.add_argument("--per-theme", type=int, default=16, help="generations per training theme (default 16)")
    b.add_argument("-o", "--output", required=True, help="report folder")
    b.set_defaults(func=cmd_bench)

    from .protect import METHODS

    pr = sub.add_parser("protect", parents=[common, model], help="protect images against fine-tuning mimicry",
                        description="Protect artworks with an adversarial perturbation. Defaults of each method "
                        "are its paper's; README's Protect section lists them.")
    pr.add_argument("images", nargs="+", help="image files or folders of images")
    pr.add_argument("-o", "--output", required=True, help="output folder (protected copies and results.json)")
    pr.add_argument("--method", default="advdm", help=f"one of: {', '.join(METHODS)} (default advdm)")
    pr.add_argument("--budget", type=float, default=None,
                    help="L-infinity budget in 0-255 pixel units (default: the method's paper value)")
    pr.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    pr.add_argument("--step", type=float, default=None, help="PGD step size in 0-255 units")
    pr.add_argument("--eot", default=None, help="robustness: EOT transforms, comma-separated (jpeg,blur,resize)")
    pr.add_argument("--prompt", default=None, help="text condition (default: the model's generic prompt)")
    pr.add_argument("--target", default=None, help="mist/photoguard target: texture, grey, zero, or an image file")
    pr.add_argument("--target-style", default=None, help="glaze: the target style (default: chosen automatically)")
    pr.add_argument("--batch", type=int, default=4, help="images optimised together (default 4; aspl: all)")
    pr.add_argument("--format", choices=("keep", "png"), default="keep",
                    help="keep each input's format (default), or write PNG (lossless)")
    pr.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    pr.set_defaults(func=cmd_protect)

    from .purify import PURIFIERS

    pu = sub.add_parser("purify", parents=[common, model], help="strip protections the way a mimic would",
                        description="Purify images: filters (bilateral, jpeg, gaussian-noise, gaussian-blur, median) "
                        "or diffusion redraws with the model (noisy-upscale, diffpure, impress).")
    pu.add_argument("images", nargs="+", help="image files or folders of images")
    pu.add_argument("-o", "--output", required=True, help="output folder (purified copies and results.json)")
    pu.add_argument("--method", required=True, help=f"one of: {', '.join(PURIFIERS)}")
    pu.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="override a default of the purifier, e.g. quality=50, sigma=0.1, upscaler=DIR (repeatable)")
    pu.add_argument("--format", choices=("keep", "png"), default="keep", help="keep each input's format, or PNG")
    pu.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    pu.set_defaults(func=cmd_purify)

    from .mimic import MIMICS

    mi = sub.add_parser("mimic", parents=[common, model], help="fine-tune a model on an artist's images",
                        description="Fine-tune the model on a folder of images (captions from NAME.txt beside "
                        "each image, else --caption) and save the adaptation in safetensors.")
    mi.add_argument("images", help="a folder of images, with optional .txt captions")
    mi.add_argument("-o", "--output", required=True, help="output folder (adapter.safetensors, adapter.json)")
    mi.add_argument("--method", default="lora", help=f"one of: {', '.join(MIMICS)} (default lora)")
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
    de.add_argument("--method", default="advdm", help=f"one of: {', '.join(METHODS)} (default advdm)")
    de.add_argument("--budget", type=float, default=None, help="L-infinity budget, 0-255 units (default: the method's)")
    de.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    de.set_defaults(func=cmd_demo)

    from .erase import ERASERS

    er = sub.add_parser("erase", parents=[common, model, sampling], help="remove a concept or style from the weights",
                        description="Erase concepts from the model's UNet (ESD-x, ESD-u: fine-tuning without data; "
                        "uce: closed form, seconds). Writes the changed tensors to OUT/edit.safetensors; "
                        "--model OUT then loads the erased model in every command. On mini the erasure is "
                        "evaluated (before, after, and after a concept-inversion attack) into OUT/results.json.")
    er.add_argument("--concept", action="append", required=True,
                    help="text of the concept, e.g. 'faenza style' or 'trash can' (repeat for several)")
    er.add_argument("--method", default="esd-x", help=f"one of: {', '.join(ERASERS)} (default esd-x)")
    er.add_argument("-o", "--output", required=True, help="output folder (edit.safetensors, edit.json, results.json)")
    er.add_argument("--iterations", type=int, default=None, help="esd: training iterations (default: the model's, else 1000)")
    er.add_argument("--lr", type=float, default=None, help="esd: learning rate (default: the model's, else 1e-5)")
    er.add_argument("--eta", type=float, default=None, help="esd: negative guidance strength (default 1)")
    er.add_argument("--guide", default=None, help="uce: what the concept should read as (default: nothing)")
    er.add_argument("--preserve", action="append", default=None,
                    help="uce: a prompt to keep as it is (repeatable; default on mini: captions of the other "
                    "styles or concepts)")
    er.add_argument("--template", action="append", default=None,
                    help="a sentence with {} for the concept, to edit it in context (repeatable; default: the model's)")
    er.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    er.add_argument("--eval-prompts", type=int, default=32, help="evaluation: prompts asking for the concept (default 32)")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    except BrokenPipeError:          # output piped into a reader that stopped (head, less)
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
