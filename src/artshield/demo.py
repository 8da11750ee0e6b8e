"""The demo: protect sample artworks and show what the protection does, as pictures and a page.

Samples: one icon of each held-out "artist" of the corpus (themes mini never saw) and two real
photographs from scikit-image's bundled CC0 images (Chelsea the cat by Stefan van der Walt, a coffee
cup by Rachel Michetti). The photos are full size (451x300, 600x400): the perturbation is computed
and written at full resolution while the model sees a resized view.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import corpus, report
from .metrics.image import amplified_change, visibility
from .models import ModelBundle
from .models.views import model_views
from .protect import protect
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


@torch.no_grad()
def model_view(bundle: ModelBundle, images: list[torch.Tensor], seed: int, strength: float = 0.5) -> dict:
    """What the model makes of each image at its own resolution: the VAE's reconstruction and an
    img2img pass (SDEdit at `strength`, the model's generic prompt), same seed for every image set."""
    views = model_views(images, bundle.image_size).to(bundle.device)
    prompt = bundle.conventions.generic_prompt
    recon = bundle.decode(bundle.encode(views)).float().cpu()
    edited = img2img(bundle, views, [prompt] * len(views), strength, torch.Generator("cpu").manual_seed(seed)).cpu()
    return {"reconstruction": recon, "img2img": edited}


@dataclass
class Demo:
    """What the demo made: files to write (relative path -> (3, H, W) image), one record per sample,
    the method's settings, and the page."""

    files: dict[str, torch.Tensor] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    html: str = ""


def run(bundle: ModelBundle, method: str = "advdm", seed: int = 0, progress=None, **options) -> Demo:
    """Protect the samples with `method` (options: its config, e.g. budget, steps), and lay out
    original, protected, amplified difference and the model's img2img of both, with the figures."""
    samples_ = samples()
    images = [s.image for s in samples_]
    result = protect(bundle, images, method=method, seed=seed, progress=progress, **options)
    protected = result.protected(images)
    budget = result.config["budget"]
    views = {"clean": model_view(bundle, images, seed), "protected": model_view(bundle, protected, seed)}
    demo = Demo(config=result.config, extra=result.extra)
    pages = []
    amplify = 255 / max(budget, 1e-6)
    for i, (s, x, p) in enumerate(zip(samples_, images, protected)):
        files = {"original": f"original/{s.name}.png", "protected": f"protected/{s.name}.png",
                 "difference": f"difference/{s.name}.png"}
        demo.files.update({files["original"]: x, files["protected"]: p,
                           files["difference"]: amplified_change(x, p, budget)})
        for kind in ("clean", "protected"):
            for what, tensors in views[kind].items():
                files[f"{what}_{kind}"] = f"model/{s.name}-{what}-{kind}.png"
                demo.files[files[f"{what}_{kind}"]] = tensors[i]
        obj = result.objective[i]
        rec = {"name": s.name, "credit": s.credit, "size": [x.shape[2], x.shape[1]], "files": files,
               **visibility(p, x), "objective": obj}
        demo.records.append(rec)
        view = views["clean"]["img2img"][i]
        pages.append({**rec,
                      "original": report.figure(files["original"], "original", x, min_tile=256),
                      "protected": report.figure(files["protected"], "protected", p, min_tile=256),
                      "difference": report.figure(files["difference"], f"|change| x{amplify:.0f} (white: the full "
                                                  f"budget)", x, min_tile=256),
                      **{f"{what}_{kind}": report.figure(files[f"{what}_{kind}"], f"{what} of the {kind} view", view)
                         for kind in ("clean", "protected") for what in ("reconstruction", "img2img")}})
    cfg = result.config
    demo.html = report.render("demo.html.j2", title=f"artshield demo: {method} on {bundle.spec}", command=None,
                              method=method, budget=budget, steps=cfg["steps"], seed=seed, model=bundle.spec,
                              image_size=bundle.image_size, objective_name=result.objective[0]["name"],
                              objective_goal=result.objective[0]["goal"], samples=pages, strength=0.5,
                              prompt=bundle.conventions.generic_prompt)
    return demo


def total_steps(bundle: ModelBundle, method: str, **options) -> int:
    """Progress units `run` reports."""
    from .options import make_method

    return make_method("protect", method, bundle, **options).total_steps(len(samples()))
