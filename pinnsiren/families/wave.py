"""Wave family: u_tt = c(x)² Δu in 1-D or 2-D space, t ∈ [t0, T].

Loss terms (network input order x[, y], t; one output u), all linear in u:
* ``residual``: r = u_tt − c² Δu at points whose times follow the curriculum window
  (:class:`pinnsiren.engine.sampling.Curriculum`), or over the whole horizon with causal weights;
* ``initial_value`` (Dirichlet initial condition): r = u(x, t0) − f(x);
* ``initial_velocity`` (Neumann initial condition): r = u_t(x, t0) − g(x);
* ``boundary`` (walls, unless ``boundary.kind: none``): Dirichlet r = u − h, Neumann
  r = ∂u/∂n − h, absorbing (first-order Engquist–Majda) r = u_t + c ∂u/∂n.

Causal weighting (Wang, Sankaran & Perdikaris, "Respecting causality is all you need",
2022): the horizon is cut into M chunks, L_k is the mean squared residual of chunk k, and
the residual loss is (1/M) Σ_k w_k L_k with w_k = exp(−ε Σ_{j<k} L_j) held constant in the
gradient, so later times only count once earlier ones are resolved. (A least-squares solve of
the output layer weighs the rows plainly.)

Reference: leapfrog (:func:`reference_solvers.wave.solve_wave`) with the PINN's walls, or
``reference.wall`` when the PINN has none. FreSh tunes on the initial displacement.
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
    coarsen,
    coords_of,
    curriculum_of,
    evaluate_scalar,
    exact_solution,
    grid_data,
    mesh_of,
    on_grid,
    reference_space,
)
from pinnsiren.families.registry import register
from pinnsiren.families.walls import wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from pinnsiren.schema.types import FieldValue, Strict
from reference_solvers.wave import solve_wave


class WavePDE(Strict):
    """u_tt = c(x)² Δu, 1-D or 2-D in space."""

    kind: Literal["wave"]
    speed: FieldValue = 1.0
    exact: FieldValue | None = None


def causal_reduce(t0: float, t1: float, chunks: int, epsilon: float):
    """The causal-weighted mean of squared residuals over time chunks."""

    def reduce(r: Tensor, batch: Batch) -> Tensor:
        t = batch["x"][:, -1]
        index = ((t - t0) / (t1 - t0) * chunks).long().clamp(0, chunks - 1)
        sq = (r**2).sum(dim=-1) if r.dim() > 1 else r**2
        sums = torch.zeros(chunks, dtype=sq.dtype, device=sq.device).index_add(0, index, sq)
        counts = torch.zeros(chunks, dtype=sq.dtype, device=sq.device).index_add(
            0, index, torch.ones_like(sq)
        )
        losses = sums / counts.clamp_min(1.0)
        with torch.no_grad():
            weights = torch.exp(-epsilon * (torch.cumsum(losses, 0) - losses))
        return (weights * losses).mean()

    return reduce


def _zero(b: Batch) -> Tensor:
    return torch.zeros_like(b["x"][:, :1])


class Wave(Family):
    kind = "wave"
    schema = WavePDE
    terms = ("residual", "boundary", "initial_value", "initial_velocity")
    point_keys = ("initial",)
    space = (1, 2)
    time_dependent = True
    initial_keys = ("value", "velocity")
    boundaries = ("none", "dirichlet", "neumann", "absorbing")
    reference_keys = ("refine", "cfl", "dt", "wall")
    default_grid = 128

    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        pde, initial = spec.pde, spec.initial
        space = spec.space_axes
        axes = space + ("t",)
        d = len(space)
        box = Box.from_domain(spec.domain, space)
        t0, t1 = spec.domain["t"]
        cur = curriculum_of(spec)
        causal = spec.sampling.causal
        constant_speed = pde.speed.is_constant()
        c_const = float(pde.speed({"x": np.zeros(1)})[0]) if constant_speed else 0.0

        def sample_residual(step: int, n: int) -> Batch:
            x = box.uniform(n, gen)
            if causal.enabled:
                t = t0 + (t1 - t0) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
            else:
                t = cur.times(n, step, gen)
            batch = {"x": torch.cat([x, t], dim=1)}
            if not constant_speed:
                batch["c2"] = pde.speed(coords_of(x, space)) ** 2
            return batch

        if constant_speed:  # u_tt − c² Δu as one weighted Laplacian of the jet
            request = DerivativeRequest(
                laplacian=tuple(range(d + 1)), laplacian_weights=(-(c_const**2),) * d + (1.0,)
            )

            def wave_operator(j: Jet, b: Batch) -> Tensor:
                return j.laplacian

        else:
            request = DerivativeRequest(second=(d,), laplacian=tuple(range(d)))

            def wave_operator(j: Jet, b: Batch) -> Tensor:
                return j.second[d] - b["c2"][:, None] * j.laplacian

        def sample_initial(step: int, n: int) -> Batch:
            x = box.uniform(n, gen)
            coords = coords_of(x, space)
            pts = torch.cat([x, torch.full((n, 1), t0, dtype=torch.float64)], dim=1)
            return {"x": pts, "f": initial.value(coords), "g": initial.velocity(coords)}

        def value(j: Jet, b: Batch) -> Tensor:
            return j.value

        def time_derivative(j: Jet, b: Batch) -> Tensor:
            return j.gradient[d]

        n_init = spec.points("initial", 1024)
        terms = [
            LinearTerm(
                name="residual",
                weight=spec.weight("residual"),
                sampler=sample_residual,
                points=spec.points("residual", 4096),
                request=request,
                operator=wave_operator,
                target=_zero,
                reduce=causal_reduce(t0, t1, causal.chunks, causal.epsilon)
                if causal.enabled
                else None,
            ),
            LinearTerm(
                name="initial_value",
                weight=spec.weight("initial_value", 100.0),
                sampler=sample_initial,
                points=n_init,
                request=DerivativeRequest(),
                operator=value,
                target=lambda b: b["f"][:, None],
            ),
            LinearTerm(
                name="initial_velocity",
                weight=spec.weight("initial_velocity", 10.0),
                sampler=sample_initial,
                points=n_init,
                request=DerivativeRequest(gradient=(d,)),
                operator=time_derivative,
                target=lambda b: b["g"][:, None],
            ),
        ]

        def wall_times(step: int, n: int) -> Tensor:
            lo, hi = cur.window(step)
            return lo + (hi - lo) * torch.rand(n, 1, generator=gen, dtype=torch.float64)

        kind = spec.boundary.kind
        if kind in ("dirichlet", "neumann"):
            terms.append(wall_term(spec, gen, box, times=wall_times, default_points=1024))
        elif kind == "absorbing":

            def sample_wall(step: int, n: int) -> Batch:
                x, normals, _ = box.on_faces(n, gen)
                pts = torch.cat([x, wall_times(step, n)], dim=1)
                return {"x": pts, "n": normals, "c": pde.speed(coords_of(x, space))}

            def absorbing(j: Jet, b: Batch) -> Tensor:
                flux = sum(j.gradient[i] * b["n"][:, i : i + 1] for i in range(d))
                return j.gradient[d] + b["c"][:, None] * flux

            terms.append(
                LinearTerm(
                    name="boundary",
                    weight=spec.weight("boundary", 100.0),
                    sampler=sample_wall,
                    points=spec.points("boundary", 1024),
                    request=DerivativeRequest(gradient=tuple(range(d + 1))),
                    operator=absorbing,
                    target=_zero,
                )
            )
        return CompiledProblem(spec, axes, 1, terms, evaluate_scalar(spec, axes))

    def reference(self, spec: ProblemBase) -> GridData:
        grid, space, r = reference_space(spec)
        wall = spec.reference.wall or (
            spec.boundary.kind if spec.boundary.kind != "none" else "absorbing"
        )
        if wall == "dirichlet" and not spec.boundary.value.is_constant():
            raise UserError(f"{spec.name}: the FD wave reference supports only u = 0 walls")
        try:
            u = solve_wave(
                list(space.values()),
                on_grid(spec, spec.pde.speed, space),
                on_grid(spec, spec.initial.value, space),
                on_grid(spec, spec.initial.velocity, space),
                grid["t"],
                boundary=wall,
                dt=spec.reference.dt,
                cfl=spec.reference.cfl,
            )
        except ValueError as exc:
            raise UserError(f"{spec.name}: reference: {exc}") from None
        data = grid_data(spec, "fd")
        data.add("u", coarsen(u, r, lead=1), tuple(data.grid))
        exact = exact_solution(spec, grid)
        if exact is not None:
            data.add("exact", exact, tuple(data.grid))
        return data

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = spec.model.fresh.grid
        mesh = mesh_of({a: np.linspace(*spec.domain[a], n) for a in spec.space_axes})
        shape = mesh[spec.space_axes[0]].shape
        target = np.broadcast_to(np.asarray(spec.initial.value(mesh), dtype=float), shape)
        return target, {**mesh, "t": np.full(shape, spec.domain["t"][0])}


register(Wave())
