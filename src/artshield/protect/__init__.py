"""protect: adversarial perturbations that spoil fine-tuning on an artwork.

    from artshield import load_model, protect
    result = protect(load_model("mini"), [image], method="advdm", budget=8, seed=0)
    result.deltas[0], result.objective

Methods (one file each, registered by name, paper defaults in their config dataclasses):
advdm, mist, sds, sds-minus, photoguard, glaze, aspl, ace, metacloak, robust. All run on engine.PGD.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from ..images import as_tensors, like_inputs
from ..models import ModelBundle
from ..models.views import model_views
from ..options import seeded
from . import ace, advdm, aspl, glaze, metacloak, mist, photoguard, robust, sds  # noqa: F401  (registers the methods)
from .base import METHODS, Protection
from .engine import random_deltas

RANDOM_BASELINE_SEED = 7


@dataclass
class ProtectResult:
    method: str
    config: dict
    deltas: list[torch.Tensor]                       # (C, H, W) each, on the 8-bit grid
    objective: list[dict] = field(default_factory=list)  # per image: name, goal, clean, protected, random_noise
    extra: dict = field(default_factory=dict)        # method-specific facts (glaze: target_style)

    def protected(self, images: list) -> list:
        """The protected copies of `images` (the ones protected), of the same kind: PIL images for
        PIL images, numpy arrays for numpy arrays, tensors for tensors."""
        tensors, kinds = as_tensors(images)
        return like_inputs([(x.cpu() + d).clamp(0, 1) for x, d in zip(tensors, self.deltas)], kinds)


def protect(bundle: ModelBundle, images: list[torch.Tensor], method: str = "advdm", seed: int = 0,
            progress: Callable[[int], None] | None = None, score: bool = True, **options) -> ProtectResult:
    """Protect a batch of images: PIL images, numpy arrays or (C, H, W) tensors in [0, 1] (any sizes;
    1 or 3 channels); `result.protected(images)` gives them back protected. Options override the
    method's config (budget, step, steps, prompt, eot, and the method's own). With `score`, the
    method's objective is measured on the clean, the protected and a same-budget random-noise copy
    of each image, with fixed random draws, so the three are comparable."""
    if not images:
        return ProtectResult(method, {}, [])
    images, _ = as_tensors(images)
    prot = METHODS.create(method, bundle, **options)
    deltas = prot.run(images, seeded(None, seed), progress=progress)
    result = ProtectResult(method, _config_dict(prot), deltas)
    if hasattr(prot, "target_style"):
        result.extra["target_style"] = prot.target_style
    if score:
        noise = random_deltas(images, prot.config.budget, torch.Generator("cpu").manual_seed(RANDOM_BASELINE_SEED + seed))
        rows = {name: model_views(_applied(images, d), bundle.image_size).to(bundle.device) for name, d in
                (("clean", None), ("protected", deltas), ("random_noise", noise))}
        parts = {name: prot.components(v) for name, v in rows.items()}
        for i in range(len(images)):
            result.objective.append({
                "name": prot.objective_name, "goal": prot.objective_goal,
                **{row: float(parts[row][prot.objective_name][i]) for row in rows},
                "parts": {key: {row: float(parts[row][key][i]) for row in rows}
                          for key in parts["clean"] if key != prot.objective_name},
            })
    return result


def _applied(images: list[torch.Tensor], deltas) -> list[torch.Tensor]:
    if deltas is None:
        return [x.cpu().clamp(0, 1) for x in images]
    return [(x.cpu() + d).clamp(0, 1) for x, d in zip(images, deltas)]


def _config_dict(prot: Protection) -> dict:
    cfg = asdict(prot.config)
    for key, value in list(cfg.items()):
        if isinstance(value, torch.Tensor):
            cfg[key] = f"image {tuple(value.shape)}"
        elif isinstance(value, (list, tuple)) and value and not isinstance(value[0], (str, int, float)):
            cfg[key] = f"{len(value)} images"
        elif isinstance(value, tuple):
            cfg[key] = list(value)
    if cfg.get("prompt") is None:
        cfg["prompt"] = prot.prompt
    if hasattr(prot.config, "rounds"):
        cfg["rounds"] = prot.config.rounds
    if "lr" in cfg and cfg["lr"] is None and hasattr(prot, "lr"):
        cfg["lr"] = prot.lr
    return cfg


__all__ = ["METHODS", "ProtectResult", "Protection", "protect"]
