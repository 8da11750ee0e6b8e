import os

import numpy as np
import pytest
import torch
from PIL import Image

from artshield.errors import InputError
from artshield.io import grid, list_images, read_image, write_image, write_json


def test_png_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png")
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32
    write_image(x, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_transparency_is_composited_over_white(tmp_path):
    im = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    im.putpixel((3, 3), (0, 0, 255, 255))
    im.save(tmp_path / "t.png")
    x = read_image(tmp_path / "t.png")
    assert torch.allclose(x[:, 0, 0], torch.ones(3))
    assert torch.allclose(x[:, 3, 3], torch.tensor([0.0, 0.0, 1.0]))


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (3, 20, 10)


@pytest.mark.parametrize("content, problem", [(b"not an image at all", "not a readable image"),
                                              (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "")])
def test_bad_files_name_the_file(tmp_path, content, problem):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_image(p)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_missing_folder_and_tiny_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="at least 8x8"):
        read_image(tmp_path / "small.png")


def test_writes_are_atomic_and_leave_no_partial_file(tmp_path):
    target = tmp_path / "out.png"
    write_image(torch.zeros(3, 8, 8), target)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        write_image(torch.zeros(1, 8, 8), target)  # wrong shape: fails before touching the file
    assert target.read_bytes() == before
    assert [f for f in os.listdir(tmp_path) if f.endswith(".part")] == []
    with pytest.raises(ValueError, match=".png"):
        write_image(torch.zeros(3, 8, 8), tmp_path / "x.jpg")


def test_write_json_and_list_images(tmp_path):
    write_json({"a": 1}, tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text().strip().startswith("{")
    for n in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]


def test_grid_places_images_in_rows():
    imgs = torch.zeros(5, 3, 4, 4)
    g = grid(imgs, columns=2, pad=1)
    assert g.shape == (3, 3 * 5 + 1, 2 * 5 + 1)
    assert g[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and g[:, 1, 1].tolist() == [0.0, 0.0, 0.0]
