"""IMPRESS (Cao et al., NeurIPS 2023, arXiv 2310.19248): a protected image is inconsistent under the
model's own autoencoder, x != D(E(x)), while a natural image is nearly a fixed point. IMPRESS
optimises a purified image x_p to restore that consistency while staying perceptually close to
the protected input x_adv:

    min_{x_p}  || x_p - D(E(x_p)) ||^2  +  alpha * max(LPIPS(x_p, x_adv) - delta, 0)

Adam with a cosine learning-rate schedule, started from x_adv plus Gaussian noise. Defaults from
the authors' code for the Glaze case: delta 0.1, lr 0.01, 3000 iterations, alpha 0.1, initial
noise 0.1 (the PhotoGuard case uses lr 0.005, 1000 iterations, alpha 0.01, noise 0.05). IMPRESS
uses LPIPS-VGG; artshield uses LPIPS-AlexNet, its bundled LPIPS. Full-resolution images: the
consistency term is computed on the model's view (the image resized to the model's canvas), the
LPIPS term on the image itself, and x_p is optimised at full resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..metrics.image import perceptual_size
from ..metrics.lpips import lpips_model
from ..models.views import canvas
from ..options import FRACTION, POSITIVE, Limit
from .base import Purifier, PurifyConfig, register


@dataclass
class ImpressConfig(PurifyConfig):
    iterations: int = 3000
    lr: float = 0.01
    alpha: float = 0.1
    delta: float = 0.1             # LPIPS budget
    init_noise: float = 0.1
    limits = {"iterations": Limit(1, 1_000_000), "lr": POSITIVE, "alpha": Limit(0), "delta": FRACTION,
              "init_noise": Limit(0, 1)}


@register("impress")
class Impress(Purifier):
    Config = ImpressConfig
    needs_model = True

    def one(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c, b = self.config, self.bundle
        target = image.float().to(b.device)
        rgb = (lambda t: t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t)
        ref = perceptual_size(rgb(target[None]), 512)
        lpips = lpips_model(str(b.device))
        start = target + (torch.randn(image.shape, generator=generator) * c.init_noise).to(b.device)
        x = start.clamp(0, 1).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=c.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, c.iterations))
        size = canvas(b, *image.shape[-2:])
        for _ in range(c.iterations):
            view = F.interpolate(rgb(x.clamp(0, 1)[None]), size=size, mode="bilinear", antialias=True,
                                 align_corners=False)
            consistency = (view - b.decode(b.encode(view)).float()).pow(2).mean()
            distance = lpips(perceptual_size(rgb(x.clamp(0, 1)[None]), 512), ref)[0]
            loss = consistency + c.alpha * torch.relu(distance - c.delta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        return x.detach().clamp(0, 1).cpu()
