"""Images in and out. Files become float tensors in [0, 1] of shape (B, 3, H, W) here, and only here.

Inputs are checked (format, size, decodability), EXIF orientation is applied and transparency is
composited over white. Outputs are written atomically: to a temporary file in the target folder,
then renamed, so an interrupted run never leaves a half-written image or overwrites an original.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MAX_PIXELS = 64_000_000


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """One image file as a (3, H, W) float tensor in [0, 1]."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise InputError(path, f"{im.width}x{im.height} is too large (limit {MAX_PIXELS} pixels)")
                im.load()
                im = ImageOps.exif_transpose(im)
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    canvas.alpha_composite(rgba)
                    im = canvas
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(path, f"not a readable image ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"cannot decode image: {e}") from None
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(path, f"image is {arr.shape[1]}x{arr.shape[0]}; at least 8x8 is needed")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand folders (non-recursively) into their image files, sorted; keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] to an 8-bit RGB image (rounded, not truncated)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image.shape)}")
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) tensor as PNG atomically. Other suffixes are refused: PNG keeps every bit."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: outputs are written as .png")
    pil = to_pil(image)
    _atomic_write(path, lambda f: pil.save(f, format="PNG"))
    return path


def write_json(data: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode()))
    return path


def grid(images: torch.Tensor, columns: int, pad: int = 2) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') image with white gaps."""
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    out = torch.ones(c, rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i, im in enumerate(images):
        r, k = divmod(i, columns)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = im
    return out
