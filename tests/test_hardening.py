"""Hardening: every bad option, file and fault gets one clear line and a usage exit code, nothing is
loaded or created before the options are checked, and nothing wrong (NaN, black, partial) is written.

Each case runs the real command line on the tiny random-weight model and asserts: the exit code of
the contract, exactly one line on stderr that names the culprit, the originals byte-identical, and
no output folder left behind by a refused run."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artshield.cli import main


@pytest.fixture
def art(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    for k in range(2):
        Image.fromarray((np.arange(20 * 20 * 3).reshape(20, 20, 3) * (k + 2) % 256).astype(np.uint8)).save(
            folder / f"a{k}.png")
    return folder


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


# (argv, the words the one stderr line must hold); {art} {tiny} {tmp} {out} are filled in
USAGE = [
    # protect: numbers that are not numbers, out of range, or of the wrong kind
    (["protect", "{art}", "--step", "nan"], "--method advdm: step must be a finite number"),
    (["protect", "{art}", "--step", "-1"], "step must be in (0, 255]"),
    (["protect", "{art}", "--steps", "0"], "steps must be in [1, "),
    (["protect", "{art}", "--budget", "0"], "--method advdm: budget must be in (0, 255] (0-255 pixel units)"),
    (["protect", "{art}", "--budget", "inf"], "budget must be a finite number, not inf"),
    (["protect", "{art}", "--budget", "nan"], "budget must be a finite number, not nan"),
    (["protect", "{art}", "--eot", "nope"], "unknown EOT transform"),
    (["protect", "{art}", "--batch", "0"], "--batch 0: must be in [1, "),
    (["protect", "{art}", "--method", "glaze", "--target-style", "x", "--steps", "-5"], "steps must be in [1, "),
    # purify: every option through --option, parsed as JSON (NaN and Infinity included)
    (["purify", "{art}", "--method", "gaussian-noise", "--option", "sigma=NaN"], "sigma must be a finite number"),
    (["purify", "{art}", "--method", "jpeg", "--option", "quality=Infinity"], "quality must be a finite number"),
    (["purify", "{art}", "--method", "jpeg", "--option", "quality=101"], "quality must be in [1, 100]"),
    (["purify", "{art}", "--method", "jpeg", "--option", "quality=x"], "quality must be a number"),
    (["purify", "{art}", "--method", "jpeg", "--option", "quality=7.5"], "quality must be a whole number"),
    (["purify", "{art}", "--method", "gaussian-blur", "--option", "kernel=-3"], "kernel must be in [1, 255]"),
    (["purify", "{art}", "--method", "median", "--option", "kernel=100001"], "kernel must be in [1, 255]"),
    (["purify", "{art}", "--method", "bilateral", "--option", "passes=true"], "passes must be a number"),
    (["purify", "{art}", "--method", "jpeg", "--option", "nope=1"], "unknown option(s) for this method: nope"),
    (["purify", "{art}", "--method", "jpeg", "--option", "quality"], "--option quality: expected key=value"),
    (["purify", "{art}", "--method", "diffpure", "--option", "t_star=0"], "t_star must be in (0, 1]"),
    # mimic
    (["mimic", "{art}", "--lr", "nan"], "lr must be a finite number"),
    (["mimic", "{art}", "--steps", "0"], "steps must be in [1, "),
    (["mimic", "{art}", "--batch-size", "0"], "batch_size must be in [1, "),
    (["mimic", "{art}", "--method", "nope"], "--method nope: unknown; choose one of"),
    # erase
    (["erase", "--concept", "x", "--eta", "nan"], "eta must be a finite number"),
    (["erase", "--concept", "x", "--iterations", "0"], "iterations must be in [1, "),
    (["erase", "--concept", "x", "--lr", "-1"], "lr must be in (0, inf)"),
    (["erase", "--concept", "x", "--method", "uce", "--template", "{} and {}"], "contain {} once"),
    (["erase", "--concept", "x", "--method", "uce", "--template", "a {x} {}"], "no other braces"),
    (["erase", "--concept", "x", "--eval-prompts", "0"], "--eval-prompts 0: must be in [1, "),
    (["erase", "--concept", "x", "--recovery-steps", "-1"], "--recovery-steps -1: must be 0"),
    # generate
    (["generate", "--prompt", "x", "--steps", "-1"], "--steps -1: sampling steps must be in [1, 1000]"),
    (["generate", "--prompt", "x", "--guidance", "nan"], "--guidance nan: must be a finite number"),
    (["generate", "--prompt", "x", "--seed", str(2 ** 64)], f"--seed {2 ** 64}: must be in [0, 2**63 - 1]"),
    (["generate", "--prompt", "x", "--seed", "-1"], "--seed -1: must be in [0, 2**63 - 1]"),
    (["generate", "--prompt", "x", "-n", "0"], "-n 0: must be in [1, "),
    # audit
    (["audit", "--generations", "0"], "generations must be in [2, "),
    (["audit", "--generations", "8"], "min_clique (10) cannot exceed generations (8)"),
    (["audit", "--threshold", "nan"], "threshold must be a finite number"),
    (["audit", "--threshold", "auto?"], "could not convert string to float"),
    (["audit", "--detect-generations", "0"], "--detect-generations 0: must be in [1, "),
    (["audit", "--method", "extract,nope"], "choose from extract, detect"),
    # the demo, the bench
    (["demo", "--budget", "0"], "budget must be in (0, 255]"),
    (["demo", "--method", "advdm", "--steps", "0"], "steps must be in [1, "),
    (["bench", "--per-theme", "0"], "--per-theme 0: must be in [1, "),
    # models and devices, before anything is loaded
    (["generate", "--prompt", "x", "--model", "./no/such/model"], "--model ./no/such/model: no such file or folder"),
    (["generate", "--prompt", "x", "--model", "model.safetensors"], "no such file or folder"),
    (["protect", "{art}", "--model", "./no/such/model"], "--model ./no/such/model: no such file or folder"),
    (["purify", "{art}", "--method", "diffpure", "--model", "~/no/such/model"], "no such file or folder"),
    (["generate", "--prompt", "x", "--device", "foo"], "--device foo: not a device name"),
    (["generate", "--prompt", "x", "--device", "cuda:7"], "--device cuda:7:"),
    (["generate", "--prompt", "x", "--device", "mps"], "--device mps: no MPS"),
]


@pytest.mark.parametrize("argv, words", USAGE, ids=[" ".join(a[:1] + a[2:])[:60] for a, _ in USAGE])
def test_a_bad_option_is_one_line_exit_2_and_nothing_written(tmp_path, art, tiny_model_dir, capsys, argv, words):
    before = digests(art)
    out = tmp_path / "out"
    filled = [a.replace("{art}", str(art)).replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in filled and filled[0] not in ("bench", "demo", "audit", "erase"):
        filled += ["--model", str(tiny_model_dir)]
    code = main(filled + ["-o", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not out.exists()                               # refused before any folder was made
    assert digests(art) == before


def test_an_output_folder_that_cannot_be_made_is_refused_up_front(tmp_path, art, tiny_model_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    for out in (blocker, blocker / "sub"):
        code = main(["protect", str(art), "-o", str(out), "--model", str(tiny_model_dir), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"artshield: error: -o {out}")
    assert blocker.read_text() == "keep"


def test_a_prompts_file_that_is_a_fifo_or_not_utf8_is_refused(tmp_path, tiny_model_dir, capsys):
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)                            # reading it would block forever
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 icon\n".encode("latin-1"))
    for path, words in ((fifo, "not a regular file"), (latin, "UnicodeDecodeError")):
        code = main(["audit", "--prompts", str(path), "--generations", "4", "--min-clique", "2",
                     "--model", str(tiny_model_dir), "-o", str(tmp_path / "a"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"--prompts {path}" in err[0] and words in err[0]


def test_files_pillow_would_hand_to_an_interpreter_or_that_block_are_refused(tmp_path, tiny_model_dir, capsys):
    """A PostScript file named .png reaches no decoder (Pillow would run Ghostscript on it), a FIFO
    named as an input is never opened; the good image is done all the same."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(src / "good.png")
    (src / "evil.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n")
    os.mkfifo(src / "pipe.png")
    out = tmp_path / "out"
    code = main(["protect", str(src / "good.png"), str(src / "evil.png"), str(src / "pipe.png"), "-o", str(out),
                 "--model", str(tiny_model_dir), "--steps", "1", "-q"])
    err = capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    failed = {os.path.basename(f["file"]): f["error"] for f in res["failed"]}
    assert code == 1 and [os.path.basename(r["file"]) for r in res["images"]] == ["good.png"]
    assert "not a readable image" in failed["evil.png"] and "not a regular file" in failed["pipe.png"]
    assert all(e in err for e in failed.values())


def _write_change(folder, kind, tensors, info):
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(tensors, str(folder / f"{kind}.safetensors"))
    (folder / f"{kind}.json").write_text(json.dumps(info))


@pytest.mark.parametrize("case", ["nan-adapter", "garbled-adapter", "wrong-method-adapter", "nan-edit",
                                  "garbled-edit", "edit-without-base"])
def test_a_bad_adapter_or_edit_is_refused_with_one_line(tmp_path, tiny_model_dir, tiny_bundle, capsys, case):
    from artshield.mimic import mimic

    folder = tmp_path / case
    if case.endswith("adapter"):
        adapter = mimic(tiny_bundle, [torch.rand(3, 16, 16)], ["x, sks style"], "lora", steps=1)
        tensors = dict(adapter.tensors)
        info = dict(adapter.info)
        if case == "nan-adapter":
            tensors[next(iter(tensors))] = torch.full_like(next(iter(tensors.values())), float("nan"))
        if case == "wrong-method-adapter":
            info["method"] = "hypernetwork"                 # the json names another method than its tensors
        _write_change(folder, "adapter", tensors, info)
        if case == "garbled-adapter":
            (folder / "adapter.safetensors").write_bytes(b"not safetensors")
        argv = ["--model", str(tiny_model_dir), "--adapter", str(folder)]
        flag = f"--adapter {folder}"
    else:
        name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
        weight = dict(tiny_bundle.unet.named_parameters())[name].detach().clone()
        if case == "nan-edit":
            weight[0, 0] = float("inf")
        info = {"method": "uce", "base_model": str(tiny_model_dir)} if case != "edit-without-base" else {"method": "uce"}
        _write_change(folder, "edit", {name: weight}, info)
        if case == "garbled-edit":
            (folder / "edit.json").write_text("{not json")
        argv = ["--model", str(folder)]
        flag = f"--model {folder}"
    out = tmp_path / "gen"
    code = main(["generate", "--prompt", "x", "-n", "1", "--steps", "2", "-o", str(out), "-q", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0], err
    assert not out.exists()


def test_a_diverged_run_writes_no_weights(tmp_path, tiny_bundle):
    from artshield.errors import ArtshieldError
    from artshield.models.weights import Edit

    edit = Edit("uce", {"w": torch.tensor([1.0, float("nan")])}, {"method": "uce", "base_model": "mini"})
    with pytest.raises(ArtshieldError, match="NaN or infinite"):
        edit.save(tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_no_nan_image_is_ever_written(tmp_path):
    from artshield.io import load_image, save_perturbed, write_image

    Image.fromarray(np.full((12, 12, 3), 100, np.uint8)).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    bad = torch.zeros(3, 12, 12)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        save_perturbed(loaded, bad, tmp_path / "b.png")
    with pytest.raises(ValueError, match="NaN"):
        write_image(bad, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# --- a seeded property test: random values for every option of every method -----------------------
BAD = [float("nan"), float("inf"), float("-inf"), -1, -1e30, 0, 1e30, "x", True, [1], {"a": 1}]


REQUIRED = {"noisy-upscale": {"upscaler": "an-upscaler-folder"}}     # options a config cannot do without


def test_every_numeric_option_of_every_method_refuses_or_accepts_a_sane_value():
    """Every config field typed bool, int or float gets values of every bad kind: each is either
    refused with a ValueError naming the field, or stored as a finite number of the field's type."""
    import math
    import random
    from dataclasses import fields

    from artshield.options import registry

    rng = random.Random(20261129)
    tried = 0
    for family in ("protect", "purify", "mimic", "erase", "audit"):
        for name, cls in registry(family).items():
            for f in fields(cls.Config):
                kinds = {k.strip() for k in str(f.type).split("|")} - {"None"}
                if not kinds or not kinds <= {"int", "float", "bool"}:
                    continue
                for value in BAD + [rng.uniform(-1e6, 1e6), rng.randint(-10**9, 10**9)]:
                    tried += 1
                    try:
                        config = registry(family).config(name, **{**REQUIRED.get(name, {}), f.name: value})
                    except ValueError as e:
                        assert f.name in str(e), (family, name, f.name, value, str(e))
                        continue
                    stored = getattr(config, f.name)
                    if "bool" in kinds:
                        assert isinstance(stored, bool), (family, name, f.name, value)
                    else:
                        assert isinstance(stored, (int, float)) and not isinstance(stored, bool)
                        assert math.isfinite(stored), (family, name, f.name, value)
                        if kinds == {"int"}:
                            assert isinstance(stored, int), (family, name, f.name, value)
    assert tried > 500


# --- resume: an output counts as done only if this run would have made it --------------------------
def _protect(art, out, tiny, *extra):
    return main(["protect", str(art), "-o", str(out), "--model", str(tiny), "--steps", "1", "-q", *extra])


def _records(out):
    res = json.loads((out / "results.json").read_text())
    return {r["output"]: r for r in res["images"]}, res["failed"]


def test_a_file_artshield_did_not_write_is_never_taken_as_done_or_replaced(tmp_path, art, tiny_model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a0.png").write_bytes((art / "a0.png").read_bytes())       # an unprotected copy already there
    assert _protect(art, out, tiny_model_dir) == 1
    done, failed = _records(out)
    assert "a1.png" in done and "a0.png" not in done
    assert "no run of artshield wrote it" in failed[0]["error"] and "--overwrite" in failed[0]["error"]
    assert (out / "a0.png").read_bytes() == (art / "a0.png").read_bytes()
    assert _protect(art, out, tiny_model_dir, "--overwrite") == 0
    assert (out / "a0.png").read_bytes() != (art / "a0.png").read_bytes()


def test_a_changed_artwork_or_other_settings_are_redone_the_same_are_kept(tmp_path, art, tiny_model_dir):
    out = tmp_path / "out"
    assert _protect(art, out, tiny_model_dir) == 0
    first, _ = _records(out)
    assert _protect(art, out, tiny_model_dir) == 0
    again, _ = _records(out)
    assert all("skipped" in r for r in again.values())                 # same inputs, same settings
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(art / "a0.png")   # the artist redrew a0
    assert _protect(art, out, tiny_model_dir) == 0
    redone, _ = _records(out)
    assert "skipped" not in redone["a0.png"] and "skipped" in redone["a1.png"]
    assert redone["a0.png"]["input_sha256"] == hashlib.sha256((art / "a0.png").read_bytes()).hexdigest()
    assert _protect(art, out, tiny_model_dir, "--budget", "4") == 0      # other settings: both redone
    other, _ = _records(out)
    assert not any("skipped" in r for r in other.values()) and all(r["budget"] == 4 for r in other.values())


def test_an_input_linked_from_the_output_folder_is_never_replaced(tmp_path, art, tiny_model_dir):
    out = tmp_path / "out"
    out.mkdir()
    original = out / "mine.png"                          # the artist keeps the original in the folder
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(original)
    before = original.read_bytes()
    link = tmp_path / "mine.png"
    link.symlink_to(original)
    code = main(["protect", str(link), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q",
                 "--overwrite"])
    assert code == 1 and original.read_bytes() == before
    assert "is this very file" in _records(out)[1][0]["error"]


def test_partial_files_of_a_killed_run_are_cleaned_and_records_are_saved_as_it_goes(tmp_path, art, tiny_model_dir,
                                                                                    monkeypatch, capsys):
    import sys

    out = tmp_path / "out"
    out.mkdir()
    (out / ".a0.png.x1y2.part").write_bytes(b"half an image")          # left by kill -9 mid-write
    package = sys.modules["artshield.protect"]
    real, calls = package.protect, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(package, "protect", interrupted)
    assert _protect(art, out, tiny_model_dir, "--batch", "1") == 130
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))
    done, _ = _records(out)                          # the first image's record was saved before the stop
    assert list(done) == ["a0.png"] and "linf_255" in done["a0.png"]
    monkeypatch.setattr(package, "protect", real)
    assert _protect(art, out, tiny_model_dir, "--batch", "1") == 0      # the rerun finishes the job
    done, _ = _records(out)
    assert "skipped" in done["a0.png"] and "skipped" not in done["a1.png"]


def test_a_folder_s_unreadable_entries_are_reported_not_skipped(tmp_path, art, tiny_model_dir, capsys):
    (art / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (art / "broken.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(art / "pipe.jpg")
    (art / "a0.txt").write_text("a caption, not an image")
    out = tmp_path / "out"
    assert main(["protect", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 1
    res = json.loads((out / "results.json").read_text())
    failed = {os.path.basename(f["file"]): f["error"] for f in res["failed"]}
    assert sorted(r["output"] for r in res["images"]) == ["a0.png", "a1.png"]
    assert set(failed) == {"phone.heic", "broken.png", "pipe.jpg"}
    assert "not supported" in failed["phone.heic"] and "no such file" in failed["broken.png"]
    assert "not a regular file" in failed["pipe.jpg"]


def test_an_image_that_breaks_its_chunk_fails_alone(tmp_path, art, tiny_model_dir, monkeypatch):
    import sys

    Image.fromarray(np.full((20, 23, 3), 30, np.uint8)).save(art / "odd.png")
    package = sys.modules["artshield.protect"]
    real = package.protect

    def fragile(bundle, images, *a, **k):
        if any(x.shape[-1] == 23 for x in images):
            raise RuntimeError("a kernel failed on this image")
        return real(bundle, images, *a, **k)

    monkeypatch.setattr(package, "protect", fragile)
    out = tmp_path / "out"
    assert main(["protect", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 1
    res = json.loads((out / "results.json").read_text())
    assert sorted(r["output"] for r in res["images"]) == ["a0.png", "a1.png"]
    assert len(res["failed"]) == 1 and "odd.png: a kernel failed" in res["failed"][0]["error"]


def test_the_longest_file_name_the_system_takes_is_written(tmp_path, tiny_model_dir):
    src = tmp_path / "in"
    src.mkdir()
    name = "x" * 240 + ".png"                                  # 244 bytes; the limit is 255
    Image.fromarray(np.full((16, 16, 3), 60, np.uint8)).save(src / name)
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 0
    assert (out / name).is_file() and not list(out.glob(".*.part"))


def test_generate_and_demo_never_overwrite_files_they_did_not_write(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("the artist's own page")
    (out / "0000.png").write_bytes(b"the artist's own picture")
    for argv in (["generate", "--prompt", "x", "-n", "1", "--steps", "2"], ["demo", "--steps", "1"]):
        code = main(argv + ["--model", str(tiny_model_dir), "-o", str(out), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "holds files that no artshield" in err[0]
    assert (out / "index.html").read_text() == "the artist's own page"
    assert (out / "0000.png").read_bytes() == b"the artist's own picture"
    gen = tmp_path / "gen"                               # its own earlier output may be replaced
    for _ in range(2):
        assert main(["generate", "--prompt", "x", "-n", "1", "--steps", "2", "--model", str(tiny_model_dir),
                     "-o", str(gen), "-q"]) == 0


def test_two_runs_never_write_into_one_folder_at_once(tmp_path, art, tiny_model_dir, capsys):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from artshield.io import lock_output\nlock_output(Path(sys.argv[1]))\n"
                               "print('locked', flush=True)\ntime.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["protect", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "another artshield run is writing into this folder" in err[0]
        assert not (out / "a0.png").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["protect", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 0


def test_a_lab_image_is_converted_through_its_profile_and_written_with_srgb(tmp_path, tiny_model_dir):
    from PIL import ImageCms

    src = tmp_path / "in"
    src.mkdir()
    lab = Image.new("LAB", (16, 16), (60, 150, 100))
    lab.save(src / "lab.tif", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes())
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 0
    with Image.open(out / "lab.tif") as im:
        assert im.mode == "RGB"
        profile = ImageCms.ImageCmsProfile(io_bytes(im.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
    rec = json.loads((out / "results.json").read_text())["images"][0]
    assert any("through its ICC profile" in n for n in rec["notes"])


def io_bytes(data):
    import io

    return io.BytesIO(data)


def test_sigterm_mid_run_leaves_no_partial_file(tmp_path, art, tiny_model_dir):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "artshield.cli", "protect", str(art), "-o", str(out), "--model",
                          str(tiny_model_dir), "--steps", "100000", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / ".artshield.lock").exists() and time.time() < deadline:     # the run has begun
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))


def test_a_missing_upscaler_folder_says_so(tmp_path, art, tiny_model_dir, capsys):
    code = main(["purify", str(art), "-o", str(tmp_path / "o"), "--method", "noisy-upscale", "--option",
                 f"upscaler={tmp_path / 'nope'}", "--model", str(tiny_model_dir), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a diffusers upscaler folder" in err[0]


def test_a_caption_that_is_not_utf8_names_the_file_and_byte(tmp_path, art, tiny_model_dir, capsys):
    (art / "a1.txt").write_bytes(b"house icon, \xe9t\xe9 style")
    out = tmp_path / "lora"
    assert main(["mimic", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 1
    failed = json.loads((out / "results.json").read_text())["failed"]
    assert len(failed) == 1 and f"{art / 'a1.txt'}: cannot read the caption" in failed[0]["error"]
    assert "not UTF-8 at byte 12" in failed[0]["error"]


def test_float_and_32_bit_images_are_read_right_or_refused(tmp_path, tiny_model_dir):
    src = tmp_path / "in"
    src.mkdir()
    ramp = np.linspace(0, 1, 20 * 20, dtype=np.float32).reshape(20, 20)
    Image.fromarray(ramp, "F").save(src / "float01.tif")                     # came out black before
    Image.fromarray((np.arange(400).reshape(20, 20) * 1000).astype(np.int32), "I").save(src / "deep32.tif")
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1",
                 "--budget", "2", "-q"]) == 1
    res = json.loads((out / "results.json").read_text())
    assert [r["output"] for r in res["images"]] == ["float01.tif"]
    assert "beyond 16 bits" in res["failed"][0]["error"]                      # refused, not clipped
    with Image.open(out / "float01.tif") as im:
        written = np.asarray(im).astype(np.float64) / 65535
    assert abs(written.mean() - 0.5) < 0.01 and np.abs(written - ramp).max() <= 2 / 255 + 1e-3


# --- the same, end to end: random values through every command on tiny components ------------------
FUZZ = [float("nan"), float("inf"), float("-inf"), -1, 0, 1e12, 0.5, "x", "true"]
COMMANDS = {   # command -> (the argv it starts from, its numeric options as flags or --option keys)
    "protect": (["protect", "{art}", "--steps", "1"], ["--budget", "--step", "--steps", "--batch"]),
    "purify-jpeg": (["purify", "{art}", "--method", "jpeg"], ["quality"]),
    "purify-noise": (["purify", "{art}", "--method", "gaussian-noise"], ["sigma"]),
    "purify-blur": (["purify", "{art}", "--method", "gaussian-blur"], ["kernel", "sigma"]),
    "purify-bilateral": (["purify", "{art}", "--method", "bilateral", "--option", "passes=1"],
                         ["diameter", "sigma_color", "guided_eps"]),
    "purify-diffpure": (["purify", "{art}", "--method", "diffpure", "--option", "steps=4"], ["t_star"]),
    "mimic": (["mimic", "{art}", "--steps", "1"], ["--lr", "--steps", "--batch-size"]),
    "erase": (["erase", "--concept", "folder icon", "--method", "esd-x", "--iterations", "1", "--no-eval"],
              ["--eta", "--lr", "--iterations"]),
    "generate": (["generate", "--prompt", "x", "-n", "1", "--steps", "2"], ["--steps", "--guidance", "-n", "--seed"]),
    "audit": (["audit", "--prompts", "{prompts}", "--generations", "3", "--min-clique", "2", "--steps", "2",
               "--method", "detect"], ["--detect-generations", "--detect-steps", "--generations", "--guidance"]),
}


def test_random_option_values_never_give_a_traceback_or_a_wrong_output(tmp_path, art, tiny_model_dir, capsys):
    import math
    import random

    rng = random.Random(7)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("folder icon\n")
    before = digests(art)
    runs = 0
    for name, (argv, knobs) in COMMANDS.items():
        for knob in knobs:
            for value in rng.sample(FUZZ, 4):
                runs += 1
                out = tmp_path / f"run{runs}"
                filled = [a.replace("{art}", str(art)).replace("{prompts}", str(prompts)) for a in argv]
                text = "nan" if isinstance(value, float) and math.isnan(value) else str(value)
                extra = [knob, text] if knob.startswith("-") else ["--option", f"{knob}={text}"]
                try:
                    code = main(filled + extra + ["--model", str(tiny_model_dir), "-o", str(out), "-q"])
                except SystemExit as e:            # argparse: "-inf" reads as a flag, "x" is no number
                    code = e.code
                err = capsys.readouterr().err.strip().splitlines()
                assert code in (0, 1, 2), (name, knob, value, code)
                if code == 2:
                    assert len(err) == 1, (name, knob, value, err)
                    continue
                results = json.loads((out / "results.json").read_text())     # done: check what was written
                for rec in results.get("images", []):
                    if "output" in rec:
                        with Image.open(out / rec["output"]) as im:
                            pixels = np.asarray(im, dtype=np.float64)
                        assert np.isfinite(pixels).all() and pixels.max() > 0, (name, knob, value)
                        if name == "protect":
                            assert rec["linf_255"] <= rec["budget"] + 1e-6, (name, knob, value)
                for weights in list(out.glob("*.safetensors")):
                    from safetensors.torch import load_file

                    assert all(bool(torch.isfinite(t).all()) for t in load_file(str(weights)).values())
    assert runs >= 80 and digests(art) == before


def test_a_model_folder_with_nan_weights_is_refused(tmp_path, tiny_model_dir, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    path = broken / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone().fill_(float("nan"))
    save_file(tensors, str(path))
    out = tmp_path / "gen"
    code = main(["generate", "--model", str(broken), "--prompt", "x", "-n", "1", "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--model {broken}: its unet weights hold NaN" in err[0]
    assert name in err[0] and not out.exists()


def test_a_protect_run_that_would_not_fit_in_memory_is_refused_up_front(tmp_path, tiny_model_dir, capsys,
                                                                        monkeypatch):
    from artshield import batch as batch_module

    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        Image.fromarray(np.full((40, 50, 3), 20 * k, np.uint8)).save(src / f"p{k}.png")
    # 3 images of 2000 pixels, 4 to a chunk: 64 * 6000 + 150 * 2000 bytes = 684,000
    assert batch_module.memory_needed([2000] * 3, 4, 64) == 64 * 6000 + 150 * 2000
    assert batch_module.memory_needed([2000] * 3, 1, 64) == 64 * 2000 + 150 * 2000
    monkeypatch.setattr(batch_module, "available_memory", lambda: 500_000)     # a machine with 0.5 MB free
    out = tmp_path / "out"
    code = main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("artshield: error: --batch 4: these images need")
    assert not list(out.glob("*.png"))
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q",
                 "--batch", "1"]) == 0                                   # one at a time fits


def test_a_run_refused_after_its_folder_was_planned_leaves_no_folder(tmp_path, art, capsys, monkeypatch):
    out = tmp_path / "new" / "out"
    code = main(["protect", str(art), "-o", str(out), "--model", str(tmp_path / "absent-model"), "-q"])
    assert code == 2 and not out.exists()
    capsys.readouterr()
    code = main(["purify", str(art), "-o", str(out), "--method", "diffpure", "--model", "nope/absent", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be reached" in err[0]      # after the folder was planned
    assert not out.exists()
    assert f"no folder {Path('nope/absent').absolute()} exists" in err[0]     # a mistyped local folder too
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["purify", str(art), "-o", str(out), "--method", "diffpure", "--model", "here", "-q"]) == 2
    assert "no folder" not in capsys.readouterr().err                      # a folder that is there is no typo


def test_a_purify_run_that_would_not_fit_in_memory_is_refused(tmp_path, art, capsys, monkeypatch):
    from artshield import batch as batch_module

    monkeypatch.setattr(batch_module, "available_memory", lambda: 10_000)
    out = tmp_path / "out"
    code = main(["purify", str(art), "-o", str(out), "--method", "jpeg", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "these images need about" in err[0] and "use smaller images" in err[0]
    assert not out.exists()


def test_a_full_disk_fails_with_its_list_and_leaves_the_previous_files_intact(tmp_path, art, tiny_model_dir,
                                                                              monkeypatch, capsys):
    import errno

    from artshield import io as aio

    out = tmp_path / "out"
    assert _protect(art, out, tiny_model_dir) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(aio, "_atomic_write", full)
    code = _protect(art, out, tiny_model_dir, "--overwrite")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0] == "artshield: 2 input(s) failed:"
    assert all("No space left on device" in line for line in err[1:])
    assert err[-1].startswith("artshield: error: ") and err[-1].endswith("results.json: No space left on device")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


_LOCKER = """
import os, sys, time
from pathlib import Path
from artshield.errors import ArtshieldError
from artshield.io import lock_output, output_folder, release_locks
out, go = Path(sys.argv[1]), Path(sys.argv[2])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.001)
try:
    lock_output(output_folder(out))
except ArtshieldError:
    release_locks(refused=True)
    sys.exit(2)
time.sleep(2)                           # a run loads its model before it writes anything
mine = out / f"mine-{os.getpid()}"
mine.write_text("x")
time.sleep(2)
held = mine.exists() and mine.read_text() == "x"
release_locks()
sys.exit(0 if held else 3)
"""


def test_runs_started_at_the_same_instant_into_one_new_folder_let_exactly_one_in(tmp_path):
    """Six processes take one output folder (not there yet) at once: one holds it, the others are
    refused, and no refused run removes the folder or the files of the run that holds it."""
    import subprocess
    import sys

    out, go = tmp_path / "out", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _LOCKER, str(out), str(go)]) for _ in range(6)]
    import time

    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.time() < deadline:   # every one has imported
        time.sleep(0.05)
    go.touch()
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 2, 2, 2, 2, 2], codes
    assert sorted(p.name for p in out.iterdir())[0] == ".artshield.lock" and len(list(out.glob("mine-*"))) == 1


def _tiff_with_a_broken_second_page() -> bytes:
    """Two pages; the second's width and height tags renamed, so Pillow's n_frames raises TypeError."""
    import io
    import struct

    buf = io.BytesIO()
    pages = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (90, 30)]
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    n = struct.unpack("<H", data[first:first + 2])[0]
    second = struct.unpack("<I", data[first + 2 + 12 * n:first + 6 + 12 * n])[0]
    for k in range(struct.unpack("<H", data[second:second + 2])[0]):
        entry = second + 2 + 12 * k
        if struct.unpack("<H", data[entry:entry + 2])[0] in (256, 257):
            data[entry:entry + 2] = struct.pack("<H", 65000 + k)
    return bytes(data)


def _rgb16_tiff(h: int = 16, w: int = 16) -> bytes:
    """An uncompressed 16-bit RGB TIFF (Pillow reads it, and reduces it to 8 bits)."""
    import struct

    pixels = (np.random.default_rng(0).random((h, w, 3)) * 65535).astype("<u2").tobytes()
    n, ifd = 10, 8
    bits_at = ifd + 2 + n * 12 + 4
    data_at = bits_at + 6
    short = (lambda tag, v: struct.pack("<HHIHH", tag, 3, 1, v, 0))
    entries = [short(256, w), short(257, h), struct.pack("<HHII", 258, 3, 3, bits_at), short(259, 1), short(262, 2),
               struct.pack("<HHII", 273, 4, 1, data_at), short(277, 3), short(278, h),
               struct.pack("<HHII", 279, 4, 1, len(pixels)), short(284, 1)]
    return (b"II*\x00" + struct.pack("<I", ifd) + struct.pack("<H", n) + b"".join(entries) + struct.pack("<I", 0)
            + struct.pack("<HHH", 16, 16, 16) + pixels)


def test_hostile_names_and_decoders_are_each_one_files_problem_and_the_page_links_every_image(tmp_path, tiny_model_dir,
                                                                                            capsys):
    """A Latin-1 file name, a 250-byte name in a two-byte script, a TIFF whose second page is broken,
    a 16-bit RGB TIFF and a plain PNG in one batch: only the broken TIFF fails (one line), the page
    is written and each of its links reaches its file byte for byte, the 16-bit TIFF gets its note."""
    import re
    from urllib.parse import unquote_to_bytes

    src = tmp_path / "in"
    src.mkdir()
    png = (lambda v: Image.fromarray(np.full((16, 16, 3), v, np.uint8)))
    png(90).save(src / "plain.png")
    with open(os.fsencode(src) + b"/caf\xe9.png", "wb") as f:           # not UTF-8: Latin-1's e-acute
        png(60).save(f, "PNG")
    png(30).save(src / ("é" * 123 + ".png"))                             # 250 bytes
    (src / "broken.tif").write_bytes(_tiff_with_a_broken_second_page())
    (src / "deep.tif").write_bytes(_rgb16_tiff())
    out = tmp_path / "out"
    code = main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 2 and "broken.tif" in err[1] and "TypeError" in err[1], err
    results = json.loads((out / "results.json").read_text())
    assert len(results["images"]) == 4 and results["failed"][0]["file"].endswith("broken.tif")
    notes = {Path(r["file"]).name: r.get("notes", []) for r in results["images"]}
    assert any("16-bit colour TIFF" in n for n in notes["deep.tif"])
    assert (out / os.fsdecode(b"caf\xe9.png")).is_file() and (out / ("é" * 123 + ".png")).is_file()
    page = (out / results["page"]).read_text()
    links = re.findall(r'<img src="([^"]+)"', page)
    assert links and "caf\\xe9.png" in page
    for link in links:
        assert os.path.isfile(os.fsencode(out) + b"/" + unquote_to_bytes(link)), link
