"""Image distances of the extraction attack, vectorised over all pairs.

Carlini et al. (2023) compare two images with the normalised L2 distance sqrt(sum (a-b)^2 / d),
pixels in [0, 1], and call x_hat an extraction of x when it is at most delta = 0.15. To compare
generations with each other they split each image into non-overlapping tiles (16 tiles of 128x128
at 512x512: a 4x4 grid) and take the largest tile distance, so that two images must agree
everywhere, not only on average.
"""
from __future__ import annotations

import torch


def _tiles(images: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, grid*grid, C*th*tw), the tiles of a grid x grid split (H, W divisible)."""
    n, c, h, w = images.shape
    if h % grid or w % grid:
        raise ValueError(f"a {h}x{w} image does not split into a {grid}x{grid} grid of equal tiles")
    th, tw = h // grid, w // grid
    t = images.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(n, grid * grid, c * th * tw)


def normalised_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(mean (a-b)^2) per image pair, (N, ...) x (N, ...) -> (N,)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1).sqrt()


def tiled_l2(a: torch.Tensor, b: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """The largest per-tile normalised L2 between a[i] and b[i]: (N, C, H, W) x (N, C, H, W) -> (N,)."""
    ta, tb = _tiles(a.float(), grid), _tiles(b.float(), grid)
    return (ta - tb).pow(2).mean(2).sqrt().amax(1)


def pairwise_tiled_l2(x: torch.Tensor, y: torch.Tensor | None = None, grid: int = 4,
                      chunk: int = 256) -> torch.Tensor:
    """All pairs: (N, C, H, W) x (M, C, H, W) -> (N, M) tiled L2 (y defaults to x).

    Per tile, |a-b|^2 = |a|^2 + |b|^2 - 2 a.b, so each tile costs one matrix product: 500 images of
    one caption take a few hundred milliseconds on a CPU. Computed in float64 so that the distance
    of an image to itself is exactly zero after the square root.
    """
    tx = _tiles(x.double(), grid)                      # (N, T, D)
    ty = tx if y is None else _tiles(y.double(), grid)
    d = tx.shape[2]
    sx, sy = tx.pow(2).sum(2), ty.pow(2).sum(2)        # (N, T), (M, T)
    out = torch.empty(tx.shape[0], ty.shape[0], dtype=torch.float64)
    ty_t = ty.permute(1, 2, 0)                         # (T, D, M)
    for start in range(0, tx.shape[0], chunk):
        part = tx[start:start + chunk].permute(1, 0, 2)          # (T, n, D)
        dots = torch.bmm(part, ty_t)                             # (T, n, M)
        sq = sx[start:start + chunk].T[:, :, None] + sy.T[:, None, :] - 2 * dots
        out[start:start + chunk] = (sq.clamp_min(0) / d).sqrt().amax(0)
    return out.float()
