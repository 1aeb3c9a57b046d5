"""Axis-aligned boxes over named axes: the domain, its walls, sub-regions and the box shape of a
coefficient field are all one :class:`Box`.

Points are rows of a tensor whose columns follow the box's axes (the network's input order
x, y, z, t). Sampling goes through a seeded ``torch.Generator`` on the CPU, so a run is
reproducible whatever the device; points are moved to the training device afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

FACE_NAMES = ("x-", "x+", "y-", "y+", "z-", "z+")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``Π [lower_i, upper_i]`` over named axes."""

    axes: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @classmethod
    def from_domain(cls, domain: Mapping[str, Sequence[float]], axes: Sequence[str]) -> Box:
        return cls(
            tuple(axes),
            tuple(float(domain[a][0]) for a in axes),
            tuple(float(domain[a][1]) for a in axes),
        )

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def faces(self) -> tuple[str, ...]:
        return FACE_NAMES[: 2 * self.dim]

    def as_dict(self) -> dict[str, tuple[float, float]]:
        """``{axis: (low, high)}``."""
        return {a: (lo, hi) for a, lo, hi in zip(self.axes, self.lower, self.upper)}

    def shrunk(self, margin: float) -> Box:
        """The box with ``margin`` taken off every side (e.g. the region inside a PML)."""
        return Box(
            self.axes,
            tuple(lo + margin for lo in self.lower),
            tuple(hi - margin for hi in self.upper),
        )

    def contains(self, coords: Mapping[str, Any], *, strict: bool = False) -> Any:
        """Boolean mask of the points ``{axis: array}`` inside the box (numpy or torch);
        ``strict`` excludes the walls."""
        mask = None
        for axis, lo, hi in zip(self.axes, self.lower, self.upper):
            c = coords[axis]
            m = (c > lo) & (c < hi) if strict else (c >= lo) & (c <= hi)
            mask = m if mask is None else mask & m
        return mask

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

    def clip(self, points: Tensor) -> Tensor:
        """Points moved to the nearest point of the box."""
        lo = torch.tensor(self.lower, dtype=points.dtype)
        hi = torch.tensor(self.upper, dtype=points.dtype)
        return torch.maximum(torch.minimum(points, hi), lo)

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
