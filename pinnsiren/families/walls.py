"""Dirichlet and Neumann walls of a box, shared by the families that have them.

Each face of the box takes ``boundary.faces[face]`` when given and ``boundary.kind`` /
``boundary.value`` otherwise. The wall term is linear in u:

    r = u − g (Dirichlet),   r = ∂u/∂n − h (Neumann, n the outward normal),

on every output channel; the value goes to the first channel of each group (a complex field's
real part), the others are held at 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.terms import Batch, LinearTerm
from pinnsiren.families.base import coords_of, on_grid
from pinnsiren.schema.fields import Field
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.poisson import FaceCondition

DIRICHLET_NEUMANN = ("dirichlet", "neumann")


def face_conditions(spec: ProblemBase, box: Box) -> dict[str, tuple[str, Field]]:
    """``{face: (kind, value field)}`` for every wall of the box."""
    out = {}
    for face in box.faces:
        fc = spec.boundary.faces.get(face)
        out[face] = (fc.kind, fc.value) if fc else (spec.boundary.kind, spec.boundary.value)
    return out


def fd_walls(spec: ProblemBase, space: dict[str, np.ndarray]) -> dict[str, FaceCondition]:
    """The walls as FD face conditions on the grid ``space`` (values sampled along each face),
    for :mod:`reference_solvers`."""
    axes = tuple(space)
    out = {}
    for face, (kind, field) in face_conditions(spec, Box.from_domain(spec.domain, axes)).items():
        k = axes.index(face[0])
        at = dict(space)
        at[face[0]] = space[face[0]][-1:] if face[1] == "+" else space[face[0]][:1]
        out[face] = FaceCondition(kind, np.take(on_grid(spec, field, at), 0, k))
    return out


def wall_term(
    spec: ProblemBase,
    gen: torch.Generator,
    box: Box,
    *,
    channels: int = 1,
    times: Callable[[int, int], Tensor] | None = None,
    default_points: int = 512,
) -> LinearTerm:
    """The ``boundary`` term on the walls of the spatial ``box`` (module docstring).

    ``times(step, n)`` adds a time column (the network's inputs are then the box's axes and
    t); ``channels`` is the field's channel count (2 for a complex field).
    """
    conditions = face_conditions(spec, box)
    d = box.dim
    has_neumann = any(kind == "neumann" for kind, _ in conditions.values())

    def sample(step: int, n: int) -> Batch:
        x, normals, face = box.on_faces(n, gen)
        coords = coords_of(x, box.axes)
        value = torch.zeros(n, dtype=torch.float64)
        neumann = torch.zeros(n, dtype=torch.bool)
        for k, name in enumerate(box.faces):
            mask = face == k
            kind, f = conditions[name]
            value[mask] = f(coords)[mask]
            neumann[mask] = kind == "neumann"
        pts = x if times is None else torch.cat([x, times(step, n)], dim=1)
        return {"x": pts, "n": normals, "g": value, "neumann": neumann}

    def operator(j: Jet, b: Batch) -> Tensor:
        if not has_neumann:
            return j.value
        flux = sum(j.gradient[i] * b["n"][:, i : i + 1] for i in range(d))
        return torch.where(b["neumann"][:, None], flux, j.value)

    def target(b: Batch) -> Tensor:
        g = b["g"][:, None]
        return torch.cat([g, torch.zeros_like(g).expand(-1, channels - 1)], dim=1)

    return LinearTerm(
        name="boundary",
        weight=spec.weight("boundary", 100.0),
        sampler=sample,
        points=spec.points("boundary", default_points),
        request=DerivativeRequest(gradient=tuple(range(d)) if has_neumann else ()),
        operator=operator,
        target=target,
        complex_pairs=channels == 2,
    )
