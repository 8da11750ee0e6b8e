"""A property test of `protect` on hostile folders: any file names (any bytes but '/' and NUL, up to
255), images in every mode and bit depth Pillow writes, truncated, multi-frame, with hostile
metadata, or no image at all. Whatever the folder holds: no traceback, exit 0 or 1, one stderr line
per bad file, every file either done or reported (never both, never neither), every well-formed
image done unless its output name is another's, the originals unchanged, nothing half-written left.

The fast lane draws 6 folders (ARTSHIELD_PROPERTY_EXAMPLES to change it); the slow lane 40."""
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from artshield.cli import main
from artshield.io import list_images

# (format, suffixes it goes by, modes Pillow writes in it)
FORMATS = [("PNG", (".png", ".PNG"), ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I")),
           ("JPEG", (".jpg", ".jpeg", ".JPG"), ("L", "RGB", "CMYK")),
           ("TIFF", (".tif", ".tiff"), ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")),
           ("GIF", (".gif",), ("L", "P")),
           ("WEBP", (".webp",), ("RGB", "RGBA")),
           ("BMP", (".bmp",), ("1", "L", "P", "RGB"))]


def _picture(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "F":                      # floats are read in [0, 1] (another range is refused as ambiguous)
        return Image.fromarray(rng.random((h, w), dtype=np.float32))
    if mode in ("I;16", "I"):
        array = rng.integers(0, 65535, (h, w)).astype({"I;16": np.uint16, "I": np.int32}[mode])
        return Image.fromarray(array, mode=None if mode != "I;16" else "I;16")
    return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)


@st.composite
def files(draw):
    """(name bytes, content bytes, well_formed): well-formed files are single images of at least 8 px
    a side in a format artshield reads, under a suffix of that format."""
    kind = draw(st.sampled_from(["image", "image", "image", "truncated", "frames", "metadata", "noise"]))
    fmt, suffixes, modes = draw(st.sampled_from(FORMATS))
    suffix = draw(st.sampled_from(suffixes))
    stem = draw(st.binary(min_size=1, max_size=255 - len(suffix)).map(lambda b: b.replace(b"/", b"_")
                                                                      .replace(b"\0", b"_")))
    if stem.startswith(b"."):            # a hidden file is not a portfolio image: make it a visible one
        stem = b"_" + stem[1:]
    name = stem + suffix.encode()
    mode = draw(st.sampled_from(modes))
    w, h = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    seed = draw(st.integers(0, 1000))
    buf = io.BytesIO()
    picture = _picture(mode, w, h, seed)
    if kind == "noise":
        return name, draw(st.binary(max_size=300)), False
    if kind == "frames" and fmt in ("GIF", "TIFF", "PNG", "WEBP"):
        picture.save(buf, fmt, save_all=True, append_images=[_picture(mode, w, h, seed + 1)])
        return name, buf.getvalue(), False
    extra = {}
    if kind == "metadata":
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", draw(st.text(max_size=2000)))
            info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>" + "a" * draw(st.integers(0, 5000)))
            extra = {"pnginfo": info, "icc_profile": draw(st.binary(min_size=1, max_size=200))}
        elif fmt in ("JPEG", "WEBP", "TIFF"):
            exif = Image.Exif()
            exif[0x0112] = draw(st.integers(0, 65535))         # orientation: any value, valid or not
            exif[0x010E] = draw(st.text(max_size=200))          # image description
            extra = {"exif": exif.tobytes()}
    try:
        picture.save(buf, fmt, **extra)
    except (OSError, ValueError, TypeError, KeyError):
        picture.convert("RGB").save(buf, fmt)
    data = buf.getvalue()
    if kind == "truncated":
        return name, data[:draw(st.integers(0, max(0, len(data) - 1)))], False
    one_frame = kind != "frames"
    return name, data, one_frame and min(w, h) >= 8


def _check_run(tmp_path: Path, tiny_model_dir, folder_files, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    written = {}
    for name, data, good in folder_files:
        path = os.path.join(os.fsencode(src), name)
        if os.path.lexists(path):                         # two draws of one name: the first stays
            continue
        with open(path, "wb") as f:
            f.write(data)
        written[os.fsdecode(path)] = (hashlib.sha256(data).hexdigest(), good)
    listed = {str(p) for p in list_images([src])}
    capsys.readouterr()
    code = main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (0, 1, 2), code
    if code == 2:                                         # a refused run: only when nothing could be done
        assert len(err) == 1 and err[0].startswith("artshield: error:") and "no input images" in err[0], err
        assert not listed
        return
    results = json.loads((out / "results.json").read_text())
    done = {r["file"] for r in results["images"]}
    failed = {f["file"]: f["error"] for f in results.get("failed", [])}
    assert not done & set(failed) and done | set(failed) == listed
    assert code == (1 if failed else 0)
    assert len(err) == (1 + len(failed) if failed else 0), err
    for path, (digest, good) in written.items():
        with open(os.fsencode(path), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest          # originals untouched
        if good and path in listed:
            assert path in done or "would overwrite" in failed.get(path, ""), failed.get(path)
    for record in results["images"]:
        with Image.open(out / record["output"]) as im:
            assert im.size == Image.open(os.fsencode(record["file"])).size
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


@settings(max_examples=int(os.environ.get("ARTSHIELD_PROPERTY_EXAMPLES", 6)), deadline=None, derandomize=True,
          database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(folder=st.lists(files(), min_size=1, max_size=5))
def test_protect_on_any_folder_reports_every_bad_file_in_one_line_and_does_every_good_one(folder, tmp_path_factory,
                                                                                            tiny_model_dir, capsys):
    _check_run(tmp_path_factory.mktemp("p"), tiny_model_dir, folder, capsys)


@pytest.mark.slow
def test_protect_on_many_more_hostile_folders(tmp_path_factory, tiny_model_dir, capsys):
    """The same property over 40 folders (the fast lane draws 6)."""
    run = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))(given(folder=st.lists(files(), min_size=1, max_size=6))(
        lambda folder: _check_run(tmp_path_factory.mktemp("q"), tiny_model_dir, folder, capsys)))
    run()
