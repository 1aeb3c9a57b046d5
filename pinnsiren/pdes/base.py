"""What every PDE family compiles to: loss terms, and how to read the solution off a model.

A :class:`Term` pairs a sampler (``sample(step)`` → a batch of points and the
coefficients at them, float64 on the CPU, then moved to the training device) with a
residual function of the model on that batch. Its loss is the mean squared residual.
A :class:`CompiledProblem` holds the terms of one problem plus what the solve command
needs around them: the network's input axes and output channels, and a function that
evaluates the trained network on the evaluation grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.io import GridData, ordered_grid
from pinnsiren.spec import ProblemSpec

Batch = dict[str, Tensor]


@dataclass
class Term:
    """A named loss term: ``weight · mean(residual(model, sample(step))²)``."""

    name: str
    weight: float
    sampler: Callable[[int], Batch]
    residual: Callable[[nn.Module, Batch], Tensor]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    reduce: Callable[[Tensor, Batch], Tensor] | None = None
    # a term whose weight defaults to another's takes that term's phase override too
    follows: str | None = None

    def sample(self, step: int) -> Batch:
        return {
            k: v.to(device=self.device, dtype=self.dtype)
            if v.is_floating_point()
            else v.to(self.device)
            for k, v in self.sampler(step).items()
        }

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        r = self.residual(model, batch)
        if self.reduce is not None:
            return self.reduce(r, batch)
        return (r**2).sum(dim=-1).mean() if r.dim() > 1 else (r**2).mean()


@dataclass
class CompiledProblem:
    """The loss terms of a problem and how to read its solution off a network."""

    spec: ProblemSpec
    in_axes: tuple[str, ...]
    out_features: int
    terms: list[Term]
    evaluate: Callable[[nn.Module], GridData]
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device, dtype: torch.dtype) -> CompiledProblem:
        for t in self.terms:
            t.device, t.dtype = device, dtype
        return self


def coords_of(points: Tensor, axes: tuple[str, ...]) -> dict[str, Tensor]:
    """``{axis: column}`` view of a points tensor whose columns follow ``axes``."""
    return {a: points[:, i] for i, a in enumerate(axes)}


def eval_grid(spec: ProblemSpec) -> dict[str, np.ndarray]:
    """Evaluation nodes per axis, in array order (``t`` first)."""
    return ordered_grid({a: np.asarray(spec.grid_axis(a)) for a in spec.axes}, spec.axes)


def grid_points(grid: dict[str, np.ndarray], in_axes: tuple[str, ...]) -> np.ndarray:
    """All nodes of the grid (array order of ``grid``) as rows in network input order."""
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    by_axis = dict(zip(grid, mesh))
    return np.stack([by_axis[a].ravel() for a in in_axes], axis=-1)


@torch.no_grad()
def predict(model: nn.Module, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Network output at ``points`` (rows in input order), as float64 numpy, in chunks."""
    param = next(model.parameters())
    out = []
    for start in range(0, len(points), chunk):
        x = torch.as_tensor(points[start : start + chunk], dtype=param.dtype, device=param.device)
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out, axis=0)


def grid_data(spec: ProblemSpec, origin: str) -> GridData:
    """An empty :class:`GridData` on the problem's evaluation grid."""
    return GridData(
        grid=eval_grid(spec),
        attrs={"problem": spec.name, "kind": spec.kind, "origin": origin},
        problem=spec.to_yaml(),
    )
