"""LPIPS (Zhang et al., CVPR 2018), v0.1 linear heads on an AlexNet backbone, in plain torch.

The weights (assets/lpips/alex.safetensors, built by scripts/fetch_lpips.py) hold the ImageNet
AlexNet convolutions and the five learnt heads, so no torchvision download is needed. Scores are
0 for identical images and grow with perceived difference (about 0.1 to 0.2 for a light blur,
0.7 for unrelated pictures). LPIPS is differentiable, which lets the Glaze-style cloak use it as
its perceptual budget.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "lpips" / "alex.safetensors"
# AlexNet's five convolutions: (in, out, kernel, stride, padding); LPIPS taps every ReLU
_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
# LPIPS's input normalisation, applied to images in [-1, 1]
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in _CONVS)
        self.heads = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, o, _, _, _ in _CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def load(cls, device: str | torch.device = "cpu") -> LPIPS:
        if not WEIGHTS.exists():
            raise FileNotFoundError(f"{WEIGHTS}: LPIPS weights missing; build them with scripts/fetch_lpips.py")
        model = cls()
        model.load_state_dict({k: v.float() for k, v in load_file(WEIGHTS).items()})
        return model.to(device).eval().requires_grad_(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x * 2 - 1) - self.shift) / self.scale
        taps = []
        for i, conv in enumerate(self.features):
            x = F.relu(conv(x))
            taps.append(x)
            if i < 2:
                x = F.max_pool2d(x, 3, 2)
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) each, H and W at least 32 -> (B,) distances."""
        if min(a.shape[-2:]) < 32:
            raise ValueError(f"LPIPS needs images of at least 32x32, got {tuple(a.shape[-2:])}")
        total = 0
        for head, fa, fb in zip(self.heads, self._taps(a), self._taps(b)):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total


@lru_cache(maxsize=2)
def lpips_model(device: str = "cpu") -> LPIPS:
    return LPIPS.load(device)
