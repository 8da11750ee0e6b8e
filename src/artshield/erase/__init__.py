"""erase: remove a concept or an artist's style from a model's weights.

    edit = erase(bundle, ["faenza style"], method="esd-x")
    edit.save("out/no-faenza")          # then load_model("out/no-faenza") anywhere

Methods: esd-x, esd-u, esd-x-strict (ESD, Gandikota et al. 2023; trained, minutes) and uce
(closed form on the cross-attention keys and values, seconds). `evaluate` measures an erasure on
a model whose styles and concepts the judge knows (mini).
"""
from __future__ import annotations

from ..models import ModelBundle
from . import esd, uce  # noqa: F401  (registers the methods)
from .base import ERASERS, Edit, EraseConfig, Eraser, is_edit_folder, select_parameters

__all__ = ["ERASERS", "Edit", "EraseConfig", "Eraser", "erase", "is_edit_folder", "make_eraser",
           "select_parameters"]


def make_eraser(method: str, **options) -> Eraser:
    try:
        cls = ERASERS[method]
    except KeyError:
        raise ValueError(f"unknown erasure method {method!r}; known: {', '.join(ERASERS)}") from None
    return cls(cls.Config.with_overrides(**options))


def erase(bundle: ModelBundle, concepts: list[str] | str, method: str = "esd-x", progress=None, **options) -> Edit:
    """Erase `concepts` from a copy of the bundle's UNet; the bundle itself is left as it was."""
    if isinstance(concepts, str):
        concepts = [concepts]
    return make_eraser(method, **options).erase(bundle, list(concepts), progress=progress)
