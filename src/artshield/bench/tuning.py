"""Choosing a mimic's settings and the bench's sampling on the tuning split, never on what is scored.

    python -m artshield.bench.tuning mimic --mimic lora --artists gartoon moka --seeds 0 1 2 \\
        --steps 150 250 --lr 3e-3 6e-3 --json docs/results/tuning/mimics.json
    python -m artshield.bench.tuning sampling --artist gartoon --seeds 0 1 2 --json docs/results/tuning/sampling.json

Every probe fine-tunes on an artist's clean fine-tuning images (the bench's 30, captions with the
trigger word), generates the bench's *tuning* captions (the first `TUNING_PROMPTS` of its shuffled
reference split, which no bench cell scores), and asks the judge whether each image is in the
artist's style.

`mimic` runs a grid (steps x rate x batch size) over artists and training seeds. A setting is
usable when clean mimicry reaches `MIN_SUCCESS` on *every* seed of every artist: a mimic whose
clean run swings between seeds cannot measure a protection. Of the usable settings the cheapest
(training seconds) is chosen. Rows are appended to the --json file as they finish, and a rerun
skips the rows it already holds, so a long grid can be stopped and resumed.

`sampling` trains one clean LoRA per seed and generates the same tuning captions, with the same
noise, under each candidate sampler (`CANDIDATES`); each candidate's success is compared with
DDIM at the model's steps in float32 (the committed runs' sampler), paired over seeds and prompts
(stats.difference), with the share of images the judge labels alike and the seconds per image.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import corpus
from ..generate import generate
from ..io import write_json
from ..metrics.judge import Judge
from ..mimic import mimic
from ..models import ModelBundle, load_model
from . import stats
from .experiment import TRIGGER, reference_split, trigger_caption

MIN_SUCCESS = 0.4          # clean mimicry a mimic's settings must reach on every seed and artist
TUNING_PROMPTS = 32        # the bench's tuning split (Preset.tuning_prompts)
GENERATIONS = 2            # images per tuning caption, distinct noise
# generate()'s options, by name; "ddim-30" is the reference (the committed runs' sampling on mini)
CANDIDATES = {
    "ddim-30": {"sampler": "ddim", "steps": 30},
    "ddim-30-bf16": {"sampler": "ddim", "steps": 30, "autocast": "bf16"},
    "ddim-15": {"sampler": "ddim", "steps": 15},
    "dpm-15": {"sampler": "dpm-solver++", "steps": 15},
    "dpm-10": {"sampler": "dpm-solver++", "steps": 10},
    "dpm-10-bf16": {"sampler": "dpm-solver++", "steps": 10, "autocast": "bf16"},
}


def known(artist: str) -> bool:
    """Whether `artist` is a theme mini was trained on (its style is in the base model), not a held-out one."""
    return artist in corpus.themes(heldout=False)


def tuning_data(artist: str, images: int = 30) -> tuple[list[torch.Tensor], list[str], list[str]]:
    """(fine-tuning images, their captions, the tuning prompts x GENERATIONS) of an artist.

    A held-out artist gives the bench's fine-tuning images and its tuning captions. A theme mini was
    trained on (a *known* style, the control) gives icons of mini's own training set: the first `images`
    to fine-tune on and the next TUNING_PROMPTS captions as prompts, so style and objects are both
    ones the base model draws. A mimic that reaches a known style but not a held-out one can learn,
    and what it cannot do is add a style the base model does not draw; one that reaches neither
    cannot move the trigger to a style at all."""
    if known(artist):
        pool = corpus.items(split="train", theme=artist)
        if len(pool) < images + TUNING_PROMPTS:
            raise SystemExit(f"theme {artist!r} has {len(pool)} training icons: fewer than the "
                             f"{images + TUNING_PROMPTS} a known-style probe needs")
        finetune, tuning = pool[:images], pool[images:images + TUNING_PROMPTS]
        return (list(corpus.load_images(finetune, 64)), [trigger_caption(i.caption, artist) for i in finetune],
                [trigger_caption(i.caption, artist) for i in tuning for _ in range(GENERATIONS)])
    if artist not in corpus.themes(heldout=True):
        raise SystemExit(f"artist {artist!r} is not a theme of the corpus ({', '.join(corpus.themes(True))} "
                         f"held out; {', '.join(corpus.themes(False))} known to mini)")
    finetune = corpus.items(split="finetune", theme=artist)[:images]
    tuning, _ = reference_split(artist, TUNING_PROMPTS, 0)
    prompts = [trigger_caption(i.caption, artist) for i in tuning for _ in range(GENERATIONS)]
    return list(corpus.load_images(finetune, 64)), [trigger_caption(i.caption, artist) for i in finetune], prompts


def outcomes(judge: Judge, images: torch.Tensor, artist: str) -> list[int]:
    styles, _ = judge.predict(images)
    return [int(s == artist) for s in styles]


def train_and_judge(bundle: ModelBundle, judge: Judge, artist: str, images: list, captions: list[str],
                    prompts: list[str], method: str, seed: int, sampling: dict | None = None, **options):
    """Fine-tune the mimic on `images`, generate the prompts, judge them: (adapter, per-image
    outcomes, training seconds, generation seconds)."""
    t0 = time.time()
    adapter = mimic(bundle, images, captions, method, seed=seed, **options)
    train = time.time() - t0
    t0 = time.time()
    hits = outcomes(judge, generate(adapter.apply(bundle.copy()), [adapter.prompt(p) for p in prompts], seed=seed,
                                    **(sampling or {})), artist)
    return adapter, hits, train, time.time() - t0


def probe(bundle: ModelBundle, judge: Judge, artist: str, method: str, steps: int, lr: float | None,
          batch_size: int, seed: int, sampling: dict | None = None, images: int = 30,
          options: dict | None = None) -> dict:
    """One fine-tuning on the artist's clean images, judged on the tuning split: one row. `options`
    are the mimic's other settings (rank, lr_schedule, autocast, ...)."""
    pictures, captions, prompts = tuning_data(artist, images)
    adapter, hits, train, sample = train_and_judge(bundle, judge, artist, pictures, captions, prompts, method, seed,
                                                   sampling, steps=steps, lr=lr, batch_size=batch_size,
                                                   **(options or {}))
    return {"artist": artist, "known_style": known(artist), "mimic": method, "steps": steps, "lr": adapter.info["config"]["lr"],
            "batch_size": batch_size, "seed": seed, "options": options or {}, "images": len(pictures),
            "prompts": len(prompts),
            "sampling": sampling or {}, "success": round(float(np.mean(hits)), 4), "outcomes": hits,
            "final_loss": round(adapter.info["final_loss"], 5),
            "train_seconds": round(train, 1), "generate_seconds": round(sample, 1),
            "torch_threads": torch.get_num_threads()}


def _key(artist: str, mimic: str, steps: int, lr: float, batch_size: int, seed: int, sampling: dict,
         options: dict | None = None, **_) -> tuple:
    """What identifies a probe: a row of the grid (its other fields are what it measured)."""
    return (artist, mimic, steps, float(lr), batch_size, seed, json.dumps(sampling, sort_keys=True),
            json.dumps(options or {}, sort_keys=True))


def _setting(r: dict) -> tuple:
    return r["mimic"], r["steps"], float(r["lr"]), r["batch_size"], json.dumps(r.get("options") or {}, sort_keys=True)


def choose(rows: list[dict], artists: list[str], seeds: list[int], bar: float = MIN_SUCCESS) -> dict:
    """Per mimic and setting: success per artist (min, mean, max over seeds; also for an artist of the
    rows outside `artists`, such as a known style), training seconds; the cheapest setting that
    reaches `bar` on every seed of every one of `artists`, or None."""
    settings: dict[tuple, list[dict]] = {}
    for r in rows:
        settings.setdefault(_setting(r), []).append(r)
    table, chosen = [], {}
    for (method, steps, lr, batch, options), rs in sorted(settings.items()):
        shown = list(artists) + sorted({r["artist"] for r in rs} - set(artists))
        by_artist = {a: [r["success"] for r in rs if r["artist"] == a and r["seed"] in seeds] for a in shown}
        complete = bool(artists) and all(len(by_artist[a]) == len(seeds) for a in artists)
        usable = complete and all(min(by_artist[a]) >= bar for a in artists)
        entry = {"mimic": method, "steps": steps, "lr": lr, "batch_size": batch, "options": json.loads(options),
                 "success": {a: {"min": min(v), "mean": round(float(np.mean(v)), 4), "max": max(v), "seeds": len(v)}
                             for a, v in by_artist.items() if v},
                 "train_seconds": round(float(np.median([r["train_seconds"] for r in rs])), 1),
                 "complete": complete, "usable": usable}
        table.append(entry)
        if usable and (method not in chosen or entry["train_seconds"] < chosen[method]["train_seconds"]):
            chosen[method] = entry
    return {"bar": bar, "settings": table, "chosen": chosen}


def run_mimic_grid(args) -> dict:
    out = Path(args.json) if args.json else None
    stored = json.loads(out.read_text()) if out and out.exists() else {}
    rows = stored.get("rows", [])
    done = {_key(**r) for r in rows}
    bundle, judge = load_model(args.model, "cpu"), Judge.load()
    sampling = CANDIDATES[args.sampling]
    bounds = stored.get("known_styles", {})
    for artist in args.artists:
        if known(artist) and artist not in bounds:
            bounds[artist] = known_style_bounds(bundle, judge, artist, sampling)
    for artist, steps, lr, batch, options, seed in itertools.product(args.artists, args.steps, args.lr,
                                                                     args.batch_size, option_grid(args.set),
                                                                     args.seeds):
        probe_key = _key(artist, args.mimic, steps, lr, batch, seed, sampling, options)
        if probe_key in done:
            continue
        row = probe(bundle, judge, artist, args.mimic, steps, lr, batch, seed, sampling, options=options)
        row["command"] = (f"python -m artshield.bench.tuning mimic --mimic {args.mimic} --artists {artist} "
                          f"--steps {steps} --lr {lr} --batch-size {batch} --seeds {seed} --sampling {args.sampling}"
                          + "".join(f" --set {k}={v}" for k, v in options.items()))
        rows.append(row)
        done.add(probe_key)
        print(f"{artist} {args.mimic} steps {steps} lr {lr} batch {batch} {options or ''} seed {seed}: "
              f"success {row['success']:.3f} "
              f"({row['train_seconds']:.0f} s training)", flush=True)
        if out:
            write_json(_mimic_report(rows, args, bounds), out)
    return _mimic_report(rows, args, bounds)


def known_style_bounds(bundle: ModelBundle, judge: Judge, artist: str, sampling: dict) -> dict:
    """The base model on a known style's probe prompts (seed 0): with the theme's own name where the
    trigger stands (what a mimic that found the style would reach) and with the untrained trigger
    (where it starts)."""
    _, _, prompts = tuning_data(artist, images=1)
    named = [p.replace(f"{TRIGGER} style", f"{artist} style") for p in prompts]
    return {"named": round(float(np.mean(outcomes(judge, generate(bundle, named, seed=0, **sampling), artist))), 4),
            "trigger": round(float(np.mean(outcomes(judge, generate(bundle, prompts, seed=0, **sampling), artist))), 4),
            "prompts": len(prompts), "seed": 0}


def option_grid(settings: list[str]) -> list[dict]:
    """`--set rank=4,16 --set lr_schedule=cosine` -> every combination, as mimic options (values read
    as the command line's --option reads them: numbers as numbers, the rest as text)."""
    from ..options import parse_assignments

    axes = []
    for item in settings or []:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise SystemExit(f"--set takes NAME=V1,V2,...; not {item!r}")
        axes.append([next(iter(parse_assignments([f"{name}={v}"]).items())) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def _mimic_report(rows: list[dict], args, known_styles: dict | None = None) -> dict:
    artists = sorted({r["artist"] for r in rows if not known(r["artist"])})   # a known style (the control)
    seeds = sorted({r["seed"] for r in rows})                                 # never makes a setting usable
    return {"what": "mimic settings on the tuning split (bench.tuning): clean fine-tuning images, the bench's "
                    f"tuning captions x {GENERATIONS}, judged; usable = success >= {MIN_SUCCESS} on every seed "
                    "of every held-out artist (a theme mini was trained on is a control: see tuning_data); chosen = "
                    "the usable setting with the fewest training seconds",
            "model": args.model, **choose(rows, artists, seeds),
            **({"known_styles": known_styles} if known_styles else {}), "rows": rows}


def run_sampling(args) -> dict:
    bundle, judge = load_model(args.model, "cpu"), Judge.load()
    pictures, captions, prompts = tuning_data(args.artist)
    per_seed: dict[str, dict[int, list[int]]] = {name: {} for name in CANDIDATES}
    labels: dict[str, dict[int, list[str]]] = {name: {} for name in CANDIDATES}
    seconds: dict[str, float] = {name: 0.0 for name in CANDIDATES}
    for seed in args.seeds:
        adapter = mimic(bundle, pictures, captions, "lora", steps=args.steps, lr=args.lr, batch_size=8, seed=seed)
        adapted = adapter.apply(bundle.copy())
        for name, options in CANDIDATES.items():
            t0 = time.time()
            images = generate(adapted, [adapter.prompt(p) for p in prompts], seed=seed * 1_000_000, **options)
            seconds[name] += time.time() - t0
            styles, _ = judge.predict(images)
            labels[name][seed] = styles
            per_seed[name][seed] = [int(s == args.artist) for s in styles]
        print(f"seed {seed}: " + ", ".join(f"{n} {np.mean(per_seed[n][seed]):.3f}" for n in CANDIDATES), flush=True)
    reference = "ddim-30"
    ref = stats.arrange(per_seed[reference], GENERATIONS)
    n = len(prompts) * len(args.seeds)
    table = {}
    for name in CANDIDATES:
        _, (a, b) = stats.paired(stats.arrange(per_seed[name], GENERATIONS), ref)
        same = [x == y for s in args.seeds for x, y in zip(labels[name][s], labels[reference][s])]
        table[name] = {"options": CANDIDATES[name], "success": round(float(np.mean(a)), 4),
                       "difference_vs_ddim_30": stats.difference(a, b, n).to_dict(),
                       "labelled_alike": round(float(np.mean(same)), 4),
                       "seconds_per_image": round(seconds[name] / n, 4),
                       "speed_up": round(seconds[reference] / seconds[name], 2)}
    return {"what": "samplers on the tuning split (bench.tuning sampling): one clean LoRA per seed, the same tuning "
                    "captions and noise under each sampler; difference = candidate - DDIM 30 steps fp32, paired over "
                    "seeds and prompts (bench/stats.py)",
            "command": "python -m artshield.bench.tuning " + " ".join(args.argv),
            "model": args.model, "artist": args.artist, "seeds": args.seeds, "lora_steps": args.steps, "lora_lr": args.lr,
            "generations": n, "torch_threads": torch.get_num_threads(), "candidates": table}


def run_ablation(args) -> dict:
    """Each mimic variant (`--set` options) fine-tuned on the clean and on the protected images of
    the artist, per training seed, judged on the tuning split: relative mimicry (protected / clean),
    paired over seeds and prompts. The protected set is made once (seed 0) and shared by every variant
    and seed, so the variants differ only in how the mimic trains."""
    out = Path(args.json) if args.json else None
    stored = json.loads(out.read_text()) if out and out.exists() else {}
    rows = [{**r, "command": r.get("command", stored.get("command"))} for r in stored.get("rows", [])]
    done = {(r["variant"], r["condition"], r["seed"]) for r in rows}
    command = "python -m artshield.bench.tuning " + " ".join(args.argv)
    bundle, judge = load_model(args.model, "cpu"), Judge.load()
    pictures, captions, prompts = tuning_data(args.artist)
    from ..protect import protect

    protected = None
    sampling = CANDIDATES[args.sampling]
    for options in option_grid(args.set):
        variant = json.dumps({"steps": args.steps, "lr": args.lr, **options}, sort_keys=True)
        for condition in ("clean", f"{args.protection}@{args.budget:g}"):
            for seed in args.seeds:
                if (variant, condition, seed) in done:
                    continue
                if condition != "clean" and protected is None:
                    from ..options import parse_assignments

                    protected = protect(bundle, pictures, method=args.protection, budget=args.budget, seed=0,
                                        score=False, **parse_assignments(args.protect_option)).protected(pictures)
                images = pictures if condition == "clean" else protected
                adapter, hits, train, _ = train_and_judge(bundle, judge, args.artist, images, captions, prompts,
                                                          args.mimic, seed, sampling, steps=args.steps, lr=args.lr,
                                                          batch_size=8, **options)
                rows.append({"variant": variant, "options": options, "condition": condition, "seed": seed,
                             "success": round(float(np.mean(hits)), 4), "outcomes": hits,
                             "final_loss": round(adapter.info["final_loss"], 5), "train_seconds": round(train, 1),
                             "command": command})
                print(f"{variant} {condition} seed {seed}: success {rows[-1]['success']:.3f}", flush=True)
                if out:
                    write_json(_ablation_report(rows, args), out)
    return _ablation_report(rows, args)


def _ablation_report(rows: list[dict], args) -> dict:
    variants = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        by = {c: {r["seed"]: r["outcomes"] for r in rows if r["variant"] == variant and r["condition"] == c}
              for c in {r["condition"] for r in rows if r["variant"] == variant}}
        entry = {"variant": json.loads(variant),
                 "success": {c: round(float(np.mean([np.mean(o) for o in v.values()])), 4) for c, v in by.items()}}
        protected = [c for c in by if c != "clean"]
        if "clean" in by and protected:
            seeds, (a, b) = stats.paired(stats.arrange(by[protected[0]], GENERATIONS), stats.arrange(by["clean"], GENERATIONS))
            if seeds:
                entry["relative"] = stats.ratio(a, b, len(seeds) * a.shape[1] * GENERATIONS).to_dict()
                entry["seeds"] = seeds
        variants.append(entry)
    return {"what": "why a mimic shrugs a protection off (bench.tuning ablation): each variant of the mimic "
                    "trained on clean and on protected images of the artist, judged on the tuning split; "
                    "relative = protected / clean success, paired over seeds and prompts (95 %, no correction)",
            "commands": list(dict.fromkeys(r["command"] for r in rows if r.get("command"))),
            "model": args.model, "artist": args.artist, "mimic": args.mimic, "protection": args.protection,
            "budget": args.budget, "protect_options": getattr(args, "protect_option", []), "sampling": CANDIDATES[args.sampling], "variants": variants, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artshield.bench.tuning", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("mimic", help="a grid of a mimic's settings over artists and seeds")
    g.add_argument("--mimic", default="lora", choices=["lora", "dreambooth", "textual-inversion", "hypernetwork"])
    g.add_argument("--artists", nargs="+", default=["gartoon", "moka"])
    g.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    g.add_argument("--steps", nargs="+", type=int, required=True)
    g.add_argument("--lr", nargs="+", type=float, required=True)
    g.add_argument("--batch-size", nargs="+", type=int, default=[8])
    g.add_argument("--sampling", default="dpm-10-bf16", choices=list(CANDIDATES))
    g.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                   help="another of the mimic's options to vary (rank, lr_schedule, warmup_steps, autocast, ...)")
    a = sub.add_parser("ablation", help="which way of training lets a mimic shrug a protection off")
    a.add_argument("--mimic", default="lora", choices=["lora", "dreambooth", "textual-inversion", "hypernetwork"])
    a.add_argument("--artist", default="gartoon")
    a.add_argument("--protection", default="advdm")
    a.add_argument("--budget", type=float, default=16)
    a.add_argument("--protect-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the protection (steps, pool_steps, ...); default: its paper's")
    a.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a.add_argument("--steps", type=int, required=True)
    a.add_argument("--lr", type=float, required=True)
    a.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                   help="the mimic's options that make the variants (rank, targets, ...)")
    a.add_argument("--sampling", default="dpm-10-bf16", choices=list(CANDIDATES))
    s = sub.add_parser("sampling", help="candidate samplers against DDIM 30 steps on the tuning split")
    s.add_argument("--artist", default="gartoon")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument("--steps", type=int, default=500, help="LoRA steps (default 500, the standard preset's)")
    s.add_argument("--lr", type=float, default=3e-3, help="LoRA rate (default 3e-3, the standard preset's)")
    for p in (g, s, a):
        p.add_argument("--model", default="mini")
        p.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = {"mimic": run_mimic_grid, "sampling": run_sampling, "ablation": run_ablation}[args.what](args)
    if args.json:
        write_json(report, args.json)
    if args.what == "ablation":
        for v in report["variants"]:
            r = v.get("relative")
            print(f"{v['variant']}: {v['success']}" + (f", relative {r['mean']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                                                      if r and r["low"] is not None else ""))
    elif args.what == "mimic":
        for method, entry in report["chosen"].items():
            print(f"chosen for {method}: {entry['steps']} steps at {entry['lr']:g}, batch {entry['batch_size']} "
                  f"{entry['options'] or ''} "
                  f"({entry['train_seconds']:.0f} s training)")
        if not report["chosen"]:
            print(f"no setting reached {MIN_SUCCESS} on every seed of every artist")
    else:
        for name, row in report["candidates"].items():
            d = row["difference_vs_ddim_30"]
            print(f"{name:14s} success {row['success']:.3f}  vs ddim-30 {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                  f"  alike {row['labelled_alike']:.2f}  {row['speed_up']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
