"""Does a protection hold on *my* art? The bench, with the user's own images as the artist.

1. **Can the judge tell?** Before anything is trained, the style judge (metrics/judges.py: `icon`,
   `clip` or `csd`) must show that it tells the user's images apart from other styles (the user's
   `others`, else the corpus's styles) and from colour-only decoys of the user's own images,
   cross-validated (judges.discrimination). If it cannot (too few images, a judge that sees only
   colour), the check stops there and says so: no cell is run, and no number is shown that would
   read as a verdict.
2. **The bench.** A third of the user's images are held out as the reference set (never trained
   on); the mimic fine-tunes a LoRA on the rest in each condition (clean, protected, protected then
   purified, the clean images through each purifier), captioned with the model's style prompt and a
   trigger word, and generates distinct prompts (the user's, else built-in subjects) with distinct
   seeds. A generation counts as mimicry when the CSLS prototype readout puts it nearer the
   reference set than every other style. Intervals and verdicts come from bench/stats.py, paired
   over training seeds and prompts, as in the committed bench. A quick check (one training seed)
   says "inconclusive: too few samples" (one training run leaves the mimic's seed-to-seed spread
   unmeasured); the standard one has 3 seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..metrics.judges import Classifier, StyleJudge, discrimination, load_judge, squares
from .experiment import (TRIGGER, ArtistData, Preset, Runner, analysis, controls, corpus_styles, summary,
                         with_row_verdicts)

ARTIST = "your-art"


@dataclass(frozen=True)
class Thoroughness:
    seeds: tuple[int, ...]
    prompts: int
    lora_steps: int


# quick: minutes on a laptop CPU with mini, one training seed (no interval); standard: 3 seeds x 32
# distinct prompts, LoRA at the bench's 500 steps (the committed standard run has 5 seeds x 64 x 2)
LEVELS = {"quick": Thoroughness((0,), 16, 150), "standard": Thoroughness((0, 1, 2), 32, 500)}

# varied subjects for a model that is not mini: the mimic must carry the style to things the artist
# may never have drawn, as a mimic's prompts do
SUBJECTS = ["a lighthouse on a cliff", "a cat asleep on a chair", "a city street at night", "a bowl of fruit",
            "a portrait of an old man", "a mountain lake", "a dragon", "a bicycle", "a forest in autumn",
            "a woman reading a book", "a sailing ship", "a cup of coffee", "a castle", "a fox in the snow",
            "a crowded market", "a robot", "a vase of flowers", "a train crossing a bridge", "a child with a kite",
            "an owl", "a desert at sunset", "a violin", "a farmhouse", "a jellyfish", "a pair of boots",
            "a rainy window", "a horse running", "a teapot", "a garden with a fountain", "an astronaut",
            "a cathedral interior", "a bunch of keys"]


def default_prompts(bundle, n: int) -> list[str]:
    """n distinct prompts with the trigger: on a corpus model (mini), icons of the corpus's concepts;
    otherwise the built-in subjects, in the model's style phrasing."""
    style = bundle.conventions.style(TRIGGER)
    if bundle.conventions.corpus:
        from ..metrics.judge import Judge

        return [f"{c} icon, {TRIGGER} style" for c in Judge.load().concepts[:n]]
    return [f"{s}, {style}" for s in (SUBJECTS * (1 + n // len(SUBJECTS)))[:n]]


def check(bundle, images: list[torch.Tensor], out: str | Path, method: str = "advdm", budget: float = 16.0,
          purifiers: tuple[str, ...] = ("jpeg", "noisy-upscale"), level: str = "quick", lr: float | None = None,
          protect_options: dict | None = None, log=print, judge: StyleJudge | None = None,
          others: dict[str, torch.Tensor] | None = None, prompts: list[str] | None = None) -> dict:
    """Run the check into `out` (cells and pictures, as the bench stores them); returns the results
    (the judge's discrimination check, and when it passes the summary with intervals and verdicts,
    controls, cells) for bench/report_html.render."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: choose one of {', '.join(LEVELS)}")
    if len(images) < 2:
        raise ValueError("a check needs at least 2 images of the artist")
    how = LEVELS[level]
    judge = judge or load_judge("icon")
    side = max(64, bundle.image_size)            # square copies at (at least) the model's size
    square = squares(images, side)
    others = {k: squares(v, side) for k, v in others.items()} if others else corpus_styles(side)
    gate = discrimination(judge, square, others)
    base = {"preset_name": f"check on your art ({level})", "model": bundle.describe(), "judge_check": gate,
            "measure": f"CSLS prototype readout of the {judge.name} judge: the held-out third of your images vs "
                       f"{len(others)} other styles"}
    if not gate["can_tell"]:
        log(f"the {judge.name} judge cannot tell this style apart: {gate['why']}")
        return {**base, "command": f"check ({level}): stopped before training", "verdict":
                f"inconclusive: this judge cannot tell this style apart ({gate['why']})",
                "preset": {"purifiers": list(purifiers)}, "summary": [], "controls": [], "cells": [], "pruned": [],
                "failed": [], "in_progress_elsewhere": [], "seconds": 0.0}
    held = set(range(0, len(square), 3))             # a third, never trained on: the reference set
    reference = square[sorted(held)]
    train = [square[i] for i in range(len(square)) if i not in held]
    caption = bundle.conventions.style(TRIGGER) if not bundle.conventions.corpus else f"icon, {TRIGGER} style"
    prompts = list(dict.fromkeys(prompts or default_prompts(bundle, how.prompts)))
    data = ArtistData(train, [caption] * len(train), prompts, reference)
    preset = Preset(artists=[ARTIST], protections=[method], budgets=[budget], purifiers=list(purifiers),
                    mimicry=["lora"], seeds=list(how.seeds), images_per_artist=len(train),
                    prompts_per_artist=len(prompts), tuning_prompts=0, generations_per_prompt=1,
                    mimicry_steps={"lora": how.lora_steps}, mimicry_lr={"lora": lr} if lr else {},
                    protect_options={method: dict(protect_options or {})})
    runner = Runner(bundle, Classifier(judge, {ARTIST: reference, **others}), preset, Path(out), log=log,
                    artists={ARTIST: data})
    records = runner.run()
    rows = summary(records, preset)
    return {**base, "command": f"check ({level}): {method} at {budget:g}/255 on {len(images)} image(s), "
                               f"{len(train)} trained on, {len(reference)} held out, {len(prompts)} prompts",
            "preset": {**preset.__dict__}, "summary": rows, "analysis": analysis(rows),
            "controls": controls(records, preset.generations_per_prompt),
            "cells": records, "pruned": with_row_verdicts(runner.pruned(), rows), "failed": runner.failed,
            "in_progress_elsewhere": runner.elsewhere, "seconds": float(np.sum([r.get("seconds", 0) for r in records]))}
