"""denoiser: a small convolutional network trained to undo one protection (the adaptive attack).

A mimic who knows which protection an artist used can run that protection on images of their own,
then train a denoiser on the pairs (protected in, original out) and put every downloaded artwork
through it before fine-tuning. This is the adaptive attack the evaluations of protections ask for
(Radiya-Dixit et al., "Data Poisoning Won't Save You From Facial Recognition", ICLR 2022: a
defence must be judged against an attacker who adapts to it; Hönig et al., ICLR 2025, on
mimicry protections). The network predicts the perturbation and subtracts it (residual learning,
as DnCNN, Zhang et al. 2017): `depth` 3x3 convolutions of `width` channels with ReLUs between them,
reflect padding, so it takes images of any size; its receptive field is 2 * depth + 1 pixels.

Weights load from safetensors only, with their architecture (width, depth) and what they were
trained against in the file's metadata. `weights` is a file, or the name of one shipped with
artshield under assets/denoisers/ (`robust-16`: trained on mini's robust@16/255 copies of icons of
mini's training themes, never on a held-out artist; `python -m artshield.bench.adaptive`, its
record in docs/results/adaptive/). A denoiser undoes the perturbation at the scale it was trained
at: the shipped one knows 64 px icons protected through mini's 32 px view, not a 2048 px painting
protected through SD's 512 px view; train one for that case with `train_denoiser` (or the same
script on your own model and images).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Purifier, PurifyConfig, register

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "denoisers"
TILE = 512                 # images larger than this a side are denoised in overlapping tiles


class DenoiserNet(torch.nn.Module):
    """x -> x - r(x): r a stack of `depth` 3x3 convolutions (ReLU between them), reflect padding."""

    def __init__(self, width: int = 32, depth: int = 6):
        super().__init__()
        if width < 1 or depth < 2:
            raise ValueError(f"a denoiser needs width >= 1 and depth >= 2, not {width}, {depth}")
        sizes = [3] + [width] * (depth - 1) + [3]
        self.width, self.depth = width, depth
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1, padding_mode="reflect")
                                         for a, b in zip(sizes, sizes[1:]))
        torch.nn.init.zeros_(self.convs[-1].weight)        # starts as the identity
        torch.nn.init.zeros_(self.convs[-1].bias)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.residual(x)

    @property
    def reach(self) -> int:
        """Pixels on each side that influence an output pixel."""
        return self.depth


def train_denoiser(protected: list[torch.Tensor], clean: list[torch.Tensor], steps: int = 3000, lr: float = 1e-3,
                   batch: int = 16, crop: int = 48, width: int = 32, depth: int = 6, seed: int = 0,
                   progress=None) -> tuple[DenoiserNet, list[float]]:
    """Fit a denoiser on pairs of (3, H, W) images in [0, 1]: protected[i] -> clean[i], mean squared
    error on random `crop` px squares (smaller where an image is), flipped at random, Adam with a
    cosine decay. Returns the network (eval mode) and the loss of every step."""
    if not protected or len(protected) != len(clean):
        raise ValueError(f"train_denoiser needs pairs: {len(protected)} protected and {len(clean)} clean images")
    for i, (p, c) in enumerate(zip(protected, clean)):
        if p.shape != c.shape or p.ndim != 3 or p.shape[0] != 3:
            raise ValueError(f"pair {i}: protected {tuple(p.shape)} and clean {tuple(c.shape)} must be the same "
                             "(3, H, W) shape")
    crop = min([crop] + [min(p.shape[1:]) for p in protected])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DenoiserNet(width, depth)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    net.train()
    for _ in range(steps):
        xs, ys = [], []
        for i in torch.randint(len(protected), (batch,), generator=g).tolist():
            h, w = protected[i].shape[1:]
            top = int(torch.randint(h - crop + 1, (1,), generator=g))
            left = int(torch.randint(w - crop + 1, (1,), generator=g))
            x = protected[i][:, top:top + crop, left:left + crop]
            y = clean[i][:, top:top + crop, left:left + crop]
            flips = [d for d, on in ((2, torch.rand(1, generator=g) < 0.5), (1, torch.rand(1, generator=g) < 0.5))
                     if on]
            xs.append(x.flip(flips) if flips else x)
            ys.append(y.flip(flips) if flips else y)
        loss = F.mse_loss(net(torch.stack(xs).float()), torch.stack(ys).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(1)
    return net.eval(), losses


def save_denoiser(net: DenoiserNet, path: str | Path, about: dict | None = None) -> Path:
    """Write the weights (safetensors, atomically) with the architecture and `about` (JSON) as metadata."""
    from ..io import nonfinite, write_safetensors

    path = Path(path)
    tensors = net.state_dict()
    if nonfinite(tensors):
        raise ValueError("the denoiser's training diverged (NaN or infinite weights): nothing was written")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(tensors, path, {"artshield": "denoiser", "width": str(net.width),
                                             "depth": str(net.depth), "about": json.dumps(about or {}, sort_keys=True)})


def resolve(weights: str) -> Path:
    """A shipped denoiser's name (assets/denoisers/NAME.safetensors) or a path to a .safetensors file."""
    shipped = SHIPPED / f"{weights}.safetensors"
    if "/" not in weights and "\\" not in weights and shipped.is_file():
        return shipped
    path = Path(weights)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.safetensors"))) or "none"
        raise ValueError(f"weights {weights}: no such file, and not a shipped denoiser (shipped: {known})")
    if path.suffix != ".safetensors":
        raise ValueError(f"weights {weights}: a denoiser loads from a .safetensors file only")
    return path


def load_denoiser(weights: str | Path) -> tuple[DenoiserNet, dict]:
    """The network in a safetensors file written by save_denoiser, and what its metadata says it was
    trained on. A file of another kind, or with tensors the architecture does not have, is refused."""
    from safetensors import SafetensorError, safe_open

    path = resolve(str(weights))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"weights {path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    if meta.get("artshield") != "denoiser":
        raise ValueError(f"weights {path}: not an artshield denoiser (its metadata does not say so)")
    try:
        net = DenoiserNet(int(meta["width"]), int(meta["depth"]))
        net.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as e:
        raise ValueError(f"weights {path}: its tensors do not fit its stated architecture "
                         f"({str(e).splitlines()[0]})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ValueError(f"weights {path}: holds NaN or infinite values")
    return net.eval(), json.loads(meta.get("about", "{}") or "{}")


@dataclass
class DenoiserConfig(PurifyConfig):
    weights: str = "robust-16"
    sha256: str | None = None          # when given, the weights file must have this digest (a bench binds it)


@register("denoiser")
class Denoiser(Purifier):
    """A learned denoiser (see the module's docstring); deterministic."""

    Config = DenoiserConfig

    def __init__(self, bundle=None, config: DenoiserConfig | None = None):
        super().__init__(bundle, config)
        if self.config.sha256 is not None:
            import hashlib

            path = resolve(self.config.weights)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != self.config.sha256.lower():
                raise ValueError(f"weights {path}: its SHA-256 is {digest[:12]}..., not the {self.config.sha256[:12]}... "
                                 "asked for (the file was retrained or replaced)")
        self.net, self.about = load_denoiser(self.config.weights)

    @torch.no_grad()
    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = image.float().cpu()
        if x.shape[0] == 1:                     # grey: denoised as a grey colour image, read back as grey
            return self.one(x.expand(3, -1, -1), generator).mean(0, keepdim=True)
        h, w = x.shape[1:]
        if min(h, w) < 2:                       # reflect padding needs two pixels a side
            return x
        if max(h, w) <= TILE:
            return self.net(x[None])[0]
        out, m = torch.empty_like(x), self.net.reach
        for top in range(0, h, TILE):
            for left in range(0, w, TILE):
                t0, l0 = max(top - m, 0), max(left - m, 0)
                t1, l1 = min(top + TILE + m, h), min(left + TILE + m, w)
                piece = self.net(x[None, :, t0:t1, l0:l1])[0]
                out[:, top:top + TILE, left:left + TILE] = piece[:, top - t0:top - t0 + min(TILE, h - top),
                                                                 left - l0:left - l0 + min(TILE, w - left)]
        return out
