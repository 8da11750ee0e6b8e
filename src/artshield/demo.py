"""The demo's material and its pictures: sample artworks, and what the model makes of them.

Samples: one icon of each held-out "artist" of the corpus (themes mini never saw) and two real
photographs from scikit-image's bundled CC0 images (Chelsea the cat by Stefan van der Walt, a coffee
cup by Rachel Michetti). The photos are full size (451x300, 600x400): the perturbation is computed
and written at full resolution while the model sees a resized view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import corpus
from .models import ModelBundle
from .protect.engine import fit_view
from .sampling import img2img


@dataclass
class Sample:
    name: str
    image: torch.Tensor     # (3, H, W) in [0, 1]
    credit: str


def samples() -> list[Sample]:
    out = []
    for theme in corpus.themes(heldout=True):
        item = corpus.items(split="finetune", theme=theme)[0]
        image = corpus.load_images([item], 64)[0]
        out.append(Sample(f"{theme}-{item.path.stem}", image,
                          f"{item.caption} ({corpus.manifest()['themes'][theme]['package']}, see the corpus NOTICE)"))
    import skimage.data

    for name, credit in (("chelsea", "Chelsea the cat, Stefan van der Walt, CC0 (scikit-image)"),
                         ("coffee", "coffee cup, Rachel Michetti, CC0 (scikit-image)")):
        array = np.ascontiguousarray(getattr(skimage.data, name)())
        out.append(Sample(name, torch.from_numpy(array).permute(2, 0, 1).float() / 255, credit))
    return out


def difference(clean: torch.Tensor, protected: torch.Tensor, budget: float) -> torch.Tensor:
    """|change| scaled so that the full budget is white: where and how much was changed."""
    return ((protected - clean).abs() * 255 / max(budget, 1e-6)).clamp(0, 1)


@torch.no_grad()
def model_view(bundle: ModelBundle, images: list[torch.Tensor], seed: int, strength: float = 0.5) -> dict:
    """What the model makes of each image at its own resolution: the VAE's reconstruction and an
    img2img pass (SDEdit at `strength`, the model's generic prompt), same seed for every image set."""
    views = torch.stack([fit_view(x, bundle.image_size) for x in images]).to(bundle.device)
    prompt = bundle.defaults.get("generic_prompt", "a painting")
    recon = bundle.decode(bundle.encode(views)).float().cpu()
    edited = img2img(bundle, views, [prompt] * len(views), strength, torch.Generator("cpu").manual_seed(seed)).cpu()
    return {"reconstruction": recon, "img2img": edited}
