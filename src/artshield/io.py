"""Images in and out. Files become float tensors in [0, 1] of shape (B, 3, H, W) here, and only here.

Inputs are checked (format, size, decodability), EXIF orientation is applied and transparency is
composited over white. Outputs are written atomically: to a temporary file in the target folder,
then renamed, so an interrupted run never leaves a half-written image or overwrites an original.
"""
from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, as_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# image files a portfolio may hold that artshield does not read: reported, never skipped silently
UNSUPPORTED_SUFFIXES = {".avif", ".heic", ".heif", ".jxl", ".psd", ".svg", ".eps", ".pdf", ".ico", ".tga",
                        ".raw", ".cr2", ".nef", ".dng", ".kra", ".xcf"}
# The only decoders Pillow may use, whatever a file's suffix says (Pillow picks a decoder by content):
# never EPS/PS/PDF, which hand the file to Ghostscript, nor any other plugin.
DECODERS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
MAX_PIXELS = 64_000_000


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """One image file as a (3, H, W) float tensor in [0, 1] (alpha composited over white)."""
    pixels = load_image(path).pixels
    return pixels.expand(3, -1, -1).contiguous() if pixels.shape[0] == 1 else pixels


@dataclass
class LoadedImage:
    """An image file read for protection: what the model sees, and what is needed to write the
    protected copy back in the same format, size, mode, alpha, EXIF and ICC profile."""

    path: Path
    pixels: torch.Tensor            # (C, H, W) in [0, 1], display orientation, alpha composited on white;
                                    # C = 1 for greyscale files, else 3
    native: np.ndarray              # (H, W, C) colour channels as stored (uint8, or uint16 for 16-bit)
    alpha: np.ndarray | None        # (H, W) alpha as stored, or None
    format: str                     # PNG, JPEG, WEBP, TIFF, BMP (others are written as PNG)
    mode: str                       # the file's PIL mode
    exif: bytes | None
    icc: bytes | None
    notes: list[str] = field(default_factory=list)

    @property
    def maxval(self) -> int:
        return 65535 if self.native.dtype == np.uint16 else 255


KEEP_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 25 else None


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file for protection; raises InputError with one clear sentence when it cannot.
    Whatever a decoder raises on a hostile file (Pillow's TIFF reader raises TypeError on a broken
    second IFD, others raise KeyError or struct.error) is that file's failure, never the batch's."""
    try:
        return _load_image(Path(path))
    except InputError:
        raise
    except MemoryError:
        raise InputError(Path(path), "too large to decode in the memory this machine has free") from None
    except Exception as e:                      # noqa: BLE001 - a decoder's failure on this file only
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(Path(path), f"cannot decode image ({type(e).__name__}{': ' + first if first else ''})") \
            from None


def _bits_per_sample(im) -> int:
    """The largest bits per sample a TIFF declares (8 where it says nothing)."""
    bits = getattr(im, "tag_v2", {}).get(258, 8) if getattr(im, "format", None) == "TIFF" else 8
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _load_image(path: Path) -> LoadedImage:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image")
    if not path.is_file():       # never opened for reading: a FIFO would block, a device never end
        raise InputError(path, "not a regular file (a FIFO, device or socket)")
    if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
        raise InputError(path, f"{path.suffix} images are not supported (use PNG, JPEG, WebP, TIFF, BMP or GIF)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=DECODERS) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise InputError(path, f"{im.width}x{im.height} is too large (limit {MAX_PIXELS} pixels)")
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise InputError(path, f"animated image ({frames} frames); protect its frames as still images")
                im.load()
                fmt, mode, bits = im.format or "PNG", im.mode, _bits_per_sample(im)
                icc = im.info.get("icc_profile")
                if mode in ("CMYK", "LAB"):
                    im, icc = _to_srgb(im, icc, notes)
                im = ImageOps.exif_transpose(im)
                exif = im.getexif().tobytes() if len(im.getexif()) else None
    except InputError:
        raise
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(path, f"dimensions are too large (limit {MAX_PIXELS} pixels; a decompression bomb?)") from None
    except UnidentifiedImageError as e:
        raise InputError(path, f"not a readable image ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(path, f"cannot decode image: {e}") from None
    if min(im.size) < 8:
        raise InputError(path, f"image is {im.width}x{im.height}; at least 8x8 is needed")
    if fmt not in KEEP_FORMATS:
        notes.append(f"{fmt} cannot hold the perturbation losslessly; written as PNG")
        fmt = "PNG"
    if fmt == "PNG" and mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
        notes.append("16-bit colour PNG is read at 8 bits per channel; written as 8-bit")
    if fmt == "TIFF" and mode in ("RGB", "RGBA") and bits > 8:
        notes.append(f"{bits}-bit colour TIFF is read at 8 bits per channel; written as 8-bit")
    alpha = None
    if im.mode in ("F", "I") or im.mode.startswith("I;"):
        native = _deep_grey(path, im, notes)
    else:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        grey = im.mode in ("L", "LA", "1") or (im.mode == "P" and _palette_is_grey(im))
        if im.mode in ("P", "PA"):
            notes.append("palette image written as " + ("grey" if grey else "RGB") + ("A" if has_alpha else "")
                         + ": a palette cannot hold the perturbation")
        elif im.mode not in ("RGB", "RGBA", "L", "LA"):
            notes.append(f"{im.mode} image written as RGB")
        if has_alpha:
            alpha = np.asarray(im.convert("RGBA"), dtype=np.uint8)[..., 3].copy()
        native = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
        native = native[..., None] if grey else native.copy()
    pixels = torch.from_numpy(native.astype(np.float32) / (65535 if native.dtype == np.uint16 else 255))
    pixels = pixels.permute(2, 0, 1).contiguous()
    if alpha is not None:
        a = torch.from_numpy(alpha.astype(np.float32) / 255)[None]
        pixels = pixels * a + (1 - a)
    return LoadedImage(path, pixels, np.ascontiguousarray(native), alpha, fmt, mode, exif, icc, notes)


def _to_srgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    """A CMYK or Lab image as sRGB: through its own ICC profile where it has one, so its colours
    hold; the profile written with the copy is then sRGB's, never the CMYK/Lab one."""
    from PIL import ImageCms

    srgb = ImageCms.createProfile("sRGB")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
            notes.append(f"{im.mode} image converted to sRGB through its ICC profile; written as RGB")
            return out, ImageCms.ImageCmsProfile(srgb).tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    notes.append(f"{im.mode} image converted to RGB (no usable ICC profile); written as RGB without one")
    return im.convert("RGB"), None


def _deep_grey(path: Path, im: Image.Image, notes: list[str]) -> np.ndarray:
    """A 16-bit, 32-bit integer or 32-bit float grey image as 16-bit values (H, W, 1): integers as
    they are when they fit 0-65535, floats read as [0, 1] (or 0-255 when they go beyond 1). Values
    that fit neither are refused: clipping them would write a wrong picture."""
    values = np.asarray(im, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(path, "the image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if im.mode == "F":
        scale = 1.0 if high <= 1.0 else 255.0
        if low < 0 or high > scale:
            raise InputError(path, f"a float image with values in [{low:g}, {high:g}]; artshield reads floats in "
                                   "[0, 1] or [0, 255]: convert it to 8 or 16 bits first")
        notes.append(f"32-bit float image read as [0, {scale:g}]; written as 16-bit")
        return np.round(values / scale * 65535).astype(np.uint16)[..., None]
    if low < 0 or high > 65535:
        raise InputError(path, f"an integer image ({im.mode}) with values in [{low:g}, {high:g}], beyond 16 "
                               "bits; convert it to 8 or 16 bits first")
    if im.mode == "I" and im.format != "PNG":
        notes.append("32-bit integer image written as 16-bit (its values fit)")
    return values.astype(np.uint16)[..., None]


def _palette_is_grey(im: Image.Image) -> bool:
    rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def output_name(loaded: LoadedImage, keep_format: bool = True) -> str:
    """The protected copy's file name: the input's, with the suffix of the format it is written in."""
    fmt = loaded.format if keep_format else "PNG"
    suffix = loaded.path.suffix if loaded.path.suffix.lower() in _SUFFIXES[fmt] else KEEP_FORMATS[fmt]
    return loaded.path.stem + suffix


_SUFFIXES = {"PNG": {".png"}, "JPEG": {".jpg", ".jpeg"}, "WEBP": {".webp"}, "TIFF": {".tif", ".tiff"},
             "BMP": {".bmp"}}


def save_perturbed(loaded: LoadedImage, delta: torch.Tensor, path: str | os.PathLike,
                   keep_format: bool = True) -> Path:
    """Write `loaded` plus `delta` ((C, H, W), multiples of 1/255, display orientation) atomically,
    in the input's format, mode, alpha, EXIF and ICC profile (or as PNG when keep_format is False).
    The change is added to the stored colour values, so 8-bit channels change by exactly
    round(255 * delta) and 16-bit ones by 257 times that."""
    path = Path(path)
    if tuple(delta.shape) != tuple(loaded.pixels.shape):
        raise ValueError(f"the change is {tuple(delta.shape)}, the image {tuple(loaded.pixels.shape)}")
    if not bool(torch.isfinite(delta).all()):
        raise ValueError("the computed change holds NaN or infinite values; nothing was written")
    step = loaded.maxval // 255
    d = (delta.detach().float().cpu() * 255).round().to(torch.int64).permute(1, 2, 0).numpy()
    out = np.clip(loaded.native.astype(np.int64) + d * step, 0, loaded.maxval)
    if loaded.native.dtype == np.uint16:
        image = Image.fromarray(out[..., 0].astype(np.uint16))
    else:
        out = out.astype(np.uint8)
        grey = out.shape[2] == 1
        if loaded.alpha is not None:
            image = Image.fromarray(np.dstack([out, loaded.alpha]), "LA" if grey else "RGBA")
        else:
            image = Image.fromarray(out[..., 0] if grey else out, "L" if grey else "RGB")
    fmt = loaded.format if keep_format else "PNG"
    options: dict = {}
    if loaded.icc:
        options["icc_profile"] = loaded.icc
    if loaded.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        options["exif"] = loaded.exif
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
        if image.mode in ("RGBA", "LA"):
            image = image.convert(image.mode[:-1])
    elif fmt == "WEBP":
        options.update(lossless=True, quality=100)
    elif fmt == "TIFF":
        options.update(compression="tiff_lzw")
    _atomic_write(path, lambda f: image.save(f, format=fmt, **options))
    return path


def save_replaced(loaded: LoadedImage, image: torch.Tensor, path: str | os.PathLike, keep_format: bool = True) -> Path:
    """Write `image` ((C, H, W) in [0, 1], shaped like loaded.pixels: a purified copy) in place of
    `loaded`'s pixels, with its format, mode, alpha, EXIF and ICC profile, as save_perturbed does."""
    if not bool(torch.isfinite(image).all()):
        raise ValueError("the result holds NaN or infinite values; nothing was written")
    delta = (image.detach().cpu().float().clamp(0, 1) * 255).round() / 255 - loaded.pixels
    return save_perturbed(loaded, delta, path, keep_format)


@dataclass
class CaptionedFolder:
    """The readable images of a folder, each with the text of its NAME.txt sidecar (None without
    one), and the files that could not be read (file, error)."""

    files: list[Path]
    images: list[torch.Tensor]
    captions: list[str | None]
    failures: list[dict]


def text_problem(e: Exception) -> str:
    """Why a text file could not be read, in a few words (where a decoding error is, by byte)."""
    if isinstance(e, UnicodeDecodeError):
        return f"UnicodeDecodeError: not UTF-8 at byte {e.start}"
    return f"{type(e).__name__}: {e.strerror}" if isinstance(e, OSError) and e.strerror else type(e).__name__


def read_captioned_folder(folder: str | os.PathLike) -> CaptionedFolder:
    """Read every image of `folder` (non-recursively) and its caption sidecar; an unreadable image is
    listed in `failures` and skipped, an unreadable caption file too."""
    out = CaptionedFolder([], [], [], [])
    for f in list_images([folder]):
        try:
            pixels = load_image(f).pixels
            side = f.with_suffix(".txt")
            caption = side.read_text(encoding="utf-8").strip() if side.is_file() else None
        except InputError as e:
            out.failures.append({"file": str(f), "error": str(e)})
            continue
        except (OSError, UnicodeDecodeError) as e:
            out.failures.append({"file": str(f), "error": f"{f.with_suffix('.txt')}: cannot read the caption "
                                                          f"({text_problem(e)})"})
            continue
        out.files.append(f)
        out.images.append(pixels)
        out.captions.append(caption)
    return out


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand folders (non-recursively) into the entries that are or claim to be images, sorted; keep
    files as given. Entries with an image suffix that are no regular file (a FIFO, a broken link) and
    image formats artshield does not read (AVIF, HEIC, ...) are listed too, so that reading them
    reports them as failures instead of skipping them without a word; other files (captions) are not."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if not f.name.startswith(".")
                              and f.suffix.lower() in IMAGE_SUFFIXES | UNSUPPORTED_SUFFIXES))
        else:
            out.append(p)
    return out


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] to an 8-bit RGB image (rounded, not truncated)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image.shape)}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("the image holds NaN or infinite values; nothing was written")
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


@functools.cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_prefix(path: Path) -> str:
    """The start of a temporary name beside `path`: '.' and at most 200 *bytes* of its name, so that
    with mkstemp's 8 characters and '.part' it fits NAME_MAX (255 bytes) whatever the name's script."""
    return "." + os.fsdecode(os.fsencode(path.name)[:200]) + "."


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file 0600; a result is shared like any file the user writes (0644 under umask 022)
        os.chmod(tmp, 0o666 & ~_umask())
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


def write_text(text: str, path: str | os.PathLike) -> Path:
    """A UTF-8 text file, written atomically; names that are not UTF-8 are written as escapes (as_text)."""
    path = Path(path)
    _atomic_write(path, lambda f: f.write(as_text(text).encode()))
    return path


def write_json(data: dict, path: str | os.PathLike) -> Path:
    return write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", path)


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinite value."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def write_weights(tensors: dict[str, torch.Tensor], info: dict, folder: str | os.PathLike, weights_name: str,
                  info_name: str, method: str, metadata: dict[str, str] | None = None) -> Path:
    """A folder of trained tensors (safetensors, written atomically) and their JSON description."""
    from .errors import ArtshieldError

    bad = nonfinite(tensors)
    if bad:
        raise ArtshieldError(f"the {method} run produced NaN or infinite values (in {bad[0]}"
                             f"{f' and {len(bad) - 1} more tensors' if len(bad) > 1 else ''}): it diverged; "
                             "nothing was written (a lower learning rate or fewer steps may help)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, folder / weights_name, {**(metadata or {}), "method": method})
    write_json(info, folder / info_name)
    return folder


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """One safetensors file, written atomically with the user's umask."""
    from safetensors.torch import save

    path = Path(path)
    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    _atomic_write(path, lambda f: f.write(blob))
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


def check_output_folder(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output folder that is a file or that could not be created or
    written (its nearest existing folder is not writable); nothing is created."""
    from .errors import ArtshieldError

    out = Path(path).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ArtshieldError("exists and is not a folder", param="output", value=str(path))
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ArtshieldError(f"cannot be written ({existing} is not a writable folder)", param="output",
                             value=str(path))


def output_folder(path: str | os.PathLike) -> Path:
    """The output folder `path`, created if needed; an ArtshieldError (parameter "output") when it is
    a file or cannot be created."""
    from .errors import ArtshieldError

    check_output_folder(path)
    out = Path(path)
    if not out.exists():
        _CREATED.append(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtshieldError(f"cannot create the folder ({e.strerror or type(e).__name__})", param="output",
                             value=str(path)) from None
    return out


_LOCKS: list = []          # file descriptors of the locked output folders: held until release_locks()
_CREATED: list = []        # output folders this run created and locked


def release_locks(refused: bool = False) -> None:
    """Let other runs write into the folders this run locked (the command line does it when a
    command ends). `refused`: the run stopped with an error; the folders it created and left
    empty (but for its lock marker) are removed first, while the lock still keeps every other run
    out, so a refused run leaves nothing behind and never removes a folder another run holds."""
    while _CREATED:
        folder = _CREATED.pop()
        try:
            if refused and folder.is_dir() and all(p.name == ".artshield.lock" for p in folder.iterdir()):
                (folder / ".artshield.lock").unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            pass                             # something else appeared in it: it stays
    while _LOCKS:
        os.close(_LOCKS.pop())


def lock_output(out: Path, shared: bool = False) -> None:
    """Lock the folder `out` itself (flock on the directory, so nothing a run does to the files in
    it can split the lock) until release_locks(), so that two runs never write into one folder at
    once (the second is refused with one line); `.artshield.lock` in it marks that a run has begun.
    `shared`: runs built to share a folder (bench workers, which claim cells one by one) hold it
    together, and still exclude every other run. Where the system has no advisory locks
    (Windows), nothing is held."""
    from .errors import ArtshieldError

    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        if out in _CREATED:                  # another run made it first, or holds it: not ours to remove
            _CREATED.remove(out)
        raise ArtshieldError("another artshield run is writing into this folder; wait for it or choose another",
                             param="output", value=str(out)) from None
    _LOCKS.append(fd)
    (out / ".artshield.lock").touch()


def claim_output(path: str | os.PathLike, command: str, own: tuple[str, ...] = (), shared: bool = False) -> Path:
    """The output folder of a `command` run, created and locked (`shared`: see lock_output). A
    folder that already holds files is taken only when they are an earlier run's of the same
    command (its results.json says so, or it holds one of `own`, e.g. an adapter.json): files
    artshield did not write are never replaced."""
    from .errors import ArtshieldError

    out = output_folder(path)
    lock_output(out, shared)
    present = [p for p in out.iterdir() if not p.name.startswith(".")]
    if present and not any((out / name).exists() for name in own):
        try:
            earlier = str(json.loads((out / "results.json").read_text()).get("command", ""))
        except (OSError, ValueError, AttributeError):
            earlier = ""
        if earlier != command and not earlier.startswith(f"artshield {command}"):
            raise ArtshieldError(f"holds files that no artshield {command} run wrote (such as {present[0].name}); "
                                 "choose an empty folder", param="output", value=str(path))
    return out


@dataclass
class Batch:
    """A batch command's plan: the images to do (each with its output name), records of outputs
    that already exist and still hold (kept unless overwrite), the inputs that failed (file, error),
    the run's fingerprint and each input file's digest (which every record of this run carries)."""

    out: Path
    todo: list[tuple[Path, str]]                      # (input, output name); read again when its turn comes
    done: list[dict]
    failures: list[dict]
    run_id: str = ""
    digests: dict = field(default_factory=dict)       # output name -> sha256 of its input file
    pixels: dict = field(default_factory=dict)        # output name -> its image's pixel count (H x W)

    def stamp(self, name: str) -> dict:
        """What a record of output `name` carries so that a later run can tell whether it still holds."""
        return {"input_sha256": self.digests.get(name), "run_id": self.run_id}


def run_fingerprint(settings: dict) -> str:
    """A short digest of the settings that make an output what it is (method, options, model, seed, format)."""
    import hashlib

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_batch(inputs: list[str], output: str, what: str, keep_format: bool = True, overwrite: bool = False,
               settings: dict | None = None) -> Batch:
    """Read the images named by `inputs` (files or folders) for a batch that writes one copy of each
    into `output`. Refuses an output folder that holds an input, so originals are never overwritten,
    and an output that is an input itself (through a link). Two inputs that would write the same
    output name fail, the second one. An existing output is kept only when the folder's results.json
    says this very input was made into it with these very `settings`; one that an earlier run made
    from another input or with other settings is redone; a file that no run of artshield wrote
    there is never replaced without `overwrite`. Partial files of interrupted runs are removed."""
    import hashlib

    from .errors import ArtshieldError

    out = Path(output)
    files = list_images(inputs)
    if not files:
        raise ArtshieldError("no input images: give image files or folders that contain them")
    for p in map(Path, inputs):
        folder = p if p.is_dir() else p.parent
        if out.exists() and folder.exists() and out.resolve() == folder.resolve():
            raise ArtshieldError(f"is the folder of the input {p}; choose another folder, so that originals "
                                 "are never overwritten", param="output", value=output)
    lock_output(output_folder(output))
    for stale in out.glob(".*.part"):            # left by a run that was killed while writing
        stale.unlink(missing_ok=True)
    previous = _previous_records(out / "results.json")
    batch, taken = Batch(out, [], [], [], run_fingerprint(settings or {})), {}
    for path in files:
        try:
            loaded = load_image(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except InputError as e:
            batch.failures.append({"file": str(path), "error": str(e)})
            continue
        except OSError as e:
            batch.failures.append({"file": str(path), "error": f"{path}: cannot read it ({e.strerror})"})
            continue
        name = output_name(loaded, keep_format=keep_format)
        target = out / name
        problem = None
        if name in taken:
            problem = f"its output {name} would overwrite the {what} of {taken[name]}; run it separately"
        elif target.exists() and os.path.samefile(target, path):
            problem = f"its output {target} is this very file (through a link); choose another folder"
        elif target.exists() and not overwrite and name not in previous:
            problem = f"{target} exists and no run of artshield wrote it; use --overwrite to replace it"
        if problem:
            batch.failures.append({"file": str(path), "error": f"{path}: {problem}"})
            continue
        taken[name] = path
        batch.digests[name] = digest
        batch.pixels[name] = int(loaded.pixels.shape[1] * loaded.pixels.shape[2])
        rec = previous.get(name)
        if target.exists() and not overwrite and rec.get("input_sha256") == digest and \
                rec.get("run_id") == batch.run_id:
            batch.done.append({**rec, "skipped": "output exists, made from this input with these settings "
                                                 "(use --overwrite to redo)"})
            continue
        batch.todo.append((path, name))     # only the path is kept: memory grows with a chunk, not the folder
    return batch


def _previous_records(path: Path) -> dict:
    try:
        return {r["output"]: r for r in json.loads(path.read_text()).get("images", []) if "output" in r}
    except (OSError, ValueError, AttributeError):
        return {}


def read_lines(path: str | os.PathLike, label: str, what: str = "lines") -> list[str]:
    """The non-empty lines of a UTF-8 text file (a prompts file), stripped; `label` names the file in
    errors (label "--prompts": "--prompts x.txt: ..."). Only regular files are read: a FIFO or a
    device would block."""
    from .errors import ArtshieldError

    p = Path(path)
    if not p.is_file():
        raise ArtshieldError(f"{label} {path}: cannot read it (" + ("no such file" if not p.exists()
                                                                   else "not a regular file") + ")")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ArtshieldError(f"{label} {path}: cannot read it ({text_problem(e)})") from None
    if not lines:
        raise ArtshieldError(f"{label} {path}: no {what} in it (one per line)")
    return lines
