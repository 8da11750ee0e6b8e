"""How good is a model on the icon domain? The figures the other experiments stand on.

- vae_psnr_db: the held-out themes' real images through the VAE (encode, decode), mean PSNR;
  mini never saw these themes, so this is generalisation, not recall.
- judge_real_style_accuracy / judge_real_concept_accuracy: the judge on its real test split,
  which shares no (theme, icon) pair with its training images.
- style_accuracy / concept_accuracy: images generated from captions of the training themes,
  named by the judge; the fraction whose style (concept) is the captioned one.
- domain_fid / domain_kid: judge-feature FID and KID between those generations and the real
  images of the training themes' concept set.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import corpus
from ..generate import generate
from ..io import grid
from ..metrics.distribution import frechet_distance, kernel_distance
from ..metrics.image import psnr_per_image
from ..metrics.judge import Judge
from ..models import ModelBundle


@torch.no_grad()
def vae_psnr(bundle: ModelBundle, images: torch.Tensor, batch_size: int = 64) -> float:
    size = bundle.image_size
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    values = [psnr_per_image(bundle.decode(bundle.encode(chunk)).float().cpu(), chunk)
              for chunk in images.split(batch_size)]
    return float(torch.cat(values).mean())


def generation_prompts(per_theme: int, seed: int) -> list[corpus.Item]:
    """For each training theme, `per_theme` of its concept images, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    chosen = []
    for theme in corpus.themes(heldout=False):
        items = [i for i in corpus.items(split="train", theme=theme) if i.concept]
        order = rng.permutation(len(items))[:per_theme]
        chosen.extend(items[j] for j in sorted(order))
    return chosen


def run(bundle: ModelBundle, judge: Judge, seed: int = 0, per_theme: int = 16, steps: int | None = None,
        guidance: float | None = None, progress=None) -> tuple[dict, torch.Tensor, list[corpus.Item]]:
    """All model-quality figures; also returns the generations and the items they were captioned from."""
    start = time.time()
    heldout = [i for s in ("finetune", "reference") for i in corpus.items(split=s)]
    # loaded at the model's own size where the corpus has it (no resampling round trip)
    vae_db = vae_psnr(bundle, corpus.load_images(heldout, min(bundle.image_size, 64)))

    test = corpus.items(judge_split="test")
    styles, concepts = judge.predict(corpus.load_images(test, 64))
    real_style = float(np.mean([p == i.theme for p, i in zip(styles, test)]))
    with_concept = [(p, i) for p, i in zip(concepts, test) if i.concept]
    real_concept = float(np.mean([p == i.concept for p, i in with_concept]))

    items = generation_prompts(per_theme, seed)
    images = generate(bundle, [i.caption for i in items], seed=seed, steps=steps, guidance=guidance,
                      progress=progress)
    g_styles, g_concepts = judge.predict(images)
    style_hits = [p == i.theme for p, i in zip(g_styles, items)]
    concept_hits = [p == i.concept for p, i in zip(g_concepts, items)]
    per_theme_acc = {t: float(np.mean([h for h, i in zip(style_hits, items) if i.theme == t]))
                     for t in corpus.themes(heldout=False)}

    real_ref = corpus.load_images([i for i in corpus.items(split="train") if i.concept], 64)
    f_gen, f_real = judge.features(images).numpy(), judge.features(real_ref).numpy()
    results = {
        "vae_psnr_db": round(vae_db, 3),
        "judge_real_style_accuracy": round(real_style, 4),
        "judge_real_concept_accuracy": round(real_concept, 4),
        "style_accuracy": round(float(np.mean(style_hits)), 4),
        "concept_accuracy": round(float(np.mean(concept_hits)), 4),
        "domain_fid": round(frechet_distance(f_gen, f_real), 3),
        "domain_kid": round(kernel_distance(f_gen, f_real, seed=seed), 5),
        "style_accuracy_by_theme": {k: round(v, 4) for k, v in per_theme_acc.items()},
        "counts": {"vae_images": len(heldout), "judge_test_images": len(test),
                   "judge_test_concept_images": len(with_concept), "generations": len(items),
                   "fid_reference_images": len(real_ref), "chance_style": round(1 / len(judge.styles), 4),
                   "chance_concept": round(1 / len(judge.concepts), 4)},
        "seconds": round(time.time() - start, 1),
    }
    return results, images, items


def sample_sheet(images: torch.Tensor, items: list[corpus.Item], columns: int = 8) -> tuple[torch.Tensor, list[str]]:
    """One row per training theme, its first `columns` generations; and their captions."""
    rows = []
    for theme in corpus.themes(heldout=False):
        rows.extend([k for k, it in enumerate(items) if it.theme == theme][:columns])
    return grid(images[rows], columns=columns), [items[k].caption for k in rows]


def generations(per_theme: int) -> int:
    return per_theme * len(corpus.themes(heldout=False))


def report(bundle: ModelBundle, seed: int = 0, per_theme: int = 16, steps: int | None = None,
           guidance: float | None = None, progress=None) -> tuple[dict, torch.Tensor]:
    """The figures as results.json holds them, and the sample sheet (samples.png)."""
    figures, images, items = run(bundle, Judge.load(), seed=seed, per_theme=per_theme, steps=steps,
                                 guidance=guidance, progress=progress)
    sheet, captions = sample_sheet(images, items)
    return {"model": bundle.describe(), "seed": seed, "per_theme": per_theme, **figures,
            "samples": {"file": "samples.png", "rows": "training themes in corpus order, 8 captions each",
                        "captions": captions}}, sheet
