"""Boxes, their walls and time slices, and the point samplers of the loss terms.

Points are rows of a tensor whose columns follow the problem's axes in the order
x, y, z, t (the network's input order). All sampling goes through one seeded
``torch.Generator`` on the CPU, so a run is reproducible whatever the device; the
points are moved to the training device afterwards.

Curriculum time sampling: at training step ``s`` the residual points take times in the
window ``[t0, t0 + (T − t0)·min(1, s / ramp_steps)]``, a fraction of them sit exactly on
``t = t0`` and, optionally, a further fraction is drawn in ``[t0, t0 + focus_duration]``
to oversample the start of the motion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FACE_NAMES = ("x-", "x+", "y-", "y+", "z-", "z+")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``Π [lower_i, upper_i]`` over named spatial axes."""

    axes: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @classmethod
    def from_domain(cls, domain: Mapping[str, Sequence[float]], axes: Sequence[str]) -> Box:
        return cls(
            tuple(axes), tuple(domain[a][0] for a in axes), tuple(domain[a][1] for a in axes)
        )

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def faces(self) -> tuple[str, ...]:
        return FACE_NAMES[: 2 * self.dim]

    def face_area(self, face: str) -> float:
        """(d−1)-volume of a face (1 for the end points of an interval)."""
        k = self.axes.index(face[0])
        return float(
            np.prod([self.upper[i] - self.lower[i] for i in range(self.dim) if i != k] or [1.0])
        )

    def uniform(self, n: int, gen: torch.Generator) -> Tensor:
        """``n`` points uniform in the box, shape (n, dim), float64 on the CPU."""
        lo = torch.tensor(self.lower, dtype=torch.float64)
        hi = torch.tensor(self.upper, dtype=torch.float64)
        return lo + (hi - lo) * torch.rand(n, self.dim, generator=gen, dtype=torch.float64)

    def on_faces(
        self, n: int, gen: torch.Generator, faces: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` points on the walls, faces chosen in proportion to their area.

        Returns points (n, dim), outward unit normals (n, dim) and the face index of each
        point (into ``self.faces``).
        """
        faces = tuple(faces or self.faces)
        areas = torch.tensor([self.face_area(f) for f in faces], dtype=torch.float64)
        which = torch.multinomial(areas / areas.sum(), n, replacement=True, generator=gen)
        pts = self.uniform(n, gen)
        normals = torch.zeros(n, self.dim, dtype=torch.float64)
        index = torch.zeros(n, dtype=torch.long)
        for j, face in enumerate(faces):
            mask = which == j
            k = self.axes.index(face[0])
            upper = face[1] == "+"
            pts[mask, k] = self.upper[k] if upper else self.lower[k]
            normals[mask, k] = 1.0 if upper else -1.0
            index[mask] = self.faces.index(face)
        return pts, normals, index


def gaussian_points(
    n: int, center: Sequence[float], std: float, gen: torch.Generator, box: Box | None = None
) -> Tensor:
    """``n`` points from an isotropic normal law around ``center`` (clipped into ``box``)."""
    c = torch.tensor(center, dtype=torch.float64)
    pts = c + std * torch.randn(n, len(center), generator=gen, dtype=torch.float64)
    if box is not None:
        lo = torch.tensor(box.lower, dtype=torch.float64)
        hi = torch.tensor(box.upper, dtype=torch.float64)
        pts = torch.maximum(torch.minimum(pts, hi), lo)
    return pts


@dataclass(frozen=True)
class Curriculum:
    """The growing time window of curriculum sampling (see module docstring)."""

    t0: float
    t_end: float
    ramp_steps: int
    enabled: bool = True
    initial_fraction: float = 0.1
    focus_fraction: float = 0.0
    focus_duration: float = 0.05

    def window(self, step: int) -> tuple[float, float]:
        """Sampled time interval at a training step."""
        if not self.enabled:
            return self.t0, self.t_end
        frac = min(1.0, max(step, 0) / max(self.ramp_steps, 1))
        return self.t0, self.t0 + (self.t_end - self.t0) * frac

    def times(self, n: int, step: int, gen: torch.Generator) -> Tensor:
        """``n`` times for the residual at ``step``, shape (n, 1)."""
        lo, hi = self.window(step)
        n_init = int(round(self.initial_fraction * n)) if self.enabled else 0
        n_focus = int(round(self.focus_fraction * n))
        n_rest = n - n_init - n_focus
        parts = [torch.full((n_init,), self.t0, dtype=torch.float64)]
        focus_hi = min(self.t0 + self.focus_duration, self.t_end)
        parts.append(
            self.t0 + (focus_hi - self.t0) * torch.rand(n_focus, generator=gen, dtype=torch.float64)
        )
        parts.append(lo + (hi - lo) * torch.rand(n_rest, generator=gen, dtype=torch.float64))
        return torch.cat(parts).unsqueeze(1)


def make_generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen
