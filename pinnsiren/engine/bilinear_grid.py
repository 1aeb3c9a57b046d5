"""A learnable scalar field on a regular grid, interpolated bilinearly.

On the box [x_lo, x_hi] × [y_lo, y_hi] with nodes x_i = x_lo + i·h_x (i = 0 … n_x − 1) and
likewise y_j, a point with x = x_i + t_x h_x, y = y_j + t_y h_y (0 ≤ t_x, t_y ≤ 1) takes

    g(x, y) = (1 − t_x)(1 − t_y) g_ij + t_x (1 − t_y) g_i+1,j + (1 − t_x) t_y g_i,j+1
              + t_x t_y g_i+1,j+1,

    ∂g/∂x = [(1 − t_y)(g_i+1,j − g_ij) + t_y (g_i+1,j+1 − g_i,j+1)] / h_x   (∂g/∂y likewise).

Points outside the box take the value at the nearest point of the box (zero gradient across
the clamped direction). Values and gradients are differentiable in the node values g, so the
grid can be trained and regularised (e.g. total variation of its gradient).

Used as the grid half of a hybrid velocity model (a SIREN plus a grid): a coordinate network
alone converges slowly on sharp features in full-waveform inversion, a grid converges on them
at the rate of its nodes ("Unveiling the mechanism of continuous representation full-waveform
inversion: a wave-based neural tangent kernel framework", arXiv:2603.22362).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _blend(tx: Tensor, ty: Tensor, g00: Tensor, g10: Tensor, g01: Tensor, g11: Tensor) -> Tensor:
    """The bilinear weights of the module docstring applied to a cell's corner values."""
    return (1 - tx) * ((1 - ty) * g00 + ty * g01) + tx * ((1 - ty) * g10 + ty * g11)


class BilinearGrid(nn.Module):
    """Node values ``g`` (n_x, n_y), zero at the start, on the box ((x_lo, x_hi), (y_lo, y_hi))."""

    def __init__(self, shape: tuple[int, int], box: tuple[tuple[float, float], ...]) -> None:
        super().__init__()
        nx, ny = shape
        if nx < 2 or ny < 2:
            raise ValueError(f"a bilinear grid needs at least 2 × 2 nodes, got {nx} × {ny}")
        self.values = nn.Parameter(torch.zeros(nx, ny, dtype=torch.float64))
        self.register_buffer("lower", torch.tensor([box[0][0], box[1][0]], dtype=torch.float64))
        self.register_buffer("upper", torch.tensor([box[0][1], box[1][1]], dtype=torch.float64))

    def _cell(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        n = torch.tensor(self.values.shape, device=x.device)
        h = (self.upper - self.lower) / (n - 1)
        s = ((x - self.lower) / h).clamp(min=torch.zeros_like(h), max=(n - 1).to(x.dtype))
        idx = s.floor().long().clamp(max=n - 2)
        t = s - idx
        inside = ((x >= self.lower) & (x <= self.upper)).to(x.dtype)
        return idx[:, 0], idx[:, 1], t[:, 0:1], t[:, 1:2], h, inside

    def _corners(self, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = self.values
        return (g[i, j][:, None], g[i + 1, j][:, None], g[i, j + 1][:, None],
                g[i + 1, j + 1][:, None])  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """g at points x (N, 2) → (N, 1)."""
        i, j, tx, ty, _, _ = self._cell(x)
        return _blend(tx, ty, *self._corners(i, j))

    def with_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """g (N, 1) and ∇g (N, 2) at points x (N, 2)."""
        i, j, tx, ty, h, inside = self._cell(x)
        g00, g10, g01, g11 = self._corners(i, j)
        value = _blend(tx, ty, g00, g10, g01, g11)
        gx = ((1 - ty) * (g10 - g00) + ty * (g11 - g01)) / h[0] * inside[:, 0:1]
        gy = ((1 - tx) * (g01 - g00) + tx * (g11 - g10)) / h[1] * inside[:, 1:2]
        return value, torch.cat([gx, gy], dim=1)
