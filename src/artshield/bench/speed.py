"""Cost of a PGD step: AdvDM (backward through the UNet) against SDS (the UNet Jacobian skipped).

    python -m artshield.bench.speed                 # mini; plus SD-1.5, SDXL, SD3, FLUX at 512/1024 on a GPU
    python -m artshield.bench.speed --sd15          # SD-1.5 (random weights) also on a CPU: slow
    python -m artshield.bench.speed --sd15 --sd15-size 256,512 --dtypes fp32 --memory-options both
    python -m artshield.bench.speed --sd3 --sd3-size 256 --flux --flux-size 256 --dtypes bf16   # SD3, FLUX
    python -m artshield.bench.speed --json out.json

--dtypes: the weights' precisions to time (fp32, fp16, bf16; default: the device's auto dtype).
--memory-options: off (default), on (gradient checkpointing, attention slicing and VAE tiling,
`ModelBundle.save_memory`), or both, measured side by side.

--mimic lora,dreambooth adds training steps of those methods (one image, batch 1, each run in its
own process).

For each model, method and batch size, measured in a fresh process of its own: seconds per PGD
step (median of the timed steps, after one warm-up step) and the peak memory the steps add on top
of the loaded model and images: on a GPU torch.cuda.max_memory_allocated; on a CPU the process's
peak resident set (VmHWM, reset through /proc/self/clear_refs) minus its resident set before the
first step. Ratios sds/advdm are printed side by side, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..models import load_model, resolve_device
from ..options import make_method

METHODS = ("advdm", "sds")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Peak memory added while the block runs, in MiB."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM to the current RSS
            self.base = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_kb("VmHWM") * 1024
        self.mib = max(0.0, (peak - self.base) / 2**20)


def time_steps(bundle, method: str, batch: int, steps: int, seed: int = 0) -> dict:
    size = bundle.image_size
    g = torch.Generator("cpu").manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    prot = make_method("protect", method, bundle, steps=steps + 1)
    prot.generator = torch.Generator("cpu").manual_seed(seed)
    pgd = prot.engine(images)
    prot.setup(pgd)
    sync = (lambda: torch.cuda.synchronize(bundle.device)) if bundle.device.type == "cuda" else (lambda: None)
    times = []
    with PeakMemory(bundle.device) as mem:
        pgd.step(prot.loss(pgd.views(), pgd), 0, prot.maximize)        # warm-up, untimed
        for k in range(1, steps + 1):
            sync()
            t0 = time.perf_counter()
            pgd.step(prot.loss(pgd.views(), pgd), k, prot.maximize)
            sync()
            times.append(time.perf_counter() - t0)
    return {"model": bundle.spec, "device": str(bundle.device), "dtype": str(bundle.dtype).replace("torch.", ""),
            "resolution": size, "method": method, "batch": batch, "seconds_per_step": statistics.median(times),
            "peak_memory_mib": mem.mib, "steps_timed": steps}


MIMIC_METHODS = ("lora", "dreambooth")
# real architectures, random weights (models/sd15.py)
RANDOM = {"sd15-random": "sd15", "sdxl-random": "sdxl", "sd3-random": "sd3-medium", "flux-random": "flux-dev"}


def time_mimic(bundle, method: str, steps: int, seed: int = 0) -> dict:
    """Seconds per training step (the whole run, its one-off VAE encoding included, over `steps`) and
    the peak memory the run adds, for one image at the model's size, batch 1."""
    size = bundle.image_size
    images = [torch.rand(3, size, size, generator=torch.Generator("cpu").manual_seed(seed))]
    trainer = make_method("mimic", method, bundle, steps=steps, batch_size=1)
    with PeakMemory(bundle.device) as mem:
        t0 = time.perf_counter()
        trainer.run(images, ["an icon, sks style"])
        seconds = time.perf_counter() - t0
    return {"model": bundle.spec, "device": str(bundle.device), "dtype": str(bundle.dtype).replace("torch.", ""),
            "resolution": size, "method": method, "batch": 1, "seconds_per_step": seconds / steps,
            "peak_memory_mib": mem.mib, "steps_timed": steps}


def measure_in_child(model: str, device: str, sd15_size: int, method: str, batch: int, steps: int,
                     dtype: str = "auto", save_memory: bool = False) -> dict:
    """time_steps in a fresh interpreter, so that no earlier measurement's memory is reused."""
    cmd = [sys.executable, "-m", "artshield.bench.speed", "--child", model, "--device", device,
           "--sd15-size", str(sd15_size), "--method", method, "--batches", str(batch), "--steps", str(steps),
           "--dtypes", dtype, "--memory-options", "on" if save_memory else "off"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"measurement {method} batch {batch} on {model} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_for_timing(model: str, device: str, sd15_size: int, dtype: str = "auto", save_memory: bool = False):
    from ..models.loader import resolve_dtype

    dev = resolve_device(device)
    if model in RANDOM:
        from ..models.sd15 import FLOW_ARCHITECTURES, flow_random_bundle, random_bundle

        make = flow_random_bundle if RANDOM[model] in FLOW_ARCHITECTURES else random_bundle
        bundle = make(RANDOM[model], dev, resolve_dtype(dtype, dev))
        bundle.unet.config.sample_size = sd15_size // bundle.latent_scale      # FLUX's transformer gets one too
    else:
        bundle = load_model(model, device, dtype=dtype)
    if save_memory:
        bundle.save_memory(gradient_checkpointing=True, attention_slicing=True, vae_tiling=True)
    return bundle


def run(models: list[str], device: str, sd15_sizes: dict[str, list[int]], batches: list[int], steps: int,
        dtypes: tuple[str, ...] = ("auto",), memory: tuple[bool, ...] = (False,), progress=print) -> list[dict]:
    rows = []
    for model in models:
        for size, dtype, batch, saving in ((z, d, b, m) for z in (sd15_sizes[model] if model in RANDOM else [0])
                                           for d in dtypes for b in batches for m in memory):
            pair = {m: measure_in_child(model, device, size, m, batch, steps, dtype, saving) for m in METHODS}
            a, s = pair["advdm"], pair["sds"]
            row = {"model": a["model"], "device": a["device"], "dtype": a["dtype"], "resolution": a["resolution"],
                   "batch": batch, "memory_options": saving,
                   "advdm_s_per_step": a["seconds_per_step"], "sds_s_per_step": s["seconds_per_step"],
                   "time_ratio_sds_over_advdm": s["seconds_per_step"] / a["seconds_per_step"],
                   "advdm_peak_mib": a["peak_memory_mib"], "sds_peak_mib": s["peak_memory_mib"],
                   "memory_ratio_sds_over_advdm": (s["peak_memory_mib"] / a["peak_memory_mib"]
                                                   if a["peak_memory_mib"] > 0 else None),
                   "steps_timed": steps}
            rows.append(row)
            progress(_format(row))
    return rows


def _format(r: dict) -> str:
    mem = f"{r['memory_ratio_sds_over_advdm']:.2f}" if r["memory_ratio_sds_over_advdm"] is not None else "n/a"
    return (f"{r['model']:<12} {r['device']:<6} {r['dtype']:<8} {r['resolution']:>4}px  batch {r['batch']}"
            f"{' (memory options)' if r.get('memory_options') else ''}:  "
            f"advdm {r['advdm_s_per_step']:.4f} s/step {r['advdm_peak_mib']:8.1f} MiB | "
            f"sds {r['sds_s_per_step']:.4f} s/step {r['sds_peak_mib']:8.1f} MiB | "
            f"sds/advdm time {r['time_ratio_sds_over_advdm']:.2f}, memory {mem}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artshield.bench.speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini", help="model to time besides SD-1.5 (default mini)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sd15", action="store_true", help="also time SD-1.5 (random weights) when not on a GPU")
    ap.add_argument("--sd15-size", default="512", help="SD-1.5 resolutions, comma-separated (default 512)")
    ap.add_argument("--sdxl", action="store_true", help="also time SDXL (random weights) when not on a GPU")
    ap.add_argument("--sdxl-size", default="1024", help="SDXL resolutions, comma-separated (default 1024)")
    ap.add_argument("--sd3", action="store_true", help="also time SD3 medium (random weights, no T5) when not on a GPU")
    ap.add_argument("--sd3-size", default="1024", help="SD3 resolutions, comma-separated (default 1024)")
    ap.add_argument("--flux", action="store_true",
                    help="also time FLUX.1-dev (random weights; 17 B parameters with T5-XXL: 68 GB in fp32, 34 GB in "
                    "bf16) when not on a GPU")
    ap.add_argument("--flux-size", default="1024", help="FLUX resolutions, comma-separated (default 1024)")
    ap.add_argument("--dtypes", default="auto", help="comma-separated: auto, fp32, fp16, bf16 (default auto)")
    ap.add_argument("--memory-options", choices=("off", "on", "both"), default="off",
                    help="time with gradient checkpointing, attention slicing and VAE tiling (on), without (off), "
                    "or both")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    ap.add_argument("--mimic", default="", metavar="METHODS",
                    help="also time training steps of these mimicry methods (lora,dreambooth; batch 1), with the "
                    "same options")
    ap.add_argument("--skip-protect", action="store_true", help="time only the --mimic methods")
    ap.add_argument("--json", help="write the rows and the machine description to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)      # internal: one measurement, JSON on stdout
    ap.add_argument("--method", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    sizes = {"sd15-random": [int(z) for z in args.sd15_size.split(",")],
             "sdxl-random": [int(z) for z in args.sdxl_size.split(",")],
             "sd3-random": [int(z) for z in args.sd3_size.split(",")],
             "flux-random": [int(z) for z in args.flux_size.split(",")]}
    dtypes = tuple(args.dtypes.split(","))
    memory = {"off": (False,), "on": (True,), "both": (False, True)}[args.memory_options]
    if args.child:
        # a child is told its resolution by --sd15-size, whichever random architecture it times
        bundle = load_for_timing(args.child, str(device), sizes["sd15-random"][0], dtypes[0], memory[0])
        timed = (time_mimic(bundle, args.method, args.steps) if args.method in MIMIC_METHODS
                 else time_steps(bundle, args.method, batches[0], args.steps))
        print(json.dumps({**timed, "memory_options": memory[0]}))
        return 0
    gpu = device.type == "cuda"
    models = list(dict.fromkeys([args.model] + (["sd15-random"] if args.sd15 or gpu else [])
                                + (["sdxl-random"] if args.sdxl or gpu else [])
                                + (["sd3-random"] if args.sd3 or gpu else [])
                                + (["flux-random"] if args.flux or gpu else [])))
    rows = [] if args.skip_protect else run(models, str(device), sizes, batches, args.steps, dtypes, memory)
    if args.mimic:
        for model, size, dtype, saving, method in ((m, z, d, o, k) for m in models
                                                   for z in (sizes[m] if m in RANDOM else [0])
                                                   for d in dtypes for o in memory for k in args.mimic.split(",")):
            row = measure_in_child(model, str(device), size, method, 1, args.steps, dtype, saving)
            rows.append(row)
            print(f"{row['model']:<12} {row['device']:<6} {row['dtype']:<8} {row['resolution']:>4}px  "
                  f"mimic {method}{' (memory options)' if saving else ''}: {row['seconds_per_step']:.3f} s/step "
                  f"{row['peak_memory_mib']:9.1f} MiB")
    if args.json:
        info = {"command": "python -m artshield.bench.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
                "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
                "cpu": platform.processor() or platform.machine(),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "rows": rows}
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
