"""Style judges: one call shape for every model that can say whether an image is in an artist's style.

A judge embeds images (`embed`: (N, 3, H, W) in [0, 1] -> (N, D) unit vectors) and says what it sees
(`sees`: input size and features). Judgement is by prototypes (`Prototypes`): each class (the artist,
each other style) is the mean of its images' embeddings, and an image goes to the class of highest
CSLS score (cross-domain similarity local scaling, Conneau et al. 2018):

    CSLS(x, c) = 2 cos(x, c) - r(c),   r(c) = mean cosine of c to its k nearest images of the other classes

The r(c) term takes away a prototype's "hubness": a class mean that lies near many images of other
styles (a bland or average style) would otherwise collect them all. (CSLS's second term, r(x), is
the same for every class and does not change the label.) Only the classes' own images, fixed
before judging, enter r, so one image's label never depends on the other images judged with it. (A 2026 study of CSD found that raw cosine could not separate an artist from the others
for 23 of 91 artists, and that a CSLS readout brought this down to 4.)

Members (`--judge`):
  icon   mini's icon judge (metrics/judge.py): a small ResNet trained on the corpus; it sees 32 x 32
         pixels and its features were trained to name icon themes. Useless outside icons.
  clip   a CLIP vision tower from a local transformers folder (config.json and model.safetensors,
         e.g. openai/clip-vit-large-patch14 saved with save_pretrained, or a hub snapshot of it);
         it sees the image resized and centre-cropped to the folder's crop size (224 for ViT-L/14),
         and its projected image embedding. open_clip checkpoints need torchvision, which this
         project does not use: load a transformers-format copy instead (many open_clip hub repos
         ship one).
  csd    CSD (Somepalli et al. 2024, "Measuring Style Similarity in Diffusion Models"): the CLIP
         ViT-L/14 vision tower fine-tuned for style, with a style projection (1024 -> 768). From a
         local safetensors file: the hub repository yuxi-liu-wired/CSD holds model.safetensors (the
         authors' checkpoint, learn2phoenix/CSD, is a pickle: never loaded here). Keys may be in
         OpenAI's CLIP layout (backbone.conv1.weight, backbone.transformer.resblocks.N...) or in
         transformers' (backbone.vision_model...); both are read. CSD's own caveat applies: its
         released weights score below plain CLIP ViT-L on its paper's own retrieval table
         (learn2phoenix/CSD issue 14).
Nothing is downloaded at run time: a judge that is not on disk is one error naming the option and
what to download.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArtshieldError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class StyleJudge(ABC):
    """The call shape: `embed(images)` -> unit rows; `name`; `image_size` (what a generation is
    resized to); `sees` (one sentence for pages and reports). A member defines `features`."""

    name = "judge"
    image_size = 32
    sees = ""

    @abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw features of (N, 3, H, W) images in [0, 1] (FID uses them; `embed` normalises them)."""

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
            raise ValueError(f"judges take (N, 3, H, W) images, not {tuple(images.shape)}")
        images = images[:, :3] if images.shape[1] == 4 else images.expand(-1, 3, -1, -1)
        out = [self.features(chunk.float().clamp(0, 1)) for chunk in images.split(batch_size)]
        return F.normalize(torch.cat(out).float(), dim=1)

    def describe(self) -> dict:
        return {"judge": self.name, "input_size": self.image_size, "sees": self.sees}


class IconJudge(StyleJudge):
    name = "icon"
    sees = ("32 x 32 pixels (every image is area-resampled to that), through features trained to name "
            "mini's icon themes; it cannot see brushwork, texture or anything finer than a 32-pixel grid")

    def __init__(self, folder: str | None = None):
        from .judge import JUDGE_DIR, Judge

        self.judge = Judge.load(folder or JUDGE_DIR)
        self.image_size = self.judge.image_size

    def features(self, images):
        return self.judge.features(images)


def _resize_crop(images: torch.Tensor, size: int, crop: int) -> torch.Tensor:
    """CLIP's preprocessing: the shorter side to `size` (bicubic, antialiased), then a centre crop."""
    h, w = images.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(crop, round(h * s)), max(crop, round(w * s))
    x = F.interpolate(images, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return x[..., top:top + crop, left:left + crop].clamp(0, 1)


class _VisionTower(StyleJudge):
    def __init__(self, model, size: int, crop: int, mean=CLIP_MEAN, std=CLIP_STD):
        self.model = model.eval()
        self.size, self.image_size = size, crop
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def pixels(self, images):
        x = _resize_crop(images.to(self.mean.dtype), self.size, self.image_size)
        return (x - self.mean) / self.std


class ClipJudge(_VisionTower):
    name = "clip"

    def __init__(self, folder: str):
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        path = Path(folder).expanduser()
        if not path.is_dir() or not (path / "config.json").exists():
            raise ArtshieldError("not a transformers CLIP folder (config.json and model.safetensors); save one "
                                 "with CLIPModel.save_pretrained or download openai/clip-vit-large-patch14",
                                 param="judge_path", value=folder)
        if not list(path.glob("*.safetensors")):
            raise ArtshieldError("holds no .safetensors weights (pickled .bin weights are never loaded)",
                                 param="judge_path", value=folder)
        try:
            config = CLIPVisionConfig.from_pretrained(str(path))
            # a whole CLIPModel folder (as the hub ships CLIP) keeps the projection's width at its top level
            top = json.loads((path / "config.json").read_text())
            if "projection_dim" in top and "vision_config" in top:
                config.projection_dim = top["projection_dim"]
            model = CLIPVisionModelWithProjection.from_pretrained(str(path), config=config, use_safetensors=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ArtshieldError(f"cannot load a CLIP vision tower: {str(e).splitlines()[0]}",
                                 param="judge_path", value=folder) from None
        pre = json.loads((path / "preprocessor_config.json").read_text()) \
            if (path / "preprocessor_config.json").exists() else {}
        size = pre.get("size", config.image_size)
        size = size.get("shortest_edge", config.image_size) if isinstance(size, dict) else size
        crop = pre.get("crop_size", config.image_size)
        crop = crop.get("height", config.image_size) if isinstance(crop, dict) else crop
        super().__init__(model, int(size), int(crop), pre.get("image_mean", CLIP_MEAN), pre.get("image_std", CLIP_STD))
        self.sees = (f"the image resized to {self.size} px on its shorter side and centre-cropped to "
                     f"{self.image_size} x {self.image_size}, through CLIP's projected image embedding "
                     f"({config.projection_dim} numbers): trained to match captions, so it mixes what is "
                     f"drawn with how it is drawn")

    def features(self, images):
        return self.model(pixel_values=self.pixels(images)).image_embeds


def openai_to_transformers(tensors: dict[str, torch.Tensor], prefix: str = "") -> tuple[dict, dict]:
    """OpenAI CLIP's visual tower (conv1, class_embedding, transformer.resblocks.N.attn.in_proj_weight,
    ...; torch's MultiheadAttention layout) -> (CLIPVisionModel state dict, CLIPVisionConfig kwargs)."""
    t = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    width, _, patch, _ = t["conv1.weight"].shape
    positions = t["positional_embedding"].shape[0]
    layers = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("transformer.resblocks."))
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise ValueError(f"{positions} positions is not a square grid plus the class token")
    out = {"vision_model.embeddings.patch_embedding.weight": t["conv1.weight"],
           "vision_model.embeddings.class_embedding": t["class_embedding"],
           "vision_model.embeddings.position_embedding.weight": t["positional_embedding"]}
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"vision_model.{ours}.{p}"] = t[f"{theirs}.{p}"]
    for i in range(layers):
        a, b = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for p in ("weight", "bias"):
            q, k, v = t[a + f"attn.in_proj_{p}"].chunk(3, dim=0)
            out.update({b + f"self_attn.q_proj.{p}": q, b + f"self_attn.k_proj.{p}": k,
                        b + f"self_attn.v_proj.{p}": v, b + f"self_attn.out_proj.{p}": t[a + f"attn.out_proj.{p}"],
                        b + f"layer_norm1.{p}": t[a + f"ln_1.{p}"], b + f"layer_norm2.{p}": t[a + f"ln_2.{p}"],
                        b + f"mlp.fc1.{p}": t[a + f"mlp.c_fc.{p}"], b + f"mlp.fc2.{p}": t[a + f"mlp.c_proj.{p}"]})
    config = {"hidden_size": width, "intermediate_size": t["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
              "num_hidden_layers": layers, "num_attention_heads": width // 64,    # CLIP's heads are 64 wide
              "patch_size": patch, "image_size": patch * grid, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    return {k: v.contiguous() for k, v in out.items()}, config


class CsdJudge(_VisionTower):
    name = "csd"

    def __init__(self, file: str, heads: int | None = None):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import CLIPVisionConfig, CLIPVisionModel

        path = Path(file).expanduser()
        if path.is_dir():
            path = path / "model.safetensors"
        if path.suffix != ".safetensors" or not path.is_file():
            raise ArtshieldError("needs CSD's weights as a .safetensors file (model.safetensors from the hub "
                                 "repository yuxi-liu-wired/CSD); pickles (.pth) are never loaded",
                                 param="judge_path", value=file)
        try:
            t = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ArtshieldError(f"not a readable safetensors file ({e})", param="judge_path", value=file) from None
        prefix = next((p for p in ("module.backbone.", "backbone.") if p + "conv1.weight" in t or
                       p + "vision_model.embeddings.patch_embedding.weight" in t), None)
        style_key = next((k for k in ("last_layer_style", "module.last_layer_style") if k in t), None)
        if prefix is None or style_key is None:
            raise ArtshieldError("is not a CSD checkpoint (no backbone.* vision tower and last_layer_style)",
                                 param="judge_path", value=file)
        try:
            if prefix + "conv1.weight" in t:
                state, kwargs = openai_to_transformers(t, prefix)
            else:
                state = {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}
                w = state["vision_model.embeddings.patch_embedding.weight"]
                n = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("vision_model.encoder.layers."))
                kwargs = {"hidden_size": w.shape[0], "patch_size": w.shape[-1], "num_hidden_layers": n,
                          "num_attention_heads": w.shape[0] // 64, "hidden_act": "quick_gelu",
                          "intermediate_size": state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                          "image_size": w.shape[-1] * math.isqrt(
                              state["vision_model.embeddings.position_embedding.weight"].shape[0] - 1)}
            if heads:
                kwargs["num_attention_heads"] = heads
            model = CLIPVisionModel(CLIPVisionConfig(**kwargs))
            # transformers 4 names the tower's tensors vision_model.*, transformers 5 without the prefix
            nested = any(k.startswith("vision_model.") for k in model.state_dict())
            state = {("vision_model." if nested else "") + k.removeprefix("vision_model."): v.float()
                     for k, v in state.items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(f"{len(missing)} missing and {len(unexpected)} unexpected tensors")
        except (KeyError, ValueError, RuntimeError) as e:
            raise ArtshieldError(f"CSD's vision tower does not load ({str(e).splitlines()[0]})",
                                 param="judge_path", value=file) from None
        self.style = t[style_key].float()
        if self.style.shape[0] != kwargs["hidden_size"]:
            raise ArtshieldError(f"last_layer_style is {tuple(self.style.shape)}, not ({kwargs['hidden_size']}, D)",
                                 param="judge_path", value=file)
        side = kwargs["image_size"]
        super().__init__(model, side, side)
        self.sees = (f"the image resized to {side} px on its shorter side and centre-cropped to {side} x {side}, "
                     f"through CSD's style projection ({self.style.shape[1]} numbers) of a CLIP ViT tower "
                     f"fine-tuned to match images of one style")

    def features(self, images):
        return self.model(pixel_values=self.pixels(images)).pooler_output @ self.style


JUDGES = {
    "icon": ("mini's icon judge (shipped)", None),
    "clip": ("a transformers CLIP folder", "--judge-path DIR: a folder with config.json and model.safetensors, "
                                          "e.g. openai/clip-vit-large-patch14 (huggingface-cli download ...)"),
    "csd": ("CSD ViT-L (style)", "--judge-path FILE: model.safetensors from the hub repository yuxi-liu-wired/CSD"),
}


def load_judge(name: str = "icon", path: str | None = None) -> StyleJudge:
    """The judge `name` (icon, clip, csd); clip and csd read local weights at `path`."""
    if name not in JUDGES:
        raise ArtshieldError(f"unknown judge (use {', '.join(JUDGES)})", param="judge", value=name)
    if name == "icon":
        return IconJudge(path)
    if not path:
        raise ArtshieldError(f"needs local weights: {JUDGES[name][1]}; nothing is downloaded at run time",
                             param="judge", value=name)
    return ClipJudge(path) if name == "clip" else CsdJudge(path)


class Prototypes:
    """Nearest prototype under CSLS: `classes` maps a name to its images (or embeddings, with
    `embedded=True`); `scores(x)` is (N, classes) CSLS, `predict` the names."""

    def __init__(self, judge: StyleJudge, classes: dict[str, torch.Tensor], k: int = 10, embedded: bool = False):
        if len(classes) < 2:
            raise ValueError("a prototype readout needs at least two classes")
        self.judge, self.names = judge, list(classes)
        emb = {n: (v if embedded else judge.embed(v)).float() for n, v in classes.items()}
        if any(len(v) == 0 for v in emb.values()):
            raise ValueError("every class needs at least one image")
        self.means = F.normalize(torch.stack([v.mean(0) for v in emb.values()]), dim=1)
        hubness = []
        for i, name in enumerate(self.names):
            pool = torch.cat([v for n, v in emb.items() if n != name])      # the other classes' images
            hubness.append((self.means[i] @ pool.T).topk(max(1, min(k, len(pool)))).values.mean())
        self.k, self.hubness = k, torch.stack(hubness)

    def scores_of(self, emb: torch.Tensor) -> torch.Tensor:
        return 2 * emb @ self.means.T - self.hubness[None]

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores_of(self.judge.embed(images))

    def predict(self, images: torch.Tensor) -> list[str]:
        return [self.names[i] for i in self.scores(images).argmax(1)]


class Classifier:
    """What the bench's Runner needs of a judge (predict, features, image_size, describe): a style
    judge and the prototypes of every class (a name -> its images); predict names the CSLS-nearest."""

    def __init__(self, judge: StyleJudge, classes: dict[str, torch.Tensor], weights: str | None = None):
        self.judge, self.image_size, self.weights = judge, judge.image_size, weights
        self.prototypes = Prototypes(judge, classes)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return torch.cat([self.judge.features(chunk.float().clamp(0, 1)) for chunk in images.split(batch_size)]).float()

    def predict(self, images: torch.Tensor) -> tuple[list[str], list[str]]:
        styles = self.prototypes.predict(images)
        return styles, [""] * len(styles)

    def describe(self) -> dict:
        return self.judge.describe()


def squares(images, side: int) -> torch.Tensor:
    """Images of any size and channel count (a list or a batch) as one (N, 3, side, side) batch in [0, 1]."""
    return torch.stack([F.interpolate(x.float()[None].expand(-1, 3, -1, -1) if x.shape[0] == 1 else x.float()[None, :3],
                                      size=(side, side), mode="bicubic", antialias=True, align_corners=False
                                      ).clamp(0, 1)[0] for x in images])


def decoys(images: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Style-free images made from the artist's own, four per image: each shrunk to 4 x 4 and to 3 x 3
    colour blobs and blown up again, and two draws of smooth colour noise around the artist's mean
    colour. A judge that calls these the artist's is reading colour, not style."""
    h, w = images.shape[-2:]
    x = images.float()
    blobs = torch.cat([F.interpolate(F.interpolate(x, size=(g, g), mode="area"), size=(h, w), mode="bicubic",
                                     align_corners=False) for g in (4, 3)]).clamp(0, 1)
    gen = torch.Generator().manual_seed(seed)
    mean = x.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    noise = F.interpolate(torch.rand(2 * len(x), 3, 6, 6, generator=gen), size=(h, w), mode="bicubic",
                          align_corners=False)
    return {"colour blobs": blobs, "smooth colour noise": (mean + 0.5 * (noise - 0.5)).clamp(0, 1)}


MIN_ARTIST_IMAGES = 10
MIN_AUC = 0.8


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # at k = 0 and k = n the bounds are exactly 0 and 1 (in floating point c - h and c + h miss them by an ulp)
    return (0.0 if k == 0 else max(0.0, c - h)), (1.0 if k == n else min(1.0, c + h))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _auc_interval(pos: np.ndarray, neg: np.ndarray, z: float = 1.959964) -> tuple[float, float, float]:
    """AUC with Hanley and McNeil's (1982) standard error; it does not collapse to zero width when the
    sample happens to separate perfectly, as a bootstrap of few images would."""
    a = _auc(pos, neg)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    m, n = len(pos), len(neg)
    var = (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)
    # at a = 1 that variance is 0: use the variance of the next possible value, one pair out of order
    if var <= 0:
        a1 = 1 - 1 / (m * n)
        q1, q2 = a1 / (2 - a1), 2 * a1 * a1 / (1 + a1)
        var = (a1 * (1 - a1) + (m - 1) * (q1 - a1 * a1) + (n - 1) * (q2 - a1 * a1)) / (m * n)
    h = z * math.sqrt(max(var, 0.0))
    return a, max(0.0, a - h), min(1.0, a + h)


def rule_problems(auc: tuple[float, float, float], tpr: tuple[float, float], false: dict) -> list[str]:
    """Why a judge cannot tell (none: it can), from the AUC (value, low, high), the hit rate's Wilson
    interval and the false-positive records of `discrimination` ({"style"|"decoy": {"rate", "images",
    "interval"}}): the AUC's lower bound under MIN_AUC, or a false-positive rate whose upper bound is
    above a third of the hit rate's lower bound."""
    value, low, high = auc
    limit = tpr[0] / 3
    problems = []
    if low < MIN_AUC:
        problems.append(f"AUC {value:.2f} [{low:.2f}, {high:.2f}] has its lower bound under {MIN_AUC}")
    for kind, what in (("style", "other styles"), ("decoy", "colour-only decoys of the artist's own images")):
        f = false[kind]
        if f["images"] and f["interval"][1] > limit:
            problems.append(f"it calls {what} the artist's in {f['rate']:.0%} of cases (up to {f['interval'][1]:.0%}), "
                            f"more than a third of its hit rate on the artist's own ({tpr[0]:.0%} at least)")
    return problems


def discrimination(judge: StyleJudge, artist: torch.Tensor, others: dict[str, torch.Tensor], folds: int = 5,
                   k: int = 10, seed: int = 0) -> dict:
    """Can `judge` tell the artist's style apart, before it judges any generation? Cross-validated
    on images it has not built its prototypes from: the artist's images against the other styles'
    (`others`) and against decoys made from the artist's own (colour blobs, smooth noise).

    Each fold's images are scored by prototypes built from the other folds (of every class). Reported:
    AUC of the CSLS margin (artist minus the best other class; Hanley-McNeil 95 % interval); the
    rate at which the readout labels the artist's images as the artist (TPR) and other styles' and
    decoys as the artist (FPR), Wilson 95 % intervals. The judge *can tell* when:
      - it has at least MIN_ARTIST_IMAGES of the artist's images (fewer leave every interval too wide);
      - AUC's lower bound >= MIN_AUC, and
      - each FPR's upper bound <= a third of TPR's lower bound. Why a third: a judge with true-positive
        rate t and false-positive rate f reads a mimicry share m as f + (t - f) m, so a protection that
        truly quarters mimicry (m from 1 to 1/4) is measured under the bench's bar of 0.5 only when
        f <= t / 3; a judge above that line cannot show that any protection works, whatever the truth.
    """
    n = len(artist)
    if n < MIN_ARTIST_IMAGES:
        return {"can_tell": False, "why": f"too few of the artist's images to test the judge: {n}, needs at least "
                                          f"{MIN_ARTIST_IMAGES}", "artist_images": n, **judge.describe()}
    if not others:
        raise ValueError("the discrimination check needs images of other styles")
    emb = {"artist": judge.embed(artist)}
    for name, images in others.items():
        emb[f"style:{name}"] = judge.embed(images)
    for name, images in decoys(artist, seed).items():
        emb[f"decoy:{name}"] = judge.embed(images)
    rng = np.random.default_rng(seed)
    fold_of = {c: rng.permutation(len(v)) % folds for c, v in emb.items()}
    margin = {c: np.zeros(len(v)) for c, v in emb.items()}
    label = {c: np.zeros(len(v), dtype=bool) for c, v in emb.items()}
    for f in range(folds):
        train = {c: v[torch.from_numpy(fold_of[c] != f)] for c, v in emb.items() if not c.startswith("decoy:")}
        train = {c: v for c, v in train.items() if len(v)}
        if "artist" not in train or len(train) < 2:
            continue
        proto = Prototypes(judge, train, k=k, embedded=True)
        a = proto.names.index("artist")
        for c, v in emb.items():
            idx = np.flatnonzero(fold_of[c] == f)
            if not len(idx):
                continue
            s = proto.scores_of(v[torch.from_numpy(idx)])
            rest = torch.cat([s[:, :a], s[:, a + 1:]], 1).max(1).values
            margin[c][idx] = (s[:, a] - rest).numpy()
            label[c][idx] = (s.argmax(1) == a).numpy()
    pos = margin["artist"]
    neg = np.concatenate([m for c, m in margin.items() if c != "artist"])
    auc, low, high = _auc_interval(pos, neg)
    tp = int(label["artist"].sum())
    tpr = _wilson(tp, n)
    false = {}
    for kind in ("style", "decoy"):
        hits = [label[c] for c in label if c.startswith(kind + ":")]
        k_, n_ = int(sum(h.sum() for h in hits)), int(sum(len(h) for h in hits))
        false[kind] = {"rate": round(k_ / n_, 4) if n_ else None, "images": n_,
                       "interval": [round(x, 4) for x in _wilson(k_, n_)]}
    problems = rule_problems((auc, low, high), tpr, false)
    return {"can_tell": not problems, "why": "; ".join(problems) or "it tells the artist's images from the others",
            "artist_images": n, "auc": round(auc, 4), "auc_interval": [round(low, 4), round(high, 4)],
            "tpr": round(tp / n, 4), "tpr_interval": [round(x, 4) for x in tpr],
            "fpr_other_styles": false["style"], "fpr_decoys": false["decoy"],
            "rule": f"at least {MIN_ARTIST_IMAGES} images; AUC lower bound >= {MIN_AUC}; every false-positive "
                    f"rate's upper bound <= a third of the hit rate's lower bound",
            "folds": folds, "k": k, **judge.describe()}
