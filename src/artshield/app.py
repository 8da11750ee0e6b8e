"""artshield ui: a local web app (Gradio) for people who do not use a command line.

    artshield ui                      # http://127.0.0.1:7860, this machine only
    artshield ui --host 0.0.0.0 --port 8080

Tabs:
- Protect: drop images (or a zip of them), pick a strength (low / default / high: documented
  budgets) or open the advanced panel (method, budget, steps, EOT, model, device, precision); an
  estimate of the time before starting, a progress bar while running, then each image before,
  after and its amplified change at full size, the visible change (PSNR, LPIPS), and downloads (one
  file, or all as a zip). It runs the same batch code as `artshield protect`: originals are read,
  never written; outputs are written atomically.
- Check: "does it hold on my art?": a small bench on the user's own images as the artist.
- Model tools: erase a concept and audit a model, with their reports.

One job runs at a time (Gradio's queue, one worker); uploads are limited in count, pixels and bytes,
and a bad upload gives a message in the page. The same endpoints answer scripts through
gradio_client, e.g. `Client(url).predict([handle_file("a.png")], "default", api_name="/protect")`
returns the zip of the protected files.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Strength presets: the L-infinity budget in /255, the method's own default step count. "default"
# is the budget of AdvDM / Mist / Anti-DreamBooth's papers (16/255 at 512 px: about 29 dB PSNR on a
# photograph); "low" halves it (less visible, weaker); "high" is 1.5x (visible on flat areas).
STRENGTHS = {"low": 8.0, "default": 16.0, "high": 24.0}
METHODS = ("advdm", "mist", "sds", "sds-minus", "photoguard", "glaze", "aspl", "ace", "metacloak")
BATCH = 4                              # images protected together, as `artshield protect --batch`


@dataclass(frozen=True)
class Limits:
    files: int = 32                    # images per job
    pixels: int = 16_000_000           # per image
    bytes: int = 40 * 1024 * 1024      # per uploaded file
    zip_members: int = 64


class UploadError(ValueError):
    """An upload the app refuses; the message names the file and the problem."""


def gather_uploads(paths: list[str], folder: Path, limits: Limits) -> tuple[list[Path], list[str]]:
    """Copy the uploaded images (and the images inside uploaded zips) into `folder` under their own
    names; return (the copies, one message per refused file). Nothing outside `folder` is written."""
    from .io import load_image

    folder.mkdir(parents=True, exist_ok=True)
    accepted: list[Path] = []
    problems: list[str] = []
    used: set[str] = set()

    def take(name: str, data: bytes) -> None:
        base = Path(name).name or "image.png"
        if len(accepted) >= limits.files:
            problems.append(f"{base}: skipped, at most {limits.files} images per job")
            return
        if len(data) > limits.bytes:
            problems.append(f"{base}: {len(data) / 2 ** 20:.1f} MB, more than the {limits.bytes / 2 ** 20:.0f} MB allowed")
            return
        try:                           # the header alone: a huge picture is refused before it is decoded
            from PIL import Image

            with Image.open(io.BytesIO(data)) as header:
                w, h = header.size
            if w * h > limits.pixels:
                problems.append(f"{base}: {w}x{h} pixels, more than the {limits.pixels / 1e6:.0f} megapixels allowed")
                return
        except Exception:  # noqa: BLE001 - not an image PIL knows: load_image below says why, in its words
            pass
        stem, suffix, k = Path(base).stem, Path(base).suffix, 1
        while base.lower() in used:
            k += 1
            base = f"{stem}-{k}{suffix}"
        target = folder / base
        target.write_bytes(data)
        try:
            loaded = load_image(target)
        except Exception as e:  # noqa: BLE001 - any reason a file is not a usable image is reported
            target.unlink(missing_ok=True)
            problems.append(str(e).splitlines()[0].replace(str(target), base))
            return
        del loaded
        used.add(base.lower())
        accepted.append(target)

    for p in paths or []:
        path = Path(p)
        name = path.name
        if path.stat().st_size > limits.bytes:
            problems.append(f"{name}: {path.stat().st_size / 2 ** 20:.1f} MB, more than the "
                            f"{limits.bytes / 2 ** 20:.0f} MB allowed")
            continue
        data = path.read_bytes()
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    members = [m for m in z.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
                    if len(members) > limits.zip_members:
                        problems.append(f"{name}: {len(members)} files, more than the {limits.zip_members} allowed")
                        continue
                    for m in members:
                        if m.file_size > limits.bytes:
                            problems.append(f"{name}/{m.filename}: more than the {limits.bytes / 2 ** 20:.0f} MB allowed")
                            continue
                        take(Path(m.filename).name, z.read(m))
            except zipfile.BadZipFile:
                problems.append(f"{name}: not a readable zip file")
            continue
        take(name, data)
    return accepted, problems


class Models:
    """Loaded models by (model, device, dtype), so a model loads once per app, and the measured
    seconds per protection step (for estimates)."""

    def __init__(self):
        self._bundles: dict[tuple, object] = {}
        self._per_step: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def get(self, model: str, device: str, dtype: str):
        from .models import load_model

        key = (model, device, dtype)
        with self._lock:
            if key not in self._bundles:
                self._bundles[key] = load_model(model, device, dtype=dtype)
            return self._bundles[key]

    def seconds_per_step(self, model: str, device: str, dtype: str, method: str) -> float:
        """Measured once: two steps of `method` on one 64 x 64 image (after one warm-up step)."""
        import torch

        from .protect import protect

        key = (model, device, dtype, method)
        if key not in self._per_step:
            bundle = self.get(model, device, dtype)
            image = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))]
            protect(bundle, image, method=method, steps=1, score=False)
            t0 = time.time()
            protect(bundle, image, method=method, steps=2, score=False)
            self._per_step[key] = (time.time() - t0) / 2
        return self._per_step[key]


class Jobs:
    """Job folders under one root (a temporary folder unless given), one per run."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="artshield-ui-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def new(self, kind: str) -> Path:
        """A new folder, never one that exists (several apps may share the root)."""
        return Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-", dir=self.root))


def protect_job(models: Models, jobs: Jobs, limits: Limits, files: list[str], strength: str = "default",
                method: str = "advdm", budget: float | None = None, steps: int | None = None,
                eot: list[str] | None = None, model: str = "mini", device: str = "auto", dtype: str = "auto",
                seed: int = 0, progress=None) -> dict:
    """Protect the uploads: the same batch code as `artshield protect`. Returns the job's folder,
    the protected files, their zip, the gallery items, the per-image figures and the messages."""
    from .batch import protect_batch, protect_steps, reporter
    from .io import plan_batch
    from .protect.report import write_page

    if strength not in STRENGTHS:
        raise UploadError(f"strength {strength!r}: choose one of {', '.join(STRENGTHS)}")
    if method not in METHODS:
        raise UploadError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    job = jobs.new("protect")
    accepted, problems = gather_uploads(files, job / "uploads", limits)
    if not accepted:
        raise UploadError("no image to protect: " + ("; ".join(problems) if problems else "upload PNG, JPEG or "
                                                     "WebP files, or a zip of them"))
    options = {"budget": float(budget) if budget else STRENGTHS[strength], "eot": tuple(eot or ())}
    if steps:
        options["steps"] = int(steps)
    bundle = models.get(model, device, dtype)
    batch = plan_batch([str(p) for p in accepted], str(job / "protected"), "protected copy",
                       settings={"method": method, "seed": seed, **options})
    head = {"command": "ui protect", "method": method, "model": bundle.describe(), "seed": seed, "strength": strength}
    report, checkpoint = reporter(batch, head, time.time())
    total = protect_steps(bundle, len(batch.todo), method, BATCH, **options)
    done_steps = [0]

    def step(n=1):
        done_steps[0] += n
        if progress is not None:
            progress(min(done_steps[0], total), total)

    done = protect_batch(bundle, batch, method, seed, BATCH, True, progress=step, checkpoint=checkpoint,
                         **options)
    results = report(done)
    results["page"] = "protect-report.html"
    _, differences = write_page(batch.out, results)
    from .io import write_json

    write_json(results, batch.out / "results.json")
    outputs = [batch.out / r["output"] for r in done.records if "output" in r]
    archive = zip_files(outputs, job / "protected.zip") if outputs else None
    gallery, rows = [], []
    by_output = {r["output"]: r for r in done.records if "output" in r}
    for out in outputs:
        rec = by_output[out.name]
        gallery += [(rec["file"], f"{out.name}: original"), (str(out), f"{out.name}: protected")]
        if out.name in differences:
            gallery.append((str(differences[out.name]), f"{out.name}: |change| x{255 / rec['budget']:.0f}"))
        rows.append([out.name, f"{rec['size'][0]}x{rec['size'][1]}", round(rec["psnr_db"], 1), round(rec["lpips"], 3),
                     int(round(rec["linf_255"]))])
    problems += [f["error"].replace(str(job / "uploads") + os.sep, "") for f in done.failures]
    return {"job": job, "outputs": outputs, "zip": archive, "gallery": gallery, "rows": rows, "problems": problems,
            "results": results, "budget": options["budget"]}


def check_job(models: Models, jobs: Jobs, limits: Limits, files: list[str], strength: str = "default",
              method: str = "advdm", level: str = "quick", model: str = "mini", device: str = "auto",
              dtype: str = "auto", log=None, judge: str = "icon", judge_path: str | None = None) -> dict:
    """"Does it hold on my art?": the bench on the uploads as the artist (bench/check.py), read by the
    style judge `judge` (metrics/judges.py; `judge_path`: its local weights); writes report.html in the
    job folder. Returns the job, the report, its zip and a plain summary."""
    from .bench import check, report_html
    from .errors import ArtshieldError
    from .io import write_json, write_text
    from .metrics.judges import load_judge
    from .purify.noisy_upscale import default_upscaler

    if strength not in STRENGTHS or method not in METHODS:
        raise UploadError(f"strength {strength!r} / method {method!r}: choose from {', '.join(STRENGTHS)} and "
                          f"{', '.join(METHODS)}")
    try:
        style_judge = load_judge(judge, (judge_path or "").strip() or None)
    except ArtshieldError as e:
        raise UploadError(e.render()) from None
    job = jobs.new("check")
    accepted, problems = gather_uploads(files, job / "uploads", limits)
    if len(accepted) < 2:
        raise UploadError("a check needs at least 2 images of your art" + (": " + "; ".join(problems) if problems else ""))
    from .io import load_image

    bundle = models.get(model, device, dtype)
    purifiers = ("jpeg", "gaussian-noise") + (("noisy-upscale",) if default_upscaler(bundle) else ())
    results = check.check(bundle, [load_image(p).pixels for p in accepted], job / "report", method=method,
                          budget=STRENGTHS[strength], purifiers=purifiers, level=level, log=log or (lambda m: None),
                          judge=style_judge)
    write_json(results, job / "report" / "results.json")
    report = write_text(report_html.render(results, results["summary"], job / "report"), job / "report" / "report.html")
    archive = zip_tree(job / "report", job / "check-report.zip")
    lines = []
    if "verdict" in results:            # the judge could not prove it tells the style apart: nothing was run
        gate = results["judge_check"]
        lines.append(f"**{method} {STRENGTHS[strength]:g}/255: {results['verdict']}.** The {gate['judge']} judge sees "
                     f"{gate['sees']}. Upload at least 10 images of your art"
                     + (" (and, for real artwork, choose the clip or csd judge with its local weights)."
                        if gate["judge"] == "icon" else "."))
    for row in results["summary"]:
        ci, rel = row["intervals"], row["relative"]
        lines.append(f"**{row['protection']} {row['budget']:g}/255: {row['verdict']}.** Mimicry success clean "
                     f"{_ci(ci['clean'])}, protected {_ci(ci['none'])}; relative mimicry (protected / clean) "
                     f"{_ci(rel['none'])}, worst case ({row['worst_purifier']}) {_ci(rel[row['worst_purifier']])}; "
                     f"\"holds\" needs every upper bound at or below {row['bar']:g}.")
    if any(r["verdict"].startswith("inconclusive") for r in results["summary"]):
        lines.append("*Inconclusive* means the intervals cannot decide either way: more seeds and generations "
                     "(the standard check) narrow them.")
    return {"job": job, "report": report, "zip": archive, "summary": "\n\n".join(lines), "problems": problems,
            "results": results}


def tool_job(jobs: Jobs, kind: str, argv: list[str]) -> dict:
    """Run `artshield erase` or `artshield audit` (the CLI itself, in a child process whose memory is
    returned when it ends) into a job folder."""
    import json
    import subprocess
    import sys

    job = jobs.new(kind)
    out = job / kind
    done = subprocess.run([sys.executable, "-m", "artshield.cli", kind, *argv, "-o", str(out), "-q"],
                          capture_output=True, text=True)
    if done.returncode not in (0, 1) or not (out / "results.json").is_file():
        message = done.stderr.strip().splitlines()
        raise UploadError(message[-1].removeprefix("artshield: error: ") if message else f"{kind} failed")
    results = json.loads((out / "results.json").read_text())
    return {"job": job, "results": results, "report": out / "report.html", "zip": zip_tree(out, job / f"{kind}.zip")}


def dataset_job(jobs: Jobs, limits: Limits, mine: list[str], heldout: list[str], adapter: str = "", caption: str = "",
                alpha: float = 0.01, model: str = "mini", device: str = "auto", dtype: str = "auto") -> dict:
    """Dataset inference on uploads: MINE (the images the model may have trained on) against HELD-OUT
    (images of the same kind never published), through `artshield audit --dataset --heldout`. Each
    set's refused files are reported; the CLI's own one-line refusals (too few images, a bad
    adapter folder) come back as UploadError."""
    from .audit.dataset import needed

    uploads = jobs.new("dataset-uploads")
    sets, problems = {}, []
    for name, files in (("mine", mine), ("heldout", heldout)):
        taken, refused = gather_uploads(files, uploads / name, limits)
        sets[name] = taken
        problems += [f"{'your images' if name == 'mine' else 'unpublished images'}: {p}" for p in refused]
    least = needed()
    short = [f"{'your images' if k == 'mine' else 'unpublished images'}: {len(v)}" for k, v in sets.items()
             if len(v) < least]
    if short:
        raise UploadError(f"the test needs at least {least} usable images in each set ({', '.join(short)}); "
                          "30 or more each make a real effect far easier to find")
    argv = ["--dataset", str(uploads / "mine"), "--heldout", str(uploads / "heldout"), "--alpha", f"{alpha:g}",
            "--model", model, "--device", device, "--dtype", dtype]
    argv += ["--adapter", adapter.strip()] if (adapter or "").strip() else []
    argv += ["--caption", caption.strip()] if (caption or "").strip() else []
    made = tool_job(jobs, "audit", argv)
    made["problems"] = problems
    return made


def zip_files(files: list[Path], target: Path, root: Path | None = None) -> Path:
    """The files in one zip (names relative to `root`, else their own), written atomically."""
    from .io import _atomic_write

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                name = p.relative_to(root).as_posix() if root else p.name
                # a name that is not UTF-8 (kept by Python as surrogates) cannot be a zip member's: U+FFFD stands in
                z.write(p, arcname=os.fsencode(name).decode("utf-8", "replace"))

    _atomic_write(target, write)
    return target


def zip_tree(folder: Path, target: Path) -> Path:
    """A folder's files (not the weights: they are large and stay in the job folder) in one zip."""
    return zip_files([p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".safetensors"], target,
                     folder)


def _ci(ci: dict) -> str:
    def f(v, inf):
        return inf if v is None else f"{v:.2f}"
    return f"{f(ci['mean'], 'inf')} [{f(ci['low'], '-inf')}, {f(ci['high'], 'inf')}]"


def estimate(models: Models, files: list[str] | None, strength: str, method: str, steps: int | None, model: str,
             device: str, dtype: str) -> str:
    """A sentence: how long protecting these uploads should take here, from a measured step time."""
    from .options import registry

    if not files:
        return "Drop images (PNG, JPEG, WebP) or a zip of them to begin."
    n = len(files)
    default_steps = registry("protect").config(method).steps
    n_steps = int(steps) if steps else default_steps
    try:
        per_step = models.seconds_per_step(model, device, dtype, method)
    except Exception as e:  # noqa: BLE001 - the estimate is advice; the run itself reports errors
        return f"No estimate: {str(e).splitlines()[0]}"
    from .batch import chunk_size

    rounds = -(-n // chunk_size(method, n, BATCH))          # images are protected BATCH at a time
    seconds = per_step * n_steps * rounds
    return (f"{n} file(s); {method}, {n_steps} steps at {STRENGTHS.get(strength, 16):g}/255: about "
            f"{_duration(seconds)} on this machine (measured {per_step:.2f} s per step on a small image; "
            "large images take longer).")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def build(models: Models | None = None, jobs: Jobs | None = None, limits: Limits | None = None,
          default_model: str = "mini", default_device: str = "auto"):
    """The Gradio Blocks of the app (not launched)."""
    import gradio as gr

    from . import names

    models, jobs, limits = models or Models(), jobs or Jobs(), limits or Limits()

    def run_protect(files, strength, method, budget, steps, eot, model, device, dtype,
                    progress=gr.Progress()):
        try:
            made = protect_job(models, jobs, limits, files, strength, method, budget or None, steps or None, eot,
                               model or default_model, device, dtype,
                               progress=lambda done, total: progress(done / max(1, total),
                                                                     desc=f"protecting: step {done} of {total}"))
        except (UploadError, ValueError, OSError) as e:
            return (f"**Could not protect:** {e}", [], None, [], None)
        lines = [f"Protected {len(made['outputs'])} image(s) with {method} at {made['budget']:g}/255. "
                 "Your originals were not modified."]
        if made["problems"]:
            lines.append("**Not protected:** " + "; ".join(made["problems"]))
        return ("\n\n".join(lines), made["gallery"], str(made["zip"]) if made["zip"] else None,
                made["rows"], [str(p) for p in made["outputs"]])

    def api_protect(files, strength):
        made = protect_job(models, jobs, limits, files, strength)
        if made["problems"]:
            gr.Warning("; ".join(made["problems"]))
        return str(made["zip"])

    def report_outputs(status_id: str):
        """A tool's outputs: its status line, the report's zip, and the report shown in the page."""
        return gr.Markdown(elem_id=status_id), gr.File(label="The report (zip)"), gr.HTML()

    with gr.Blocks(title="artshield") as app:
        gr.Markdown("# artshield\nProtect your artwork against style mimicry, and check whether the protection "
                    "holds.")
        with gr.Tab("Protect"):
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(label="Your images (PNG, JPEG, WebP) or a zip of them", file_count="multiple",
                                    elem_id="protect-files")
                    strength = gr.Radio(list(STRENGTHS), value="default", label="Strength",
                                        info="low 8/255, default 16/255, high 24/255 (L-infinity budget)",
                                        elem_id="protect-strength")
                    with gr.Accordion("Advanced", open=False):
                        method = gr.Dropdown(list(METHODS), value="advdm", label="Method")
                        budget = gr.Number(value=None, label="Budget (/255; empty: the strength's)", minimum=0,
                                           maximum=255)
                        steps = gr.Number(value=None, label="Steps (empty: the method's default)", minimum=1,
                                          precision=0)
                        eot = gr.CheckboxGroup(["resize", "jpeg", "blur"], label="Robustness: expectation over these "
                                                                        "transformations")
                        model = gr.Textbox(value=default_model, label="Model (mini, a diffusers folder, a "
                                                                      ".safetensors file or a hub id)")
                        device = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value=default_device, label="Device")
                        dtype = gr.Dropdown(["auto", "fp32", "fp16", "bf16"], value="auto", label="Precision")
                    eta = gr.Markdown("Drop images (PNG, JPEG, WebP) or a zip of them to begin.", elem_id="protect-eta")
                    go = gr.Button("Protect", variant="primary", elem_id="protect-go")
                with gr.Column(scale=2):
                    status = gr.Markdown(elem_id="protect-status")
                    gallery = gr.Gallery(label="Before, after, and the change (click to view at full size)",
                                         columns=3, object_fit="contain", height="auto", elem_id="protect-gallery")
                    table = gr.Dataframe(headers=["file", "size", "PSNR (dB)", "LPIPS", "max change (/255)"],
                                         label="Visible change", interactive=False)
                    archive = gr.File(label="Download all (zip)", elem_id="protect-zip")
                    singles = gr.File(label="Download one file", file_count="multiple", elem_id="protect-files-out")
            for trigger in (files.change, strength.change, method.change, steps.change):
                trigger(lambda f, s, m, n, mo, d, t: estimate(models, f, s, m, n, mo or default_model, d, t),
                        [files, strength, method, steps, model, device, dtype], eta, api_visibility="private")
            go.click(run_protect, [files, strength, method, budget, steps, eot, model, device, dtype],
                     [status, gallery, archive, table, singles], api_name="protect_ui", api_visibility="private")
            hidden = gr.Button(visible=False)
            hidden.click(api_protect, [files, strength], archive, api_name="protect")

        with gr.Tab("Check"):
            gr.Markdown("**Does the protection hold on my art?** First the style judge must show that it can tell "
                        "your style apart from others (at least 10 images); if it cannot, the check stops and says so. "
                        "Then a mimic fine-tunes the model (a LoRA) on two thirds of your images as they are clean, "
                        "protected, and protected then purified, generates distinct prompts, and the judge measures how "
                        "much of your style it learnt against the third it never saw, with intervals and a verdict. "
                        "A quick check (one training seed) takes minutes and always says *inconclusive*. The icon "
                        "judge sees 32x32 icon features, not brushwork: for real artwork choose clip or csd with "
                        "weights on this machine.")
            with gr.Row():
                with gr.Column(scale=1):
                    c_files = gr.File(label="At least 2 images of your art", file_count="multiple", elem_id="check-files")
                    c_method = gr.Dropdown(list(METHODS), value="advdm", label="Protection")
                    c_strength = gr.Radio(list(STRENGTHS), value="default", label="Strength")
                    c_level = gr.Radio(["quick", "standard"], value="quick", label="Thoroughness",
                                       info="quick: 1 seed, 16 prompts per cell; standard: 3 seeds, 32 prompts (hours)")
                    c_judge = gr.Dropdown(["icon", "clip", "csd"], value="icon", label="Style judge", elem_id="check-judge")
                    c_judge_path = gr.Textbox(label="Judge weights on this machine (clip: a CLIP folder; csd: its "
                                              "model.safetensors)", elem_id="check-judge-path")
                    c_go = gr.Button("Check", variant="primary", elem_id="check-go")
                with gr.Column(scale=2):
                    c_status = gr.Markdown(elem_id="check-status")
                    c_zip = gr.File(label="The report (zip)", elem_id="check-zip")
                    c_view = gr.HTML(elem_id="check-report")

            def run_check(files, strength, method, level, judge, judge_path, model, device, dtype,
                          progress=gr.Progress()):
                progress(0, desc="fine-tuning the mimic on each condition")
                try:
                    made = check_job(models, jobs, limits, files, strength, method, level, model or default_model,
                                     device, dtype, log=lambda m: progress(None, desc=m), judge=judge,
                                     judge_path=judge_path)
                except (UploadError, ValueError, OSError) as e:
                    return f"**Could not check:** {e}", None, ""
                note = ("\n\n**Not used:** " + "; ".join(made["problems"])) if made["problems"] else ""
                return made["summary"] + note, str(made["zip"]), _frame(made["report"])

            c_go.click(run_check, [c_files, c_strength, c_method, c_level, c_judge, c_judge_path, model, device, dtype],
                       [c_status, c_zip, c_view], api_name="check")

        with gr.Tab("Model tools"):
            gr.Markdown("For model providers and researchers: remove a concept or an artist's style from the model's "
                        "weights, or look for training images the model has memorised. Both write a report.")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Erase")
                    e_concept = gr.Textbox(label="Concept or style", value="faenza style", elem_id="erase-concept")
                    e_method = gr.Dropdown(list(names.ERASE), value="uce", label="Method")
                    e_eval = gr.Checkbox(value=True, label="Evaluate (before, after, after recovery attacks)")
                    e_attacks = gr.CheckboxGroup(list(names.ERASE_ATTACKS), value=["concept-inversion"],
                                                 label="Recovery attacks",
                                                 info="each adds minutes on mini; the worst case over them is reported")
                    e_judge = gr.Dropdown(["icon", "clip", "csd"], value="icon", label="Evaluation's judge",
                                          info="icon: mini's styles and concepts; clip, csd: styles only")
                    e_judge_path = gr.Textbox(label="Judge weights on this machine (clip, csd)")
                    e_go = gr.Button("Erase", elem_id="erase-go")
                with gr.Column():
                    gr.Markdown("### Audit")
                    a_prompts = gr.Textbox(label="Prompts, one per line (empty: mini's built-in audit set)", lines=4)
                    a_gens = gr.Number(value=16, precision=0, minimum=2, label="Generations per prompt")
                    a_go = gr.Button("Audit", elem_id="audit-go")
            t_status, t_zip, t_view = report_outputs("tools-status")

            def run_erase(concept, method_, evaluate, attacks, judge, judge_path, model, device, dtype):
                attacking = ["--attack", ",".join(attacks)] if attacks else ["--recovery-steps", "0"]
                argv = ["--concept", concept, "--method", method_, "--model", model or default_model, "--device", device,
                        "--dtype", dtype] + (attacking if evaluate else ["--no-eval"]) + ["--judge", judge] \
                    + (["--judge-path", judge_path.strip()] if judge != "icon" and (judge_path or "").strip() else [])
                try:
                    made = tool_job(jobs, "erase", argv)
                except UploadError as e:
                    return f"**Could not erase:** {e}", None, ""
                r = made["results"]
                line = f"Erased {r['concept']!r} with {r['method']} in {r['erase_seconds']:.0f} s."
                if "after" in r:
                    line += (f" The judge finds the target in {r['before']['target_accuracy']:.2f} of the generations "
                             f"before, {r['after']['target_accuracy']:.2f} after")
                    line += (f", {r['recovery']['target_accuracy']:.2f} after the worst of the recovery attacks." if "recovery" in r
                             else ".")
                return line, str(made["zip"]), _frame(made["report"])

            def run_audit(prompts, generations, model, device, dtype):
                job_prompts = None
                if prompts and prompts.strip():
                    job_prompts = jobs.new("prompts") / "prompts.txt"
                    job_prompts.write_text(prompts)
                argv = ["--generations", str(int(generations or 16)), "--min-clique", str(max(2, int(generations or 16) // 3)),
                        "--model", model or default_model, "--device", device, "--dtype", dtype]
                argv += ["--prompts", str(job_prompts)] if job_prompts else ["--threshold", "auto"]
                try:
                    made = tool_job(jobs, "audit", argv)
                except UploadError as e:
                    return f"**Could not audit:** {e}", None, ""
                r = made["results"]
                flagged = sum(bool(p.get("flagged")) for p in r["per_prompt"])
                auc = r.get("detection", {}).get("auc")
                return (f"Audited {r['prompts']} prompt(s): {flagged} flagged as memorised by the extraction attack"
                        + (f"; detection AUC {auc:.3f}." if auc is not None else ".")), str(made["zip"]), \
                    _frame(made["report"])

            e_go.click(run_erase, [e_concept, e_method, e_eval, e_attacks, e_judge, e_judge_path, model, device, dtype], [t_status, t_zip, t_view],
                       api_name="erase")
            a_go.click(run_audit, [a_prompts, a_gens, model, device, dtype], [t_status, t_zip, t_view], api_name="audit")

        with gr.Tab("Was my art used?"):
            gr.Markdown("Did this model, or a LoRA or other adaptation of it, train on your images? Upload images you "
                        "published (the ones you suspect were used) and images of the same kind you never published. "
                        "The test compares how well the model reconstructs each set; it needs at least 10 of each, "
                        "30 or more to find a real effect. Nothing is uploaded anywhere else.")
            with gr.Row():
                d_mine = gr.File(label="Your published images (or a zip)", file_count="multiple", elem_id="dataset-mine")
                d_held = gr.File(label="Your unpublished images of the same kind (or a zip)", file_count="multiple",
                                 elem_id="dataset-heldout")
            with gr.Row():
                d_adapter = gr.Textbox(label="Adaptation to test: a folder on this machine written by artshield mimic "
                                             "(empty: the model itself)", elem_id="dataset-adapter")
                d_caption = gr.Textbox(label="Caption for images without one (empty: the model's generic prompt)")
                d_alpha = gr.Number(value=0.01, minimum=0.0001, maximum=0.5, label="Evidence bar (alpha)")
            d_go = gr.Button("Test", elem_id="dataset-go")
            d_status, d_zip, d_view = report_outputs("dataset-status")

            def run_dataset(mine, held, adapter, caption, alpha, model, device, dtype):
                try:
                    made = dataset_job(jobs, limits, mine, held, adapter, caption, float(alpha or 0.01),
                                       model or default_model, device, dtype)
                except (UploadError, ValueError, OSError) as e:
                    return f"**Could not test:** {e}", None, ""
                r = made["results"]
                lines = [f"**{'Evidence of training' if r['trained_on'] else 'No evidence'}** "
                         f"({r['suspect']} of your images against {r['heldout']} unpublished): {r['verdict']}."]
                if made["problems"]:
                    lines.append("**Not used:** " + "; ".join(made["problems"]))
                return "\n\n".join(lines), str(made["zip"]), _frame(made["report"])

            d_go.click(run_dataset, [d_mine, d_held, d_adapter, d_caption, d_alpha, model, device, dtype],
                       [d_status, d_zip, d_view], api_name="dataset")
    app.queue(default_concurrency_limit=1)
    return app


def _frame(report: Path) -> str:
    """The report inside the page (served from the job folder, which the app is allowed to serve)."""
    from urllib.parse import quote

    return (f'<iframe src="/gradio_api/file={quote(os.fsencode(Path(report).resolve()))}" title="report" '
            'style="width:100%;height:900px;border:1px solid #ccc;border-radius:6px"></iframe>')


def serve(host: str = "127.0.0.1", port: int = 7860, share: bool = False, model: str = "mini", device: str = "auto",
          jobs: str | None = None, block: bool = True):
    """Launch the app; returns (app, url) when `block` is False."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    jobs_ = Jobs(jobs)
    app = build(jobs=jobs_, default_model=model, default_device=device)
    limits = Limits()
    _, url, _ = app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
                           max_file_size=limits.bytes, allowed_paths=[str(jobs_.root)])
    if not block:
        return app, url
    print(f"artshield ui: {url} (jobs in {jobs_.root}; Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.close()
    return app, url
