"""Heat family: u_t = κ Δu + f(x, t) in 1-D or 2-D space, t ∈ [t0, T], walls Dirichlet or
Neumann (per face), initial value u(x, t0) = u0(x).

Loss terms (network input order x[, y], t; one output u), all linear in u:
* ``residual``: r = u_t − κ Δu − f at points whose times follow the curriculum window;
* ``initial_value``: r = u(x, t0) − u0(x);
* ``boundary``: r = u − g (Dirichlet) or r = ∂u/∂n − g (Neumann, n the outward normal) at
  points on the walls with times in the curriculum window (:mod:`pinnsiren.families.walls`).

``pde.rhs`` may depend on t. Reference: Crank–Nicolson with the same walls
(:func:`reference_solvers.heat.solve_heat`). FreSh tunes on the initial value.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.terms import Batch, LinearTerm
from pinnsiren.families.base import (
    CompiledProblem,
    Family,
    coords_of,
    curriculum_of,
    evaluate_scalar,
    fd_data,
    initial_value_target,
    on_grid,
    reference_space,
    spanning,
    value_term,
)
from pinnsiren.families.registry import register
from pinnsiren.families.walls import DIRICHLET_NEUMANN, fd_walls, wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from pinnsiren.schema.types import FieldValue, PositiveFloat, Strict
from reference_solvers.heat import solve_heat


class HeatPDE(Strict):
    """u_t = κ Δu + f, 1-D or 2-D in space (κ = ``diffusivity``, f = ``rhs``)."""

    kind: Literal["heat"]
    diffusivity: PositiveFloat = 1.0
    rhs: FieldValue = 0.0
    exact: FieldValue | None = None


class Heat(Family):
    kind = "heat"
    schema = HeatPDE
    terms = ("residual", "boundary", "initial_value")
    point_keys = ("initial",)
    space = (1, 2)
    time_dependent = True
    initial_keys = ("value",)
    time_fields = ("rhs",)
    boundaries = DIRICHLET_NEUMANN
    faces = True
    reference_keys = ("refine", "dt")
    default_grid = 101

    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        pde = spec.pde
        space = spec.space_axes
        axes = space + ("t",)
        d = len(space)
        box = Box.from_domain(spec.domain, space)
        t0 = spec.domain["t"][0]
        cur = curriculum_of(spec)

        def sample_residual(step: int, n: int) -> Batch:
            pts = torch.cat([box.uniform(n, gen), cur.times(n, step, gen)], dim=1)
            return {"x": pts, "f": pde.rhs(coords_of(pts, axes))}

        def heat_operator(j: Jet, b: Batch) -> Tensor:
            return j.gradient[d] - pde.diffusivity * j.laplacian

        def sample_initial(step: int, n: int) -> Batch:
            x = box.uniform(n, gen)
            pts = torch.cat([x, torch.full((n, 1), t0, dtype=torch.float64)], dim=1)
            return {"x": pts, "f": spec.initial.value(coords_of(x, space))}

        def wall_times(step: int, n: int) -> Tensor:
            lo, hi = cur.window(step)
            return lo + (hi - lo) * torch.rand(n, 1, generator=gen, dtype=torch.float64)

        terms = [
            LinearTerm(
                name="residual",
                weight=spec.weight("residual"),
                sampler=sample_residual,
                points=spec.points("residual", 4096),
                request=DerivativeRequest(gradient=(d,), laplacian=tuple(range(d))),
                operator=heat_operator,
                target=lambda b: b["f"][:, None],
            ),
            value_term(spec, "initial_value", sample_initial, spec.points("initial", 1024), 100.0),
            wall_term(spec, gen, box, times=wall_times, default_points=1024),
        ]
        return CompiledProblem(spec, axes, 1, terms, evaluate_scalar(spec, axes))

    def reference(self, spec: ProblemBase) -> GridData:
        grid, space, r = reference_space(spec)
        spanning(spec, space)
        pde = spec.pde

        def source(t: float) -> np.ndarray:
            return on_grid(spec, pde.rhs, {**space, "t": np.array([t])})[..., 0]

        u = solve_heat(
            list(space.values()),
            pde.diffusivity,
            on_grid(spec, spec.initial.value, space),
            grid["t"],
            fd_walls(spec, space),
            source=source,
            t0=spec.domain["t"][0],
            dt=spec.reference.dt,
        )
        return fd_data(spec, grid, u, r)

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return initial_value_target(spec)


register(Heat())
