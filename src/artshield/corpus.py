"""The embedded icon corpus: real icons from Debian icon themes, one theme per "artist".

Built by scripts/build_corpus.py; see assets/corpus/NOTICE for every theme's licence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CORPUS_DIR = Path(__file__).parent / "assets" / "corpus"


@dataclass(frozen=True)
class Item:
    file: str
    theme: str | None        # None: a judge-pool icon from a theme that is no artist (concept only)
    concept: str | None
    caption: str
    split: str               # "train" (mini's training set), "finetune" or "reference" (held-out
                             # themes), "judge" (the judge's extra real images, never mini's)
    judge_split: str | None  # "train" / "test" for the judge; None for fine-tuning images
    copies: int              # how often mini's training sampler repeats it (planted duplicates > 1)
    sha256: str              # of the 64x64 rendering: identical drawings have identical digests

    @property
    def path(self) -> Path:
        return CORPUS_DIR / self.file


@lru_cache(maxsize=1)
def manifest() -> dict:
    path = CORPUS_DIR / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: corpus missing; build it with scripts/build_corpus.py")
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def _all_items() -> tuple[Item, ...]:
    keys = Item.__dataclass_fields__
    return tuple(Item(**{k: r[k] for k in keys}) for r in manifest()["images"])


def items(split: str | None = None, theme: str | None = None, judge_split: str | None = None) -> list[Item]:
    return [i for i in _all_items() if (split is None or i.split == split) and (theme is None or i.theme == theme)
            and (judge_split is None or i.judge_split == judge_split)]


def themes(heldout: bool | None = None) -> list[str]:
    return [t for t, info in manifest()["themes"].items() if heldout is None or info["heldout"] == heldout]


def concepts() -> list[str]:
    return list(manifest()["concepts"])


def load_images(selection: list[Item], size: int) -> torch.Tensor:
    """Images as float tensors in [0, 1], shape (N, 3, size, size), area-resampled from what is stored
    (64x64, or 32x32 for the judge pool)."""
    arrays = []
    for it in selection:
        with Image.open(it.path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BOX if size < im.size[0] else Image.BICUBIC)
            arrays.append(np.asarray(im))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)
