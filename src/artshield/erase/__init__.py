"""erase: remove a concept or an artist's style from a model's weights.

    edit = erase(bundle, ["faenza style"], method="esd-x")
    edit.save("out/no-faenza")          # then load_model("out/no-faenza") anywhere

Methods: esd-x, esd-u, esd-x-strict (ESD, Gandikota et al. 2023; trained, minutes), uce (closed
form on the cross-attention keys and values, seconds), rece (uce, then the adversarial embeddings
it leaves, erased too) and advunlearn (ESD's objective on the text encoder, against prompts
optimised to undo it). `evaluate` measures an erasure on
a model whose styles and concepts the judge knows (mini).
"""
from __future__ import annotations

from ..models import ModelBundle
from ..models.weights import Edit
from . import advunlearn, esd, uce  # noqa: F401  (registers the methods)
from .attacks import ATTACKS
from .base import ERASERS, EraseConfig, Eraser, select_parameters

__all__ = ["ATTACKS", "ERASERS", "Edit", "EraseConfig", "Eraser", "erase", "select_parameters"]


def erase(bundle: ModelBundle, concepts: list[str] | str, method: str = "esd-x", progress=None, **options) -> Edit:
    """Erase `concepts` from a copy of the bundle's UNet; the bundle itself is left as it was."""
    if isinstance(concepts, str):
        concepts = [concepts]
    return ERASERS.create(method, bundle, **options).run(list(concepts), progress=progress)
