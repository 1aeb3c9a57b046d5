"""Poisson family: −Δu = f on a box in 1-D, 2-D or 3-D.

Loss terms
* ``residual``: r = Δu + f at points uniform in the box;
* ``boundary``: on the walls, r = u − g (Dirichlet) or r = ∂u/∂n − h (Neumann, n the
  outward normal), each face taking ``boundary.faces[face]`` when given and the default
  ``boundary.kind``/``value`` otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.fields import Field
from pinnsiren.geometry import Box
from pinnsiren.jets import DerivativeRequest, jet
from pinnsiren.pdes.base import (
    Batch,
    CompiledProblem,
    Term,
    coords_of,
    grid_data,
    grid_points,
    predict,
)
from pinnsiren.spec import PoissonPDE, ProblemSpec


def face_conditions(spec: ProblemSpec, box: Box) -> dict[str, tuple[str, Field]]:
    """``{face: (kind, value field)}`` for every wall of the box."""
    out = {}
    for face in box.faces:
        fc = spec.boundary.faces.get(face)
        out[face] = (fc.kind, fc.value) if fc else (spec.boundary.kind, spec.boundary.value)
    return out


def compile_poisson(spec: ProblemSpec, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    assert isinstance(pde, PoissonPDE)
    axes = spec.space_axes
    box = Box.from_domain(spec.domain, axes)
    conditions = face_conditions(spec, box)
    n_res = spec.points("residual", 2048)
    n_bnd = spec.points("boundary", 512)

    def sample_residual(step: int) -> Batch:
        x = box.uniform(n_res, gen)
        return {"x": x, "f": pde.rhs(coords_of(x, axes))}

    lap = DerivativeRequest(laplacian=tuple(range(len(axes))))

    def residual(model: nn.Module, batch: Batch) -> Tensor:
        j = jet(model, batch["x"], lap)
        return j.laplacian[:, 0] + batch["f"]

    has_neumann = any(kind == "neumann" for kind, _ in conditions.values())
    grad_req = DerivativeRequest(gradient=tuple(range(len(axes))))

    def sample_boundary(step: int) -> Batch:
        x, normals, face = box.on_faces(n_bnd, gen)
        coords = coords_of(x, axes)
        value = torch.zeros(n_bnd, dtype=torch.float64)
        neumann = torch.zeros(n_bnd, dtype=torch.bool)
        for k, name in enumerate(box.faces):
            mask = face == k
            kind, f = conditions[name]
            value[mask] = f(coords)[mask]
            neumann[mask] = kind == "neumann"
        return {"x": x, "n": normals, "g": value, "neumann": neumann}

    def boundary(model: nn.Module, batch: Batch) -> Tensor:
        if not has_neumann:
            return model(batch["x"])[:, 0] - batch["g"]
        j = jet(model, batch["x"], grad_req)
        flux = sum(j.gradient[i][:, 0] * batch["n"][:, i] for i in range(len(axes)))
        value = torch.where(batch["neumann"], flux, j.value[:, 0])
        return value - batch["g"]

    terms = [
        Term("residual", spec.weight("residual"), sample_residual, residual),
        Term("boundary", spec.weight("boundary", 100.0), sample_boundary, boundary),
    ]

    def evaluate(model: nn.Module):
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        data.add("u", predict(model, grid_points(data.grid, axes))[:, 0].reshape(shape), axes)
        return data

    return CompiledProblem(spec, axes, 1, terms, evaluate)


def exact_solution(spec: ProblemSpec, grid: dict[str, np.ndarray]) -> np.ndarray | None:
    """The declared exact solution on a grid (array order), if the problem has one."""
    exact = getattr(spec.pde, "exact", None)
    if exact is None:
        return None
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    return np.asarray(exact(dict(zip(grid, mesh))), dtype=float)
