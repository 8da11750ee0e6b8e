"""The generate-and-filter extraction attack (Carlini et al., USENIX Security 2023).

For each caption: N generations with fixed seeds; the pairwise tiled L2 distances between them; a
graph with an edge wherever two generations are within `threshold`; the caption is flagged when
the graph holds a clique of at least `min_clique` generations (the paper: 10 of 500). A model that
memorised the caption's training image emits it again and again, so its generations collapse onto
one picture. The flagged caption's representative is the clique member closest on average to the
others. Given the training images, it is matched to its nearest one; within `threshold` of it, the
generation is an extraction in the paper's (l2, delta) sense.

Calibration: delta = 0.15 was set for 512x512 photographs. Small icons on a white background are
much closer to each other: on mini's training set, half of the images have a *different* training
image within 0.13. `calibrate` replaces delta by a low quantile (default 5 %) of the distance from
each training image to its nearest distinct one, computed separately for the tiled distance (the
clique edges) and the plain one (the match): "within delta" then means closer than 95 % of
distinct training images are to each other.

Clique search: the exact maximum clique is NP-hard; this uses a greedy search started from every
one of the best-connected vertices, which returns a clique (never a non-clique), so a flag is
always backed by a real clique and the reported size is a lower bound of the maximum.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..generate import generate
from ..models import ModelBundle
from ..options import POSITIVE, SEED, Limit, Overridable
from .base import register
from .distance import pairwise_tiled_l2


@dataclass
class ExtractConfig(Overridable):
    generations: int = 500          # N per caption (the paper's)
    threshold: float | str = 0.15   # delta, on the normalised L2 with pixels in [0, 1]; "auto": calibrate
                                    # on the training images (both deltas, see calibrate)
    match_threshold: float | None = None   # delta for the match to training images; None: threshold
    min_clique: int = 10            # the paper's 10 of 500
    grid: int = 4                   # tiles per side: 16 tiles, 128x128 each at 512x512
    starts: int = 32                # greedy clique searches, from the highest-degree vertices
    seed: int = 0
    batch_size: int = 64
    sampling_steps: int | None = None   # None: the model's
    guidance: float | None = None       # None: the model's

    limits = {"generations": Limit(2, 100_000), "threshold": POSITIVE, "match_threshold": POSITIVE,
              "min_clique": Limit(2, 100_000), "grid": Limit(1, 64), "starts": Limit(1, 100_000), "seed": SEED,
              "batch_size": Limit(1, 4096), "sampling_steps": Limit(1, 1000), "guidance": Limit(0, 100)}

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.threshold, str) and self.threshold != "auto":
            raise ValueError(f"threshold must be a positive number or 'auto', not {self.threshold!r}")
        if self.min_clique > self.generations:
            raise ValueError(f"min_clique ({self.min_clique}) cannot exceed generations ({self.generations}): "
                             "no prompt could ever be flagged")

    def calibrated(self, training: torch.Tensor | None) -> ExtractConfig:
        """This config with threshold "auto" replaced by both deltas calibrated on `training`."""
        if self.threshold != "auto":
            return self
        if training is None:
            raise ValueError("threshold 'auto' needs the training images")
        tiled, plain = calibrate(training, self.grid)
        return replace(self, threshold=tiled, match_threshold=plain)


@register("extract")
class Extract:
    """The generate-and-filter attack as a method: a record per prompt, and the representative
    generation of each flagged prompt."""

    Config = ExtractConfig

    def __init__(self, bundle: ModelBundle, config: ExtractConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()

    def total_steps(self, n_prompts: int) -> int:
        return n_prompts * self.config.generations

    def run(self, prompts: list[str], generator=None, progress=None,
            training: torch.Tensor | None = None) -> tuple[list[dict], dict[int, torch.Tensor]]:
        """Generation i of every prompt uses seed config.seed + i (the generate contract), so
        `generator` is not used. `training`: the training images, at the generations' size, to
        match flagged generations against."""
        c = self.config.calibrated(training)
        return extraction_attack(self.bundle, prompts, c, training=training, steps=c.sampling_steps,
                                 guidance=c.guidance, progress=progress)


def largest_clique(adjacent: np.ndarray, starts: int = 32) -> list[int]:
    """A large clique of an undirected graph (boolean adjacency, no self loops needed): greedy growth
    from each of the `starts` highest-degree vertices, always adding the candidate with the most
    neighbours among the remaining candidates. Returns vertex indices, sorted."""
    adj = np.asarray(adjacent, dtype=bool).copy()
    np.fill_diagonal(adj, False)
    n = len(adj)
    if n == 0:
        return []
    degree = adj.sum(1)
    best: list[int] = [int(np.argmax(degree))]
    for v in np.argsort(-degree, kind="stable")[:starts]:
        if degree[v] + 1 <= len(best):
            break                                    # no clique through v can be larger
        clique = [int(v)]
        candidates = adj[v].copy()
        while candidates.any():
            idx = np.flatnonzero(candidates)
            links = adj[np.ix_(idx, idx)].sum(1)
            u = int(idx[np.argmax(links)])
            clique.append(u)
            candidates &= adj[u]
        if len(clique) > len(best):
            best = clique
    return sorted(best)


def filter_generations(images: torch.Tensor, config: ExtractConfig) -> dict:
    """The filter on one caption's generations: clique, flag, representative, and timing."""
    start = time.process_time()
    d = pairwise_tiled_l2(images, grid=config.grid).numpy()
    clique = largest_clique(d <= config.threshold, config.starts)
    sub = d[np.ix_(clique, clique)]
    rep = clique[int(np.argmin(sub.mean(1)))] if len(clique) > 1 else clique[0]
    off = d[~np.eye(len(d), dtype=bool)]
    return {"clique_size": len(clique), "flagged": len(clique) >= config.min_clique, "representative": rep,
            "clique_mean_distance": float(sub[~np.eye(len(clique), dtype=bool)].mean()) if len(clique) > 1 else 0.0,
            "median_pair_distance": float(np.median(off)) if off.size else 0.0,
            "filter_cpu_seconds": round(time.process_time() - start, 4), "clique": clique}


def nearest(image: torch.Tensor, training: torch.Tensor, grid: int) -> tuple[int, float, float]:
    """(index, normalised L2, tiled L2) of the training image nearest to `image` (tiled L2)."""
    tiled = pairwise_tiled_l2(image[None], training, grid=grid)[0]
    i = int(torch.argmin(tiled))
    plain = float((image - training[i]).pow(2).mean().sqrt())
    return i, plain, float(tiled[i])


def extraction_attack(bundle: ModelBundle, prompts: list[str], config: ExtractConfig | None = None,
                      training: torch.Tensor | None = None, steps: int | None = None, guidance: float | None = None,
                      progress=None, mitigate=None) -> tuple[list[dict], dict[int, torch.Tensor]]:
    """Per prompt: the filter's record (plus the nearest training image when `training` is given,
    same size as the generations); and the representative generation of each flagged prompt.
    `mitigate`: generate with Wen et al.'s mitigation (a mitigate.MitigateConfig), to test it; the
    record then says how many generations it adjusted. With `training`, each record also says
    whether the prompt gave a near copy (`near_copy`: a looser rule than the match delta)."""
    cfg = config or ExtractConfig()
    records, flagged_images = [], {}
    alone = isolation(training) if training is not None else None
    for k, prompt in enumerate(prompts):
        t0 = time.time()
        adjusted: list[dict] = []
        images = generate(bundle, [prompt] * cfg.generations, seed=cfg.seed, steps=steps, guidance=guidance,
                          batch_size=cfg.batch_size, progress=progress, mitigate=mitigate, records=adjusted)
        rec = {"prompt": prompt, **filter_generations(images, cfg)}
        if mitigate is not None:
            rec["mitigation"] = {"adjusted": sum(r["adjusted"] for r in adjusted),
                                 "reached_target": sum(r["reached_target"] for r in adjusted),
                                 "magnitude_before": round(float(np.mean([r["magnitude_before"] for r in adjusted])), 5),
                                 "magnitude_after": round(float(np.mean([r["magnitude_after"] for r in adjusted])), 5)}
        rec["generation_seconds"] = round(time.time() - t0 - rec["filter_cpu_seconds"], 3)
        rep = images[rec["representative"]]
        if training is not None:
            idx, plain, tiled = nearest(rep, training, cfg.grid)
            rec.update({"nearest_training": idx, "nearest_l2": round(plain, 4), "nearest_tiled_l2": round(tiled, 4),
                        "extracted": bool(rec["flagged"] and plain <= (cfg.match_threshold or cfg.threshold))})
            rec["near_copy"] = near_copy(rec, alone)
        if rec["flagged"]:
            flagged_images[k] = rep
        rec["clique"] = rec["clique"][:cfg.min_clique * 2]       # keep the record short
        records.append(rec)
    return records, flagged_images


def nearest_distinct(training: torch.Tensor, grid: int = 1) -> np.ndarray:
    """Each training image's tiled L2 at `grid` to its nearest distinct training image: itself and
    exact copies of it (distance 0) are skipped; inf when it has no distinct other."""
    d = pairwise_tiled_l2(training, grid=grid).numpy().astype(np.float64)
    d[d < 1e-6] = np.inf                              # itself, and exact copies of it
    return d.min(1)


def isolation(training: torch.Tensor) -> np.ndarray:
    """Each training image's normalised L2 (as `nearest` measures it) to its nearest distinct one."""
    return nearest_distinct(training, grid=1)


def near_copy(record: dict, alone: np.ndarray) -> bool:
    """A looser copy rule than the attack's delta, for a record of `extraction_attack` with training
    images: the prompt is flagged (its generations agree) and its representative lies closer to its
    nearest training image than that image lies to any other training image (`alone`, from
    `isolation`). A copy made slightly noisier passes under the strict delta but not under this."""
    return bool(record["flagged"] and record["nearest_l2"] < alone[record["nearest_training"]])


def calibrate(training: torch.Tensor, grid: int = 4, quantile: float = 0.05) -> tuple[float, float]:
    """(tiled delta, plain delta): the `quantile` of each training image's distance to its nearest
    distinct training image (exact copies, distance 0, are skipped)."""
    if not 0 < quantile < 1 or len(training) < 3:
        raise ValueError("calibration needs a quantile in (0, 1) and at least 3 training images")
    out = []
    for g in (grid, 1):
        m = nearest_distinct(training, g)
        out.append(float(np.quantile(m[np.isfinite(m)], quantile)))
    return out[0], out[1]


def precision_recall(predicted, truth) -> dict:
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    tp = int((predicted & truth).sum())
    return {"precision": round(tp / predicted.sum(), 4) if predicted.any() else None,
            "recall": round(tp / truth.sum(), 4) if truth.any() else None,
            "flagged": int(predicted.sum()), "true_positives": tp, "positives": int(truth.sum())}
