"""The artshield command line: parse, call the Python API, write files. No algorithm lives here.

Exit codes: 0 done; 1 some inputs failed (the others were done, the failures are listed);
2 usage or setup error (one line on stderr saying what and where).

Only the standard library is imported at module level: `artshield --help` answers without
loading torch, diffusers or transformers; each command imports what it runs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from . import names
from .errors import ArtshieldError, as_text, one_line
from .cli_parser import build_parser
from .provenance import environment

# library parameter -> the flag a command-line user typed it with
FLAGS = {p: f"--{p}" for p in ("model", "device", "dtype", "adapter", "method", "prompts", "candidates", "batch",
                                "option", "format", "judge")} | {"judge_path": "--judge-path",
    "concepts": "--concept", "output": "-o", "model_config": "--model-config", "source": "SOURCE"}


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

    bundle = load_model(args.model, args.device, **{"dtype": args.dtype, "config": args.model_config, **kw})
    if any(getattr(args, flag, False) for flag in ("gradient_checkpointing", "attention_slicing", "vae_tiling")):
        bundle.save_memory(gradient_checkpointing=args.gradient_checkpointing,
                           attention_slicing=args.attention_slicing, vae_tiling=args.vae_tiling)
    return bundle


def _output_dir(args, *own: str, shared: bool = False) -> Path:
    from .io import claim_output

    return claim_output(args.output, args.command, own, shared)


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
            print(f"artshield: {len(failures)} input(s) failed:", *(f"  {one_line(f['error'])}" for f in failures),
                  sep="\n", file=sys.stderr)
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

    if getattr(args, "output", None) is not None:      # every command but ui writes into -o
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
    if args.command == "erase":
        args.attacks, args.attack_options = _erase_attacks(args.attack, args.attack_option or [])
        args.concept = (args.concept or []) + _concepts_file(args.concepts_file)
        if not args.concept:
            raise ArtshieldError("give the concept to erase: --concept TEXT (repeatable) or --concepts-file FILE")


def _concepts_file(path: str | None) -> list[str]:
    """The concepts a file lists, one per line (blank lines and lines starting with # skipped)."""
    if path is None:
        return []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ArtshieldError(f"--concepts-file {path}: cannot read it ({e.__class__.__name__})") from None
    found = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not found:
        raise ArtshieldError(f"--concepts-file {path}: lists no concept (one per line)")
    return found


def _erase_attacks(text: str, assignments: list[str]) -> tuple[list[str], dict]:
    """--attack and --attack-option, checked against each attack's options (no model needed)."""
    from .names import ERASE_ATTACKS
    from .options import parse_assignments

    chosen = list(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in chosen if a not in ERASE_ATTACKS]
    if not chosen or unknown:
        raise ArtshieldError(f"--attack {text}: choose from {', '.join(ERASE_ATTACKS)}, comma-separated")
    options: dict[str, dict] = {}
    for item in assignments:
        name, dot, rest = item.partition(".")
        if not dot or name not in chosen:
            raise ArtshieldError(f"--attack-option {item}: expected ATTACK.KEY=VALUE with ATTACK one of "
                                 f"{', '.join(chosen)}")
        options.setdefault(name, {}).update(parse_assignments([rest]))
    if options:
        from .erase.attacks import ATTACKS

        for name, values in options.items():
            try:
                ATTACKS.config(name, **values)
            except ValueError as e:
                raise ArtshieldError(f"--attack-option {name}: {e}") from None
    return chosen, options


def _apply_adapter(args, bundle):
    """--adapter's adaptation put on `bundle` (None without one); a base model other than the one
    loaded is a warning."""
    if not getattr(args, "adapter", None):
        return None
    from .mimic import Adapter
    from .models.weights import base_spec

    adapter = Adapter.load(args.adapter)
    if adapter.info.get("base_model") not in (None, args.model, base_spec(bundle)):
        _warn(args, f"--adapter {args.adapter} was trained on {adapter.info['base_model']}, not {args.model}")
    adapter.apply(bundle, folder=args.adapter)
    return adapter


def cmd_generate(args) -> int:
    from .generate import generate

    start = time.time()
    mitigate, adjusted = _mitigation(args), []
    bundle = _load(args)
    if mitigate is not None and bundle.family != "sd":
        raise ArtshieldError("generate --mitigate-memorization: supports Stable Diffusion 1.x and 2.x models, "
                             f"not {bundle.family.upper()} yet")
    adapter = _apply_adapter(args, bundle)
    prompts = [adapter.prompt(p) if adapter else p for p in args.prompt for _ in range(args.n)]
    bar = _progress(args, len(prompts), "generate")
    images = generate(bundle, prompts, seed=args.seed, steps=args.steps, guidance=args.guidance, progress=bar.update,
                      sampler=args.sampler, autocast=args.autocast, mitigate=mitigate, records=adjusted)
    bar.close()
    out = _output_dir(args)
    _write_images(out, {f"{i:04d}.png": img for i, img in enumerate(images)})
    return _finish(args, out, {
        "command": "generate", "model": bundle.describe(), "seed": args.seed,
        "adapter": {"folder": args.adapter, **adapter.info} if adapter else None,
        "steps": args.steps or bundle.conventions.steps,
        "guidance": args.guidance if args.guidance is not None else bundle.conventions.guidance,
        "sampler": args.sampler, "autocast": args.autocast,
        "mitigation": {"method": "Wen et al. (ICLR 2024) prompt-embedding adjustment", **vars(mitigate)} if mitigate else None,
        "images": [{"file": f"{i:04d}.png", "prompt": p, "seed": args.seed + i,
                    **({"mitigation": adjusted[i]} if mitigate else {})} for i, p in enumerate(prompts)],
        "seconds": round(time.time() - start, 2), "environment": environment()})


def _mitigation(args):
    """generate's --mitigate-* options as a MitigateConfig, or None without --mitigate-memorization."""
    from .audit.mitigate import MitigateConfig

    given = {k: getattr(args, f"mitigate_{k}") for k in ("target", "iterations", "lr")}
    if not args.mitigate_memorization:
        named = [f"--mitigate-{k}" for k, v in given.items() if v is not None]
        if named:
            raise ArtshieldError(f"{', '.join(named)} set without --mitigate-memorization: add it, or leave them out")
        return None
    try:
        return MitigateConfig.with_overrides(**given)
    except ValueError as e:
        raise ArtshieldError(f"generate --mitigate-memorization: {e}") from None


def cmd_bench(args) -> int:
    if args.preset not in names.BENCH_PRESETS:
        raise ArtshieldError(f"bench --preset {args.preset}: unknown (available: {', '.join(names.BENCH_PRESETS)})")
    if args.preset != "model-quality":
        return _bench_experiment(args)
    if args.ray is not None:
        raise ArtshieldError("bench --preset model-quality runs on one machine; --ray runs the experiment presets "
                             f"({', '.join(p for p in names.BENCH_PRESETS if p != 'model-quality')})")
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
    from .io import write_json, write_text

    if args.model != "mini":
        raise ArtshieldError(f"bench --preset {args.preset} measures with the icon judge, so it needs --model mini")
    out = _output_dir(args, "cells", shared=True)          # bench workers share a folder, cell by cell
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.summarise and not (out / "protocol.json").exists():
        raise ArtshieldError(f"bench --summarise: {out} holds no cells of a run to summarise")
    judge = None
    if args.judge != "icon":
        from .metrics.judges import load_judge

        if getattr(args, "ray", None) is not None:
            raise ArtshieldError("bench --judge: Ray workers judge with the icon judge; run without --ray",
                                 param="judge", value=args.judge)
        judge = experiment.corpus_classifier(load_judge(args.judge, args.judge_path),
                                             experiment.PRESETS[args.preset], args.judge_path)
    try:
        ray = None if args.summarise else _ray(args)
        execute = None if ray is None else (lambda runner: _ray_bench(runner, ray, log))
        results = experiment.run_preset(_load(args), args.preset, out, log=log, summarise_only=args.summarise,
                                        execute=execute, judge=judge)
    except ValueError as e:
        raise ArtshieldError(f"bench: {e}") from None
    results["command"] = f"artshield bench --preset {args.preset} -o {args.output}"
    results["environment"] = environment()
    write_json(results, out / "results.json")          # the figures first: a page that fails loses nothing
    write_text(report_html.render(results, results["summary"], out), out / "report.html")
    return _finish(args, out, results)


def _ray(args) -> dict | None:
    """The Ray settings of --ray and --ray-cpus (None without --ray); Ray must be installed."""
    if getattr(args, "ray", None) is None:
        return None
    from .cluster import import_ray

    import_ray()
    if args.ray_cpus < 1:
        raise ArtshieldError(f"--ray-cpus {args.ray_cpus}: must be at least 1")
    memory = {flag: bool(getattr(args, flag, False)) for flag in ("gradient_checkpointing", "attention_slicing",
                                                                   "vae_tiling")}
    return {"address": args.ray, "cpus": args.ray_cpus,
            "model": {"spec": args.model, "device": args.device, "dtype": None if args.dtype == "auto" else args.dtype,
                      "config": args.model_config, "memory": memory}}


def _ray_bench(runner, ray: dict, log) -> list:
    from .cluster import run_bench

    return run_bench(runner, ray["model"], ray["address"], ray["cpus"], log=log)


def _read_folder_images(folder: str) -> list:
    """--surrogate-images: every readable image of a folder (at least one)."""
    from .io import read_captioned_folder

    found = read_captioned_folder(folder) if Path(folder).is_dir() else None
    if not found or not found.images:
        raise ArtshieldError(f"--surrogate-images {folder}: expected a folder with at least one readable image")
    return found.images


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
    from .options import parse_assignments

    flags = {"budget": args.budget, "steps": args.steps, "step": args.step, "prompt": args.prompt,
             "eot": tuple(args.eot.split(",")) if args.eot else None, "target": _parse_target(args.target),
             "target_style": args.target_style,
             "surrogate_images": _read_folder_images(args.surrogate_images) if args.surrogate_images else None}
    options = {**parse_assignments(args.option or []), **{k: v for k, v in flags.items() if v is not None}}
    _check_method(args, "protect", **options)
    ray = _ray(args)
    batch = plan_batch(args.images, args.output, "protected copy", args.format == "keep", args.overwrite,
                       settings=_settings(args))
    head = {"command": "protect", "method": args.method, "model": {"spec": args.model}, "seed": args.seed}
    report, checkpoint = reporter(batch, head, start)
    done = BatchResult(batch.done, batch.failures)
    if batch.todo and ray is not None:            # the model loads on the workers, once each
        from .cluster import ProtectPool

        pool = ProtectPool(ray["model"], ray["address"], ray["cpus"])
        try:
            head["model"] = pool.describe()
            head["ray"] = {"workers": pool.size, **pool.resources}
            bar = _progress(args, len(batch.todo), f"protect ({args.method}) on {pool.size} Ray worker(s)", unit="image")
            done = protect_batch(None, batch, args.method, args.seed, args.batch, args.format == "keep",
                                 progress=bar.update, checkpoint=checkpoint, pool=pool, **options)
            bar.close()
        finally:
            pool.close()
    elif batch.todo:
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
    from .protect.report import PAGE, write_page

    results = {**report(done), "page": PAGE}
    try:
        write_page(batch.out, results)
    except OSError as e:             # the protected files are written; only the page is missing
        _warn(args, f"{batch.out / PAGE}: not written ({e})")
        results["page"] = None
    return _finish(args, batch.out, results)


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


def _style_folders(path: str) -> dict[str, list]:
    """--others: one sub-folder of images per style, at least 2 styles of at least 2 images each."""
    from .io import read_captioned_folder

    folder = Path(path)
    styles = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    out = {}
    for style in styles:
        found = read_captioned_folder(style)
        if len(found.images) >= 2:
            out[style.name] = found.images
    if len(out) < 2:
        raise ArtshieldError(f"--others {path}: needs at least 2 sub-folders (one per style) of 2 or more images each")
    return out


def cmd_check(args) -> int:
    from .bench import check, report_html
    from .io import read_captioned_folder, write_json, write_text
    from .metrics.judges import load_judge

    start = time.time()
    if args.method not in names.PROTECT:
        raise ArtshieldError(f"unknown protection (use {', '.join(names.PROTECT)})", param="method", value=args.method)
    purifiers = tuple(q for q in args.purifiers.split(",") if q)
    unknown = [q for q in purifiers if q not in names.PURIFY]
    if unknown:
        raise ArtshieldError(f"--purifiers {args.purifiers}: unknown {', '.join(unknown)} (use {', '.join(names.PURIFY)})")
    folder = read_captioned_folder(args.images) if Path(args.images).is_dir() else None
    if not folder or not folder.images:
        raise ArtshieldError(f"{args.images}: expected a folder of your images")
    prompts = None
    if args.prompts:
        try:
            prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ArtshieldError(f"{args.prompts}: cannot read the prompts ({e})") from None
        if not prompts or not all(check.TRIGGER in p for p in prompts):
            raise ArtshieldError(f"{args.prompts}: needs one prompt per line, each with the trigger word "
                                 f"{check.TRIGGER!r}")
    others = _style_folders(args.others) if args.others else None
    judge = load_judge(args.judge, args.judge_path)
    bundle = _load(args)
    out = _output_dir(args, "results.json")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        results = check.check(bundle, folder.images, out, method=args.method, budget=args.budget, purifiers=purifiers,
                              level=args.level, log=log, judge=judge, others=others, prompts=prompts)
    except ValueError as e:
        raise ArtshieldError(f"check: {e}") from None
    results.update(failed=results["failed"] + folder.failures, environment=environment(),
                   seconds_total=round(time.time() - start, 1))
    write_json(results, out / "results.json")
    write_text(report_html.render(results, results["summary"], out), out / "report.html")
    if not args.quiet:
        for line in ([results["verdict"]] if "verdict" in results else
                     [f"{r['protection']}@{r['budget']:g}: {r['verdict']}" for r in results["summary"]]):
            print(line, file=sys.stderr)
    return _finish(args, out, results)


def cmd_mimic(args) -> int:
    from .io import read_captioned_folder
    from .mimic import fill_captions
    from .options import make_method, parse_assignments

    start = time.time()
    options = {**parse_assignments(args.option or []), "steps": args.steps, "lr": args.lr,
               "batch_size": args.batch_size, "trigger": args.trigger, "seed": args.seed}
    _check_method(args, "mimic", **options)
    folder = read_captioned_folder(args.images) if Path(args.images).is_dir() else None
    if not folder or not (folder.images or folder.failures):
        raise ArtshieldError(f"{args.images}: expected a folder of images (with optional .txt captions beside them)")
    if not folder.images:
        raise ArtshieldError(f"{args.images}: none of its {len(folder.failures)} images could be read")
    bundle = _load(args)
    template = args.caption or bundle.conventions.style("{trigger}")
    captions = fill_captions(folder.files, folder.captions, template, args.trigger)
    try:
        method = make_method("mimic", args.method, bundle, **options)
    except ValueError as e:              # a method that does not run on this model's family
        raise ArtshieldError(str(e).splitlines()[0], param="model", value=args.model) from None
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
    from .erase.base import refuse_flow
    from .erase.evaluate import default_preserve, judged_targets
    from .models.weights import Edit
    from .options import make_method, parse_assignments

    start = time.time()
    common = {"templates": args.template, "seed": args.seed}
    closed = args.method in ("uce", "rece")
    keeps = closed or args.method == "advunlearn"      # methods with prompts to keep as they are
    own = {"guide": args.guide, "preserve": args.preserve} if closed else \
        {"iterations": args.iterations, "lr": args.lr, "eta": args.eta,
         **({"preserve": args.preserve} if keeps else {})}
    own = {**parse_assignments(args.option or []), **{k: v for k, v in own.items() if v is not None}}
    _check_method(args, "erase", **common, **own)
    concepts = [c.strip() for c in args.concept]
    Edit.check_destination(args.output, args.model)
    judge, styles = _erase_judge(args)
    bundle = _load(args)
    refuse_flow(bundle, args.method)
    if bundle.is_flow and args.recovery_steps and not args.no_eval:
        _warn(args, f"the recovery attacks are not built for {bundle.family.upper()}: the erasure is evaluated "
                    "before and after only")
        args.recovery_steps = 0
    if styles is not None:
        from .erase.evaluate import StyleSet
        from .metrics.judges import squares

        side = max(64, bundle.image_size)
        styles = StyleSet(squares(styles[0], side), {k: squares(v, side) for k, v in styles[1].items()})
    targets = judged_targets(bundle, concepts, style_judge=judge is not None, styles=styles)
    per_other = max(2, args.eval_prompts // 4)
    if keeps and own.get("preserve") is None:
        own["preserve"] = default_preserve(targets, args.seed, args.eval_prompts, per_other, styles)
    eraser = make_method("erase", args.method, bundle, **common, **own)
    bar = _progress(args, eraser.total_steps(len(concepts)), f"erase ({args.method})",
                    unit="matrix" if closed else "step")
    edit = eraser.run(concepts, progress=bar.update)
    bar.close()
    out = _output_dir(args, "edit.json")
    edit.save(out)
    results = {"command": "erase", "method": args.method, "concept": concepts[0] if len(concepts) == 1 else concepts,
               "model": bundle.describe(), "seed": args.seed, "edit": str(out),
               **{k: v for k, v in edit.info.items() if k not in ("method",)},
               "erase_seconds": edit.info["seconds"],
               "generate_with": f"artshield generate --model {out} --prompt \"{concepts[0]}\""}
    evaluations = [] if args.no_eval else _evaluate_erasure(args, bundle, edit, targets, concepts, per_other, out,
                                                            judge, styles)
    if len(concepts) == 1 and evaluations:       # one concept: its figures at the top level too
        results.update({k: evaluations[0][k] for k in ("before", "after", "recovery") if k in evaluations[0]})
    from .erase.report import render
    from .io import write_text

    results = {**results, "evaluations": evaluations, "report": "report.html",
               "seconds": round(time.time() - start, 2), "environment": environment()}
    write_text(render(results, out), out / "report.html")
    return _finish(args, out, results)


def _erase_judge(args):
    """erase's --judge, --references, --others, checked before the model loads: (the style judge or None
    for the icon judge, (the erased style's images, {other style: images}) or None)."""
    from .io import read_captioned_folder
    from .metrics.judges import load_judge

    if args.judge == "icon":
        if args.references or args.others or args.judge_path:
            raise ArtshieldError("--references, --others and --judge-path go with --judge clip or csd")
        return None, None
    judge = load_judge(args.judge, args.judge_path)
    if bool(args.references) != bool(args.others):
        raise ArtshieldError("--references and --others go together (the erased style's images, and other styles')")
    if not args.references:
        return judge, None
    found = read_captioned_folder(args.references) if Path(args.references).is_dir() else None
    if not found or len(found.images) < 2:
        raise ArtshieldError(f"--references {args.references}: expected a folder of at least 2 images of the style")
    return judge, (found.images, _style_folders(args.others))


def _evaluate_erasure(args, bundle, edit, targets: dict, concepts: list[str], per_other: int, out: Path,
                      judge=None, styles=None) -> list:
    from .erase.evaluate import evaluate_all

    bar, records = _progress(args, None, "evaluate"), []
    for i, (record, sheet) in enumerate(evaluate_all(
            bundle, edit, targets, concepts, seed=args.seed, n_target=args.eval_prompts, per_other=per_other,
            recovery_steps=args.recovery_steps, steps=args.steps, guidance=args.guidance, progress=bar.update,
            attacks=args.attacks, attack_options=args.attack_options,
            judge=judge, styles=styles)):
        if sheet is None:
            _warn(args, f"no evaluation of {record['concept']!r}: {record['skipped']}")
        else:
            _write_images(out, {f"eval_{i}.png": sheet})
            record = {**record, "grid": f"eval_{i}.png"}
        records.append(record)
    bar.close()
    return records


def cmd_audit_dataset(args) -> int:
    """Dataset inference: --dataset against --heldout (audit/dataset.py)."""
    from .audit import dataset
    from .audit.report import dataset_page
    from .io import read_captioned_folder, write_text

    start = time.time()
    if not (args.dataset and args.heldout):
        raise ArtshieldError("--dataset and --heldout go together: the images you think were trained on, and images "
                             "of the same kind the model cannot have seen")
    others = [flag for flag, value in (("--prompts", args.prompts), ("--candidates", args.candidates)) if value]
    if others:
        raise ArtshieldError(f"{' and '.join(others)} belong to the memorisation audit, not to dataset inference "
                             "(--dataset, --heldout)")
    if not 0 < args.alpha < 1:
        raise ArtshieldError(f"--alpha {args.alpha:g}: a probability between 0 and 1 (e.g. 0.01)")
    if args.folds < 2:
        raise ArtshieldError(f"--folds {args.folds}: at least 2")
    if args.permutations < math.ceil(1 / args.alpha) - 1:
        raise ArtshieldError(f"--permutations {args.permutations}: too few to reach --alpha {args.alpha:g} (the "
                             f"smallest p-value is 1 / (permutations + 1)): use at least "
                             f"{math.ceil(1 / args.alpha) - 1}")
    sets = {}
    for flag, folder in (("--dataset", args.dataset), ("--heldout", args.heldout)):
        if not Path(folder).is_dir():
            raise ArtshieldError(f"{flag} {folder}: {'not a folder' if Path(folder).exists() else 'no such folder'}")
        sets[flag] = read_captioned_folder(folder)
    least = dataset.needed(args.folds)
    counts = {flag: len(found.images) for flag, found in sets.items()}
    if min(counts.values()) < least:
        raise ArtshieldError(f"dataset inference needs at least {least} readable images in each folder (--dataset "
                             f"{args.dataset}: {counts['--dataset']}, --heldout {args.heldout}: "
                             f"{counts['--heldout']}); "
                             "30 or more each make a real effect far easier to find")
    if args.calibrate and not args.adapter:
        raise ArtshieldError("--calibrate subtracts the base model's features from the adapted model's: it needs --adapter")
    bundle = _load(args)
    if args.adapter:
        from .mimic import Adapter

        Adapter.load(args.adapter)          # a folder it cannot read is refused before any work
    default = args.caption if args.caption is not None else bundle.conventions.generic_prompt
    suspect, heldout = sets["--dataset"], sets["--heldout"]
    plain = {k: [c or default for c in found.captions] for k, found in (("suspect", suspect), ("heldout", heldout))}
    out = _output_dir(args)
    bar = _progress(args, sum(counts.values()) * (2 if args.calibrate else 1), "features")
    # --calibrate: the base model's own features first, the reference each image is calibrated by
    reference = dataset.images_features(bundle, suspect.images, plain["suspect"], heldout.images, plain["heldout"],
                                        seed=args.seed, progress=bar.update) if args.calibrate else None
    adapter = _apply_adapter(args, bundle)

    def captions(key):
        return [adapter.prompt(c) for c in plain[key]] if adapter else plain[key]

    try:
        record = dataset.run(bundle, suspect.images, captions("suspect"), heldout.images, captions("heldout"),
                             alpha=args.alpha, folds=args.folds, permutations=args.permutations, seed=args.seed,
                             progress=bar.update, reference=reference)
    except ValueError as e:
        raise ArtshieldError(f"audit: {e}") from None
    bar.close()
    record["files"] = {"suspect": [as_text(str(f)) for f in suspect.files],
                       "heldout": [as_text(str(f)) for f in heldout.files]}
    failures = suspect.failures + heldout.failures
    about = {"folder": args.adapter, **{k: v for k, v in adapter.info.items() if k != "captions"}} if adapter else None
    results = {"command": "audit", "mode": "dataset inference", "model": bundle.describe(), "adapter": about,
               "folders": {"dataset": as_text(str(args.dataset)), "heldout": as_text(str(args.heldout))},
               "seed": args.seed,
               **record, "report": "report.html", "failed": failures, "seconds": round(time.time() - start, 2),
               "environment": environment()}
    write_text(dataset_page(results), out / "report.html")
    if not args.quiet:
        print(f"artshield audit: {record['verdict']}", file=sys.stderr)
    return _finish(args, out, results)


def cmd_audit(args) -> int:
    from .audit import (AnisotropyConfig, AuditSet, ConsensusConfig, DetectConfig, ExtractConfig, audit,
                        corpus_audit_set, membership)
    from .audit.report import page
    from .io import read_lines, write_text

    if args.dataset or args.heldout:
        return cmd_audit_dataset(args)
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
        anisotropy = AnisotropyConfig(generations=args.detect_generations, sampling_steps=args.steps)
        consensus = ConsensusConfig.with_overrides(generations=args.consensus_generations, sampling_steps=args.steps,
                                                   guidance=args.guidance)
    except ValueError as e:
        raise ArtshieldError(f"audit: {e}") from None
    chosen = AuditSet(read_lines(args.prompts, "--prompts", "prompts"), source=args.prompts) if args.prompts else None
    bundle = _load(args)
    adapter = _apply_adapter(args, bundle)
    if adapter is not None and chosen is not None:
        chosen.prompts = [adapter.prompt(p) for p in chosen.prompts]
    if chosen is None:
        if not bundle.conventions.corpus:
            raise ArtshieldError("--prompts FILE is needed: only mini's own training captions are built in")
        chosen = corpus_audit_set(bundle, args.seed, args.control)
    prompts, training = chosen.prompts, chosen.training
    if extract.threshold == "auto" and training is None:
        raise ArtshieldError("--threshold auto needs the training images (built in for mini only)")
    out = _output_dir(args)
    bar = _progress(args, sum(c.generations * len(prompts) for m, c in (("extract", extract), ("detect", detect),
                                                                         ("anisotropy", anisotropy),
                                                                         ("consensus", consensus)) if m in methods),
                    "audit")
    result = audit(bundle, prompts, truth=chosen.truth, training=training, methods=methods, extract=extract,
                   detect=detect, anisotropy=anisotropy, consensus=consensus, progress=bar.update)
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


def cmd_export(args) -> int:
    from .export import export
    from .models.loader import DTYPES

    out = export(args.source, args.output, args.format, adapter=args.adapter,
                 dtype=DTYPES[args.dtype] if args.dtype else None, config=args.model_config)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_study(args) -> int:
    from . import study

    modes = [m for m, on in (("RUN", args.run), ("--serve", args.serve), ("--analyse", args.analyse)) if on]
    if len(modes) != 1:
        raise ArtshieldError("give one of: a RUN folder (with -o) to make a study, --serve STUDY, or --analyse CSV"
                             + (f" (got {', '.join(modes)})" if modes else ""))
    if args.serve:
        if not 0 < args.port < 65536:
            raise ArtshieldError(f"--port {args.port}: not a port number (1-65535)")
        study.serve(args.serve, args.host, args.port, log=(lambda *a: None) if args.quiet else print)
        return 0
    if args.analyse:
        if not 0 <= args.min_attention <= 1:
            raise ArtshieldError(f"--min-attention {args.min_attention:g}: a share between 0 and 1")
        result = study.analyse(args.analyse, args.min_attention)
        if not args.quiet and not args.json:
            print(study.table(result))
        if args.output:
            from .io import output_folder, write_json

            write_json(result, output_folder(args.output) / "results.json")
        if args.json:
            print(json.dumps(result, indent=2))
        return 0
    if not args.output:
        raise ArtshieldError("making a study needs -o STUDY (the folder to write)")
    made = study.make_study(args.run, args.output, pairs=args.pairs, conditions=args.conditions,
                            baseline=args.baseline, attention=args.attention, seed=args.seed)
    if not args.quiet:
        pairs = sum(t["kind"] == "pair" for t in made["trials"])
        print(f"wrote {Path(args.output) / 'study.json'}: {pairs} pairs ({made['pairs_per_condition']} per condition) "
              f"and {len(made['trials']) - pairs} attention checks; serve it with artshield study --serve {args.output}",
              file=sys.stderr)
    return 0


def _terminated(signum, frame):
    raise KeyboardInterrupt


def cmd_ui(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ArtshieldError("artshield ui needs the [ui] extra: pip install 'artshield[ui]' (Gradio)") from None
    from .app import serve

    if not 0 < args.port < 65536:
        raise ArtshieldError(f"--port {args.port}: not a port number (1-65535)")
    serve(args.host, args.port, args.share, args.model, args.device, args.jobs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.quiet)
    signal.signal(signal.SIGTERM, _terminated)      # a polite kill unwinds like ^C: no partial file stays
    code = 2
    try:
        _check_common(args)
        code = globals()[f"cmd_{args.func}"](args)
        return code
    except ArtshieldError as e:
        print(f"artshield: error: {one_line(e.render(FLAGS))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artshield: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # output piped into a reader that stopped (head, less)
        sys.stderr.close()
        return 0
    except OSError as e:             # the disk filled up, a folder turned read-only mid-run
        where = f"{e.filename}: " if e.filename else ""
        print(f"artshield: error: {one_line(where + (e.strerror or str(e).splitlines()[0]))}", file=sys.stderr)
        return 2
    finally:
        if "artshield.io" in sys.modules:
            sys.modules["artshield.io"].release_locks(refused=code == 2)


if __name__ == "__main__":
    sys.exit(main())
