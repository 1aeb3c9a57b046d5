"""Forward Helmholtz problems: a known velocity c(x), sources and/or a right-hand side.

The network has two outputs (Re u, Im u). Loss terms: the PDE terms of
:func:`~pinnsiren.families.helmholtz.operator.pde_terms` and, with Dirichlet or Neumann walls
(no PML), the ``boundary`` term of :mod:`pinnsiren.families.walls`.

Scattered-field formulation (``pde.formulation: scattered``, background velocity c₀ =
``pde.background``, c = c₀ inside the PML): u = u₀ + v with u₀ = Σ_s u₀_s the analytic
free-space field of the sources in c₀ (:mod:`pinnsiren.families.helmholtz.incident`).
Subtracting (Δ + ω²/c₀²) u₀ = Σ_s f_s leaves the same operator acting on v with the smooth
right-hand side

    f_scat = ω² (1/c₀² − 1/c²) u₀ (+ ``pde.rhs``),

which is zero wherever c = c₀ (so u₀ is never needed in the PML, where it would have to be
continued to complex coordinates). The network learns v; there is no ``source`` term, and the
solution written is u₀ + v.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.engine.terms import Batch
from pinnsiren.errors import UserError
from pinnsiren.families.base import (
    CompiledProblem,
    coarsen,
    coords_of,
    grid_data,
    grid_points,
    mesh_of,
    on_grid,
    predict,
    reference_space,
    spanning,
)
from pinnsiren.families.helmholtz.incident import incident_field
from pinnsiren.families.helmholtz.operator import (
    AXES,
    coefficient_batch,
    complex_field,
    pairs,
    pde_terms,
    pml_of,
    source_density,
)
from pinnsiren.families.walls import fd_walls, wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.helmholtz import solve_helmholtz, solve_helmholtz_walls


def incident(spec: ProblemBase, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ_s u₀_s at points (complex) for the scattered formulation, else zero."""
    pde = spec.pde
    if pde.formulation != "scattered" or not pde.sources:
        return np.zeros(np.broadcast(x, y).shape, dtype=complex)
    return incident_field(x, y, pde.sources, pde.omega, pde.background).sum(axis=0)


def right_hand_side(spec: ProblemBase, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The right-hand side the network's field solves for, at points (complex): the sources
    plus ``pde.rhs`` (total), or the scattering source plus ``pde.rhs`` (scattered)."""
    pde = spec.pde
    coords = {"x": x, "y": y}
    extra = complex_field(pde.rhs, coords)
    if pde.formulation == "scattered":
        s2 = 1.0 / np.asarray(pde.velocity(coords), dtype=float) ** 2
        return pde.omega**2 * (1 / pde.background**2 - s2) * incident(spec, x, y) + extra
    return source_density(x, y, pde.sources) + extra


def compile_forward(spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    omega = pde.omega

    def batch_at(points: Tensor) -> Batch:
        batch = coefficient_batch(points, spec, omega)
        x, y = points[:, 0].numpy(), points[:, 1].numpy()
        c = np.asarray(pde.velocity(coords_of(points, AXES)), dtype=float)
        co_c = batch["C"][:, 0].numpy() + 1j * batch["C"][:, 1].numpy()
        batch["Ck2"] = pairs(co_c * omega**2 / c**2)
        batch["g"] = pairs(co_c * right_hand_side(spec, x, y))
        return batch

    total = pde.formulation == "total" and bool(pde.sources)
    terms = pde_terms(spec, gen, batch_at, pde.sources, with_source_term=total)
    if spec.boundary.kind in ("dirichlet", "neumann"):
        terms.append(wall_term(spec, gen, Box.from_domain(spec.domain, AXES), channels=2))

    def evaluate(model: nn.Module) -> GridData:
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        pts = grid_points(data.grid, AXES)
        out = predict(model, pts)
        u = out[:, 0] + 1j * out[:, 1] + incident(spec, pts[:, 0], pts[:, 1])
        data.add("u", u.reshape(shape), AXES)
        return data

    return CompiledProblem(spec, AXES, 2, terms, evaluate, group=2)


def forward_reference(spec: ProblemBase) -> GridData:
    """The FD solution (five-point stencil, the same PML) on the evaluation grid."""
    pde = spec.pde
    grid, space, r = reference_space(spec)
    x, y = space["x"], space["y"]
    velocity = on_grid(spec, pde.velocity, space)
    if np.any(velocity <= 0):
        raise UserError(f"{spec.name}: pde.velocity must be positive everywhere")
    mesh = mesh_of(space)
    rhs = source_density(mesh["x"], mesh["y"], pde.sources) + complex_field(pde.rhs, mesh)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if spec.boundary.kind == "pml":
            u = solve_helmholtz(x, y, pde.omega, velocity, rhs, pml_of(spec))
        else:
            spanning(spec, space)
            u = solve_helmholtz_walls(x, y, pde.omega, velocity, rhs, fd_walls(spec, space))
    for w in caught:
        print(f"pinnsiren: warning: {w.message}")
    data = grid_data(spec, "fd")
    data.add("u", coarsen(u, r), AXES)
    data.add("velocity", coarsen(velocity, r), AXES)
    if pde.exact is not None:
        data.add("exact", complex_field(pde.exact, mesh_of(grid)), AXES)
    return data
