"""The judge: a small classifier that names the style (theme) and the concept of an icon image.

It is the scale model's stand-in for the CLIP-based style and object classifiers that papers use,
trained on real corpus images only (scripts/train_judge.py); its penultimate features give the
domain FID/KID. Any image size is accepted: inputs are area-resampled to the judge's 32x32.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from ..errors import ArtshieldError

JUDGE_DIR = Path(__file__).resolve().parents[1] / "assets" / "judge"


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class JudgeNet(nn.Module):
    """A ResNet-style network over 32x32 RGB with two heads: style and concept.

    pooling "mean": the last block's channel means. "stats": the means and standard deviations of
    the channels of a middle and the last block, the feature statistics that style transfer
    equates with style (Gatys et al., Huang and Belongie), for a 3x longer feature vector."""

    def __init__(self, n_styles: int, n_concepts: int, width: int, pooling: str = "mean"):
        super().__init__()
        w = width
        self.pooling = pooling
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.body = nn.Sequential(_Block(w, w, 1), _Block(w, 2 * w, 2), _Block(2 * w, 2 * w, 1),
                                  _Block(2 * w, 4 * w, 2), _Block(4 * w, 4 * w, 1), _Block(4 * w, 4 * w, 2))
        self.dropout = nn.Dropout(0.2)
        dim = 4 * w if pooling == "mean" else 2 * (2 * w + 4 * w)
        self.style_head = nn.Linear(dim, n_styles)
        self.concept_head = nn.Linear(dim, n_concepts)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            return self.body(self.stem(x)).mean(dim=(2, 3))
        h = self.stem(x)
        mid = self.body[:3](h)
        last = self.body[3:](mid)
        return torch.cat([mid.mean(dim=(2, 3)), mid.std(dim=(2, 3)), last.mean(dim=(2, 3)),
                          last.std(dim=(2, 3))], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.dropout(self.features(x))
        return self.style_head(f), self.concept_head(f)


def prepare(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """[0, 1] images of any size -> the judge's input: size x size, in [-1, 1].

    Downscaling averages areas, as the corpus loader's box filter does for the judge's training
    images, so the judge sees the same pixels whichever path an image comes by."""
    if images.shape[-1] > size or images.shape[-2] > size:
        images = F.interpolate(images.float(), size=(size, size), mode="area")
    elif images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False)
    return images.float().clamp(0, 1) * 2 - 1


@dataclass
class Judge:
    net: JudgeNet
    styles: list[str]
    concepts: list[str]
    image_size: int = 32

    @classmethod
    def load(cls, folder: str | Path = JUDGE_DIR) -> "Judge":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "judge.json").read_text())
            net = JudgeNet(len(meta["styles"]), len(meta["concepts"]), meta["width"], meta.get("pooling", "mean"))
            net.load_state_dict(load_file(str(folder / "judge.safetensors")))
        except (OSError, KeyError, RuntimeError, ValueError) as e:
            raise ArtshieldError(f"{folder}: cannot load the judge ({e})") from None
        return cls(net.eval(), meta["styles"], meta["concepts"], meta["image_size"])

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [self.net(prepare(chunk.cpu(), self.image_size)) for chunk in images.split(batch_size)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def predict(self, images: torch.Tensor) -> tuple[list[str], list[str]]:
        """The most likely style and concept name of each image."""
        s, c = self.logits(images)
        return [self.styles[i] for i in s.argmax(1)], [self.concepts[i] for i in c.argmax(1)]

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        return torch.cat([self.net.features(prepare(chunk.cpu(), self.image_size)) for chunk in images.split(batch_size)])
