"""What produced a result: the versions every results.json records."""
from __future__ import annotations

import platform


def environment() -> dict:
    """Versions of artshield, torch, diffusers, transformers and Python, and the platform."""
    import diffusers
    import torch
    import transformers

    from . import __version__

    return {"artshield": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def folder_hash(path) -> str:
    """sha256 (first 16 hex digits) of a model folder's or file's weights and configs: every
    .safetensors, .json and .txt file under it, by relative path and content, in sorted order."""
    import hashlib
    from pathlib import Path

    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                 and p.suffix in (".safetensors", ".json", ".txt"))
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def tensors_hash(tensors: dict) -> str:
    """sha256 (first 16 hex digits) of named tensors (a mimic's trained weights), in sorted order."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
