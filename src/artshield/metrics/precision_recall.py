"""Precision and recall of generated images against real ones (Kynkaanniemi et al., NeurIPS 2019).

Each set's manifold is the union of balls around its feature vectors, each ball reaching that
point's k-th nearest neighbour in its own set. Precision: the fraction of generated samples inside
the real manifold (are they realistic?); recall: the fraction of real samples inside the generated
manifold (is the variety covered?). k = 3 as in the paper; features are the judge's.
"""
from __future__ import annotations

import numpy as np


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, min(k, len(x) - 1)]     # column 0 is the point itself


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    d = np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    return (d <= radii[None, :]).any(axis=1)


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if len(real) < 2 or len(generated) < 2:
        raise ValueError("precision/recall needs at least two samples on each side")
    precision = float(_inside(generated, real, _radii(real, k)).mean())
    recall = float(_inside(real, generated, _radii(generated, k)).mean())
    return precision, recall
