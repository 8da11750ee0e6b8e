"""A corpus of bad and odd input files through `artshield protect`: each one gets a clear one-line
error or a correct result, originals stay byte-identical, and the batch goes on past failures and
exits 1 listing them."""
import hashlib
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from artshield.cli import main


def _png_header_only(path, width, height):
    """A PNG whose header claims huge dimensions (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _pattern(h, w, c=3):
    return (np.arange(h * w * c).reshape(h, w, c) * 7 % 256).astype(np.uint8)


def build_corpus(folder):
    """name -> expected: "ok" (a protected copy is written) or a fragment of the error line."""
    folder.mkdir()
    expect = {}
    Image.fromarray(_pattern(24, 24)).save(folder / "good.png")
    expect["good.png"] = "ok"
    full = folder / "good.png"
    (folder / "truncated.png").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    expect["truncated.png"] = "cannot decode image"
    (folder / "text.png").write_text("this is not an image\n")
    expect["text.png"] = "not a readable image"
    (folder / "empty.png").write_bytes(b"")
    expect["empty.png"] = "not a readable image"
    Image.fromarray((np.arange(20 * 20).reshape(20, 20) * 150).astype(np.uint16)).save(folder / "deep16.png")
    expect["deep16.png"] = "ok"
    Image.fromarray(_pattern(20, 20, 4)).convert("CMYK").save(folder / "cmyk.jpg")
    expect["cmyk.jpg"] = "ok"
    pal = Image.fromarray(_pattern(20, 20)).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png", transparency=0)
    expect["palette.png"] = "ok"
    frames = [Image.fromarray(_pattern(16, 16) // k) for k in (1, 2, 3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    expect["animated.gif"] = "animated image (3 frames)"
    Image.new("RGB", (1, 1), "red").save(folder / "one.png")
    expect["one.png"] = "at least 8x8"
    _png_header_only(folder / "bomb.png", 200_000, 200_000)
    expect["bomb.png"] = "too large"
    Image.fromarray(_pattern(20, 20)).save(folder / "locked.png")
    expect["locked.png"] = "permission denied"
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotated 90 degrees: width and height swap
    Image.fromarray(_pattern(16, 28)).save(folder / "rotated.jpg", exif=exif.tobytes())
    expect["rotated.jpg"] = "ok"
    Image.fromarray(_pattern(12, 30)[..., 0]).save(folder / "grey.tif")
    expect["grey.tif"] = "ok"
    (folder / "folder.png").mkdir()                    # a folder that looks like an image: not listed
    return expect


@pytest.fixture
def locked_file(monkeypatch):
    """Make locked.png unreadable: chmod 000, and for root (who reads it anyway) a patched open."""
    import PIL.Image

    real_open = PIL.Image.open

    def guarded(fp, *a, **k):
        if str(fp).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    if os.geteuid() == 0:
        monkeypatch.setattr(PIL.Image, "open", guarded)
    return guarded


def test_bad_and_odd_files(tmp_path, tiny_model_dir, capsys, locked_file):
    src = tmp_path / "in"
    expect = build_corpus(src)
    (src / "locked.png").chmod(0)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir() if p.is_file()
               and p.name != "locked.png"}
    out = tmp_path / "out"
    code = main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1",
                 "--budget", "4", "-q"])
    (src / "locked.png").chmod(0o644)
    err = capsys.readouterr().err
    assert code == 1
    res = json.loads((out / "results.json").read_text())
    done = {os.path.basename(r["file"]): r for r in res["images"]}
    failed = {os.path.basename(f["file"]): f["error"] for f in res["failed"]}
    for name, outcome in expect.items():
        if outcome == "ok":
            assert name in done, (name, failed.get(name))
        else:
            assert name in failed and outcome in failed[name], (name, failed.get(name))
            assert str(src / name) in failed[name] and "\n" not in failed[name]
            assert failed[name] in err                 # listed at the end, one line each
    assert f"{len(failed)} input(s) failed" in err
    # originals byte-identical
    assert {n: hashlib.sha256((src / n).read_bytes()).hexdigest() for n in digests} == digests
    # the odd ones came out right
    with Image.open(out / "deep16.png") as im:
        arr = np.asarray(im)
        assert arr.dtype == np.uint16 and im.size == (20, 20)
    orig16 = np.asarray(Image.open(src / "deep16.png")).astype(np.int64)
    assert np.abs(arr.astype(np.int64) - orig16).max() <= 4 * 257
    with Image.open(out / "rotated.jpg") as im:
        assert im.size == (16, 28) and im.getexif().get(0x0112, 1) == 1   # upright, orientation reset
    with Image.open(out / "palette.png") as im:
        assert im.mode == "RGBA"
    assert any("palette" in n for n in done["palette.png"]["notes"])
    with Image.open(out / "cmyk.jpg") as im:
        assert im.mode == "RGB"
    with Image.open(out / "grey.tif") as im:
        assert im.format == "TIFF" and im.mode == "L"
        assert np.abs(np.asarray(im).astype(int) - np.asarray(Image.open(src / "grey.tif")).astype(int)).max() <= 4


def test_output_folder_equal_to_input_folder_is_refused(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_pattern(16, 16)).save(src / "a.png")
    before = (src / "a.png").read_bytes()
    code = main(["protect", str(src / "a.png"), "-o", str(src), "--model", str(tiny_model_dir), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "originals are never overwritten" in err[0]
    assert (src / "a.png").read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_same_name_twice_is_reported_not_overwritten(tmp_path, tiny_model_dir, capsys):
    for sub, k in (("x", 1), ("y", 2)):
        (tmp_path / sub).mkdir()
        Image.fromarray(_pattern(16, 16) // k).save(tmp_path / sub / "art.png")
    out = tmp_path / "out"
    code = main(["protect", str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(out), "--model",
                 str(tiny_model_dir), "--steps", "1", "-q"])
    res = json.loads((out / "results.json").read_text())
    assert code == 1 and len(res["images"]) == 1 and res["images"][0]["file"].endswith("x/art.png")
    assert "would overwrite the protected copy" in res["failed"][0]["error"]
