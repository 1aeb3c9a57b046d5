"""Poisson family: −Δu = f on a box in 1-D, 2-D or 3-D.

Loss terms (both linear in u, so ``training.output_layer: least_squares`` solves them)
* ``residual``: r = Δu + f at points uniform in the box;
* ``boundary``: on the walls, r = u − g (Dirichlet) or r = ∂u/∂n − h (Neumann, n the
  outward normal), per face (:mod:`pinnsiren.families.walls`).

Reference: the second-order FD solve of :func:`reference_solvers.poisson.solve_poisson` with
the same face conditions. FreSh tunes on the right-hand side (or the boundary value when the
right-hand side is constant).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.terms import Batch, LinearTerm
from pinnsiren.errors import UserError
from pinnsiren.families.base import (
    CompiledProblem,
    Family,
    coords_of,
    evaluate_scalar,
    fd_data,
    mesh_of,
    on_grid,
    reference_space,
    spanning,
)
from pinnsiren.families.registry import register
from pinnsiren.families.walls import DIRICHLET_NEUMANN, fd_walls, wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from pinnsiren.schema.types import FieldValue, Strict
from reference_solvers.poisson import solve_poisson


class PoissonPDE(Strict):
    """−Δu = f on a box (1-D to 3-D)."""

    kind: Literal["poisson"]
    rhs: FieldValue = 0.0
    exact: FieldValue | None = None


class Poisson(Family):
    kind = "poisson"
    schema = PoissonPDE
    terms = ("residual", "boundary")
    space = (1, 3)
    boundaries = DIRICHLET_NEUMANN
    faces = True
    default_grid = 101

    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        pde = spec.pde
        axes = spec.space_axes
        box = Box.from_domain(spec.domain, axes)

        def sample(step: int, n: int) -> Batch:
            x = box.uniform(n, gen)
            return {"x": x, "f": pde.rhs(coords_of(x, axes))}

        def laplacian(j: Jet, b: Batch) -> Tensor:
            return j.laplacian

        def minus_f(b: Batch) -> Tensor:
            return -b["f"][:, None]

        residual = LinearTerm(
            name="residual",
            weight=spec.weight("residual"),
            sampler=sample,
            points=spec.points("residual", 2048),
            request=DerivativeRequest(laplacian=tuple(range(len(axes)))),
            operator=laplacian,
            target=minus_f,
        )
        terms = [residual, wall_term(spec, gen, box)]
        return CompiledProblem(spec, axes, 1, terms, evaluate_scalar(spec, axes))

    def reference(self, spec: ProblemBase) -> GridData:
        grid, space, r = reference_space(spec)
        spanning(spec, space)
        rhs = on_grid(spec, spec.pde.rhs, space)
        u = solve_poisson(list(space.values()), rhs, fd_walls(spec, space))
        return fd_data(spec, grid, u, r)

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = spec.model.fresh.grid
        mesh = mesh_of({a: np.linspace(*spec.domain[a], n) for a in spec.space_axes})
        target = np.broadcast_to(np.asarray(spec.pde.rhs(mesh), dtype=float), mesh["x"].shape)
        if np.ptp(target) == 0:
            target = np.broadcast_to(
                np.asarray(spec.boundary.value(mesh), dtype=float), mesh["x"].shape
            )
        if np.ptp(target) == 0:
            raise UserError(
                f"{spec.name}: model.omega_0: auto needs a non-constant right-hand side or "
                "boundary value to tune on"
            )
        return target, mesh


register(Poisson())
