"""The budgeted optimiser every protection runs on: L-infinity PGD with sign steps.

    pgd = PGD(images, Budget(linf=8, step=1, steps=100), size=bundle.image_size, generator=g)
    for step in range(pgd.budget.steps):
        views = pgd.views()                     # what the model sees, differentiable in delta
        pgd.step(loss(views), step)             # ascend (or descend, maximize=False)
    deltas = pgd.deltas()                        # on the 8-bit grid, within the budget

Images of any size. Each image keeps its own full-resolution perturbation delta. The model sees a
*view*: the perturbed image resized (bilinear, antialiased) so that its short side is the model's
native size, then cut to a square. For non-square images the square moves from step to step
through evenly spaced positions that together cover the whole image (one cycle every few steps),
so every pixel gets gradient; for scoring it is centred. The gradient flows back through the cut
and the resize to delta, so the perturbation is computed and applied at full resolution, and the
budget holds on the image as written, not on a resized copy. When the image is much larger than
the model's view, one view pixel stands for a block of image pixels, and the perturbation is
correspondingly blocky: the honest cost of a small model.

Budgets are in 0-255 pixel units. Each step moves delta by `step` along the sign of the gradient,
projects it onto [-linf, linf], and keeps x + delta inside [0, 1]; `random_start` draws the first
delta uniformly in the box. The final delta is rounded onto the 8-bit grid and clipped to
floor(linf), so the file written keeps max |change| <= linf exactly.

Extensions:
- EOT (expectation over transformation): each step, the view passes through one differentiable
  transform drawn at random (see transforms.py), so the perturbation survives it.
- `before_view`: a function applied to the full-resolution perturbed images before the view is
  cut (robust.py puts them through a purifier there, at the size a mimic purifies them).
- A PSNR floor: after each step, a delta whose PSNR against its image would fall below
  `psnr_floor` dB is scaled down to it (inside the box, so the L-infinity bound still holds).
- A perceptual budget (Glaze): a method can add `weight * max(0, D(x + delta, x) - p)` to its loss,
  with D = LPIPS on the full-resolution pair; the L-infinity box stays as an outer hard bound.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..models.views import fit_view, view_slack
from .transforms import TRANSFORMS


@dataclass
class Budget:
    linf: float = 8.0              # max |delta| per pixel channel, 0-255 units
    step: float = 1.0              # sign-step size, 0-255 units
    steps: int = 100               # PGD iterations
    random_start: bool = True      # start from a uniform draw inside the box
    decay: bool = False            # step size falls linearly to 0 over the steps (PhotoGuard)
    eot: tuple[str, ...] = ()      # transforms to draw from each step, e.g. ("jpeg", "blur", "resize")
    psnr_floor: float | None = None  # dB: deltas are scaled down to keep at least this PSNR

    def __post_init__(self):
        if not 0 < self.linf <= 255:          # false for NaN too
            raise ValueError(f"budget must be in (0, 255] pixel units, got {self.linf}")
        if not (0 < self.step < math.inf) or not self.steps >= 0:
            raise ValueError("step must be positive and finite, and steps non-negative")
        unknown = [t for t in self.eot if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown EOT transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")


@dataclass
class PGD:
    images: list[torch.Tensor]                     # (C, H, W) each, C in {1, 3}, values in [0, 1]
    budget: Budget
    size: int                                      # the model's view, in pixels
    generator: torch.Generator                     # CPU generator: every random draw comes from it
    device: torch.device = torch.device("cpu")
    before_view: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None
    deltas_: list[torch.Tensor] = field(init=False)
    calls: int = field(init=False, default=0)

    def __post_init__(self):
        self.images = [x.to(self.device, torch.float32) for x in self.images]
        eps = self.budget.linf / 255
        self.deltas_ = []
        for x in self.images:
            d = torch.zeros_like(x)
            if self.budget.random_start:
                d = (torch.rand(x.shape, generator=self.generator) * 2 - 1).to(self.device) * eps
                d = (x + d).clamp(0, 1) - x
                if self.budget.psnr_floor is not None:
                    d = d * psnr_scale(d, self.budget.psnr_floor)
            self.deltas_.append(d.requires_grad_(True))

    @property
    def eps(self) -> float:
        return self.budget.linf / 255

    def clean_views(self) -> torch.Tensor:
        """The model's centred (B, 3, size, size) view of the images without any delta."""
        return torch.stack([fit_view(x, self.size) for x in self.images])

    def perturbed(self) -> list[torch.Tensor]:
        """x + delta at full resolution, differentiable in delta."""
        return [x + d for x, d in zip(self.images, self.deltas_)]

    def views(self, moving: bool = True, transform: bool = True) -> torch.Tensor:
        """The model's (B, 3, size, size) view of x + delta. `moving`: the square cut of a non-square
        image steps through positions covering it (else centred); `transform`: one random EOT
        transform."""
        out = []
        images = self.perturbed()
        if self.before_view is not None:
            images = self.before_view(images)
        for x in images:
            rows, cols = view_slack(x, self.size)
            offset = None
            if moving and (rows or cols):
                slack = max(rows, cols)
                positions = math.ceil((slack + self.size) / self.size) + 1
                at = round((self.calls % positions) * slack / (positions - 1))
                offset = (at, 0) if rows else (0, at)
            out.append(fit_view(x, self.size, offset))
        if moving:
            self.calls += 1
        views = torch.stack(out)
        if transform and self.budget.eot:
            k = int(torch.randint(len(self.budget.eot), (1,), generator=self.generator))
            views = TRANSFORMS[self.budget.eot[k]](views, self.generator)
        return views

    def step_size(self, step: int) -> float:
        size = self.budget.step / 255
        if self.budget.decay:
            size *= 1 - step / max(1, self.budget.steps)
        return size

    def step(self, loss: torch.Tensor, step: int, maximize: bool = True) -> None:
        """One signed gradient step on every delta, then projection onto the box and [0, 1]."""
        grads = torch.autograd.grad(loss, self.deltas_, allow_unused=True)
        alpha = self.step_size(step) * (1 if maximize else -1)
        with torch.no_grad():
            for x, d, g in zip(self.images, self.deltas_, grads):
                if g is None:
                    continue
                d.add_(alpha * g.sign()).clamp_(-self.eps, self.eps)
                d.copy_((x + d).clamp(0, 1) - x)
                if self.budget.psnr_floor is not None:
                    d.mul_(psnr_scale(d, self.budget.psnr_floor))

    def run(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], maximize: bool = True,
            progress: Callable[[int], None] | None = None, steps: int | None = None, first: int = 0) -> None:
        """`steps` PGD steps (the budget's by default) of loss_fn(views), a scalar."""
        for step in range(first, first + (self.budget.steps if steps is None else steps)):
            self.step(loss_fn(self.views()), step, maximize)
            if progress is not None:
                progress(1)

    def deltas(self) -> list[torch.Tensor]:
        """The final perturbations on the 8-bit grid: |delta| <= floor(linf)/255 and x + delta in [0, 1]."""
        limit = math.floor(self.budget.linf + 1e-6)
        out = []
        for x, d in zip(self.images, self.deltas_):
            q = (d.detach() * 255).round().clamp(-limit, limit) / 255
            out.append(((x + q).clamp(0, 1) - x).cpu())
        return out


def psnr_scale(delta: torch.Tensor, floor_db: float) -> float:
    """The factor (at most 1) that brings delta's PSNR (peak 1) up to `floor_db`, with a 0.2 dB margin
    for the rounding onto the 8-bit grid at the end."""
    rms = float(delta.detach().pow(2).mean().sqrt())
    allowed = 10 ** (-(floor_db + 0.2) / 20)
    return 1.0 if rms <= allowed else allowed / rms


def random_deltas(images: list[torch.Tensor], linf: float, generator: torch.Generator) -> list[torch.Tensor]:
    """The same-budget baseline: uniform noise on the 8-bit grid, |delta| <= floor(linf)."""
    limit = math.floor(linf + 1e-6)
    out = []
    for x in images:
        q = torch.randint(-limit, limit + 1, x.shape, generator=generator).float() / 255
        out.append((x.cpu() + q).clamp(0, 1) - x.cpu())
    return out
