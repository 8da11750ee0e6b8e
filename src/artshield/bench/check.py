"""Does a protection hold on *my* art? The bench, with the user's own images as the artist.

The corpus judge knows mini's icon themes, not the user's style, so here a generation counts as
mimicking the artist when, in the judge's feature space, it lies nearer to the mean of the
artist's images than to the mean of every style the judge knows (the corpus themes): a
nearest-centroid classifier over {the artist} and {the known styles}. The mimic fine-tunes a LoRA
on the images of each condition (clean, protected, protected then purified, and the clean images
through each purifier) captioned with the model's style prompt and a trigger word, and generates
that prompt with distinct seeds; intervals and the verdict come from bench/stats.py as in the
committed bench, with the one prompt counted as one prompt: its generations are near-duplicates,
not independent trials, so the interval comes from training seeds alone. A quick check (one
seed) therefore has no interval and always says "inconclusive"; the standard check's 3 seeds give
one on 2 degrees of freedom.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import corpus
from ..metrics.judge import Judge
from .experiment import TRIGGER, ArtistData, Preset, Runner, analysis, controls, summary, with_row_verdicts

ARTIST = "your-art"


@dataclass(frozen=True)
class Thoroughness:
    seeds: tuple[int, ...]
    generations: int
    lora_steps: int


# quick: minutes on a laptop CPU with mini; standard: the committed bench's power (3 seeds, 128)
LEVELS = {"quick": Thoroughness((0,), 16, 150), "standard": Thoroughness((0, 1, 2), 128, 500)}


class CentroidJudge:
    """The corpus judge's features, classified by the nearest class mean (cosine) among the artist's
    images and every style the judge was trained on."""

    def __init__(self, judge: Judge, artist_images: torch.Tensor, artist: str = ARTIST):
        self.judge, self.image_size = judge, judge.image_size
        known = style_means(judge)
        self.names = [artist, *known]
        means = [self._unit(judge.features(artist_images)).mean(0), *known.values()]
        self.means = torch.nn.functional.normalize(torch.stack(means), dim=1)

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(f.float(), dim=1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(images)

    def predict(self, images: torch.Tensor) -> tuple[list[str], list[str]]:
        nearest = (self._unit(self.features(images)) @ self.means.T).argmax(1)
        styles = [self.names[i] for i in nearest]
        return styles, [""] * len(styles)


_STYLE_MEANS: dict[tuple, dict[str, torch.Tensor]] = {}


def style_means(judge: Judge, per_style: int = 64) -> dict[str, torch.Tensor]:
    """The mean unit feature of each style the judge knows, from its own training images (computed
    once per process)."""
    key = (tuple(judge.styles), per_style)
    if key not in _STYLE_MEANS:
        pool = corpus.items(judge_split="train")
        means = {}
        for style in judge.styles:
            items = [i for i in pool if i.theme == style][:per_style]
            if items:
                f = judge.features(corpus.load_images(items, judge.image_size))
                means[style] = torch.nn.functional.normalize(f.float(), dim=1).mean(0)
        _STYLE_MEANS[key] = means
    return _STYLE_MEANS[key]


def check(bundle, images: list[torch.Tensor], out: str | Path, method: str = "advdm", budget: float = 16.0,
          purifiers: tuple[str, ...] = ("jpeg", "noisy-upscale"), level: str = "quick", lr: float | None = None,
          protect_options: dict | None = None, log=print) -> dict:
    """Run the check into `out` (cells and pictures, as the bench stores them); returns the results
    (summary with intervals and verdict, controls, cells) for bench/report_html.render."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: choose one of {', '.join(LEVELS)}")
    if len(images) < 2:
        raise ValueError("a check needs at least 2 images of the artist")
    how = LEVELS[level]
    caption = bundle.conventions.style_prompt.format(TRIGGER)
    side = max(64, bundle.image_size)            # square copies at (at least) the model's size
    square = [torch.nn.functional.interpolate(x.float()[None].expand(-1, 3, -1, -1) if x.shape[0] == 1 else
                                              x.float()[None, :3], size=(side, side), mode="bicubic", antialias=True,
                                              align_corners=False).clamp(0, 1)[0] for x in images]
    reference = torch.stack(square)
    # one prompt, generated how.generations times: the analysis sees one prompt (its generations are
    # near-duplicates of each other, not independent trials), so only training seeds give an interval
    data = ArtistData(list(square), [caption] * len(square), [caption], reference)
    preset = Preset(artists=[ARTIST], protections=[method], budgets=[budget], purifiers=list(purifiers),
                    mimicry=["lora"], seeds=list(how.seeds), images_per_artist=len(square),
                    prompts_per_artist=1, tuning_prompts=0, generations_per_prompt=how.generations,
                    mimicry_steps={"lora": how.lora_steps}, mimicry_lr={"lora": lr} if lr else {},
                    protect_options={method: dict(protect_options or {})})
    judge = CentroidJudge(Judge.load(), reference)
    runner = Runner(bundle, judge, preset, Path(out), log=log, artists={ARTIST: data})
    records = runner.run()
    return {"command": f"check ({level}): {method} at {budget:g}/255 on {len(images)} image(s)",
            "preset_name": f"check on your art ({level})", "preset": {**preset.__dict__},
            "model": bundle.describe(), "summary": (rows := summary(records, preset)), "analysis": analysis(rows),
            "controls": controls(records, preset.generations_per_prompt),
            "cells": records, "pruned": with_row_verdicts(runner.pruned(), rows), "failed": runner.failed, "in_progress_elsewhere": runner.elsewhere,
            "measure": "nearest class mean in the judge's features: the artist's images vs every known style",
            "seconds": float(np.sum([r.get("seconds", 0) for r in records]))}
