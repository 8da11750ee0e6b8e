"""The image types the Python API takes and gives back: PIL images, numpy arrays or tensors.

Every algorithm works on (C, H, W) float tensors in [0, 1]. `as_tensors` turns what a caller
hands in into that form and remembers the kind; `like_inputs` turns results back into the kind
the caller gave (PIL in, PIL out; numpy in, numpy out, with the input's dtype and layout).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Kind:
    """What one input image was, so that its result can be given back the same way."""

    type: str                # "tensor", "pil" or "numpy"
    dtype: str = ""          # numpy: the array's dtype
    channels_last: bool = True
    grey: bool = False       # numpy: a (H, W) array


def as_tensor(image) -> tuple[torch.Tensor, Kind]:
    """One image as a (C, H, W) float tensor in [0, 1] (C = 1 or 3), and its kind.

    PIL: any mode; alpha is composited over white, as files are. numpy: (H, W), (H, W, C) or
    (C, H, W), uint8 (0-255), uint16 (0-65535) or float (0-1). Tensors pass unchanged."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be (C, H, W) with C = 1 or 3, not {tuple(image.shape)}")
        return image, Kind("tensor")
    if isinstance(image, Image.Image):
        grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        with_alpha = image.convert("LA" if grey else "RGBA")
        arr = torch.from_numpy(np.asarray(with_alpha, dtype=np.float32) / 255)
        arr = (arr[..., None] if arr.ndim == 2 else arr).permute(2, 0, 1)
        alpha = arr[-1:]
        return (arr[:-1] * alpha + (1 - alpha)).contiguous(), Kind("pil", grey=grey)
    if isinstance(image, np.ndarray):
        arr, grey = image, image.ndim == 2
        if grey:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ValueError(f"an image array must be (H, W), (H, W, C) or (C, H, W), not {image.shape}")
        channels_last = arr.shape[-1] in (1, 3) or arr.shape[0] not in (1, 3)
        if channels_last and arr.shape[-1] not in (1, 3):
            raise ValueError(f"an image array needs 1 or 3 colour channels, not shape {image.shape}")
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype)
        if scale is None and not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"an image array must be uint8, uint16 or float in [0, 1], not {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)) / (scale or 1.0)
        t = t.permute(2, 0, 1) if channels_last else t
        return t.contiguous(), Kind("numpy", str(arr.dtype), channels_last, grey)
    raise TypeError(f"an image must be a PIL image, a numpy array or a (C, H, W) tensor, not {type(image).__name__}")


def as_tensors(images) -> tuple[list[torch.Tensor], list[Kind]]:
    pairs = [as_tensor(im) for im in images]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def like_input(image: torch.Tensor, kind: Kind):
    """A (C, H, W) result in [0, 1] given back as the kind its input was."""
    if kind.type == "tensor":
        return image
    x = image.detach().float().clamp(0, 1).cpu()
    if kind.type == "pil":
        arr = x.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(arr[..., 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
    dtype = np.dtype(kind.dtype)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(dtype)
    arr = (x.mul(scale).round() if scale else x).numpy()
    arr = arr.transpose(1, 2, 0) if kind.channels_last else arr
    if kind.grey:
        arr = arr[..., 0]
    return arr.astype(dtype)


def like_inputs(images: list[torch.Tensor], kinds: list[Kind]) -> list:
    return [like_input(im, k) for im, k in zip(images, kinds)]
