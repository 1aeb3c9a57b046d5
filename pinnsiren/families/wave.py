"""Wave family: u_tt = c(x)² Δu in 1-D or 2-D space, t ∈ [t0, T].

Loss terms (network input order x[, y], t; one output u), all linear in u:
* ``residual``: r = u_tt − c² Δu at points whose times follow the curriculum window
  (:class:`pinnsiren.engine.sampling.Curriculum`), or over the whole horizon with causal weights;
* ``initial_value`` (Dirichlet initial condition): r = u(x, t0) − f(x);
* ``initial_velocity`` (Neumann initial condition): r = u_t(x, t0) − g(x);
* ``boundary`` (walls, unless ``boundary.kind: none``): Dirichlet r = u − h, Neumann
  r = ∂u/∂n − h, absorbing (first-order Engquist–Majda) r = u_t + c ∂u/∂n.

Free space (``pde.free_space``, walls ``none``): the box is a window on the whole plane. The
initial data vanish (below ``threshold`` of their maxima) outside a ball B(x_c, R₀), so by
finite propagation speed u(x, t) = 0 wherever |x − x_c| > R(t) = R₀ + c_max (t − t0): the
*domain of influence*. The read-out is zero outside it; residual points are drawn inside it,
and initial-condition points over its domain of dependence B(x_c, R₀ + 2 c_max (T − t0)) (what
the field inside the influence region depends on). Outside the ball, the network does not have
to represent zero — which is what the FD reference with absorbing walls computes.

Light-cone features (``model.init: light_cone``, constant speed, ``model.depth: 0``): the
first layer's rows are (k, ±c|k|) (k ~ N(0, ω₀²) per spatial axis, phase uniform), so every
feature sin(k·x ± c|k| t + φ) is a plane wave that solves the wave equation exactly: the
residual vanishes identically and the least-squares output layer only has to fit the initial
conditions (Trefftz features).

Causal weighting (Wang, Sankaran & Perdikaris, "Respecting causality is all you need",
2022): the horizon is cut into M chunks, L_k is the mean squared residual of chunk k, and
the residual loss is (1/M) Σ_k w_k L_k with w_k = exp(−ε Σ_{j<k} L_j) held constant in the
gradient, so later times only count once earlier ones are resolved. (A least-squares solve of
the output layer weighs the rows plainly.)

Reference: leapfrog (:func:`reference_solvers.wave.solve_wave`) with the PINN's walls, or
``reference.wall`` when the PINN has none. FreSh tunes on the initial displacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BeforeValidator
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.nets import Siren
from pinnsiren.engine.terms import Batch, LinearTerm
from pinnsiren.errors import UserError
from pinnsiren.families.base import (
    CompiledProblem,
    Family,
    coords_of,
    curriculum_of,
    evaluate_scalar,
    fd_data,
    grid_data,
    grid_points,
    initial_value_target,
    mesh_of,
    on_grid,
    predict,
    reference_space,
    value_term,
)
from pinnsiren.families.registry import register
from pinnsiren.families.walls import wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from pinnsiren.schema.types import FieldValue, NonNegFloat, PositiveFloat, Strict
from reference_solvers.wave import solve_wave


class FreeSpace(Strict):
    """``pde.free_space``: solve in the domain of influence of the initial data (module
    docstring); ``true`` is ``{enabled: true}``."""

    enabled: bool = False
    threshold: PositiveFloat = 1e-6
    margin: NonNegFloat = 0.02


def _free_space(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class WavePDE(Strict):
    """u_tt = c(x)² Δu, 1-D or 2-D in space."""

    kind: Literal["wave"]
    speed: FieldValue = 1.0
    exact: FieldValue | None = None
    free_space: Annotated[FreeSpace, BeforeValidator(_free_space)] = FreeSpace()


@dataclass(frozen=True)
class Influence:
    """The domain of influence: the ball of radius R₀ + c (t − t0) around ``center``."""

    center: np.ndarray
    radius: float
    speed: float
    t0: float

    def radius_at(self, t: Tensor | np.ndarray) -> Tensor | np.ndarray:
        return self.radius + self.speed * (t - self.t0)

    def ball(self, radius: Tensor, gen: torch.Generator) -> Tensor:
        """One point uniform in the ball of the given radius per entry of ``radius`` (N,)."""
        n, d = len(radius), len(self.center)
        direction = torch.randn(n, d, generator=gen, dtype=torch.float64)
        direction /= direction.norm(dim=1, keepdim=True).clamp_min(1e-300)
        r = radius * torch.rand(n, generator=gen, dtype=torch.float64) ** (1.0 / d)
        return torch.as_tensor(self.center) + r[:, None] * direction

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Mask of the (x, t) rows inside the domain of influence."""
        dist = np.linalg.norm(points[:, :-1] - self.center, axis=1)
        return dist <= self.radius_at(points[:, -1])


def influence_of(spec: ProblemBase) -> Influence | None:
    """The domain of influence of ``pde.free_space`` (None when it is off)."""
    pde, free = spec.pde, spec.pde.free_space
    if not free.enabled:
        return None
    space = spec.space_axes
    n = 4096 if len(space) == 1 else 512
    grid = {a: np.linspace(*spec.domain[a], n) for a in space}
    mesh = mesh_of(grid)
    shape = mesh[space[0]].shape
    above = np.zeros(shape, dtype=bool)
    for field in (spec.initial.value, spec.initial.velocity):
        v = np.abs(np.broadcast_to(np.asarray(field(mesh), dtype=float), shape))
        if v.max() > 0:
            above |= v > free.threshold * v.max()
    speed = float(np.max(on_grid(spec, pde.speed, grid)))
    t0 = spec.domain["t"][0]
    if not above.any():
        return Influence(np.zeros(len(space)), 0.0, speed, t0)
    pts = np.stack([mesh[a][above] for a in space], axis=-1)
    center = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    step = max((hi - lo) / (n - 1) for lo, hi in (spec.domain[a] for a in space))
    radius = float(np.linalg.norm(pts - center, axis=1).max()) + 2 * step + free.margin
    return Influence(center, radius, speed, t0)


def standing_pairs(width: int) -> Tensor:
    """(width + 1, width/2 + 1): ties neurons 2j and 2j + 1 (the ± pair of one wavenumber) and
    keeps the bias: sin(a + ωt) + sin(a − ωt) = 2 sin(a) cos(ωt) has u_t(x, t0) = 0 exactly."""
    pairs = width // 2
    tie = torch.zeros(width + 1, pairs + 1, dtype=torch.float64)
    index = torch.arange(pairs)
    tie[2 * index, index] = 1.0
    tie[2 * index + 1, index] = 1.0
    tie[width, pairs] = 1.0
    return tie


def masked(spec: ProblemBase, influence: Influence):
    """The read-out with u = 0 outside the domain of influence (free space)."""
    axes = spec.space_axes + ("t",)

    def evaluate(model: nn.Module) -> GridData:
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        pts = grid_points(data.grid, axes)
        u = np.where(influence.inside(pts), predict(model, pts)[:, 0], 0.0)
        data.add("u", u.reshape(shape), tuple(data.grid))
        data.attrs["free_space_radius"] = influence.radius
        return data

    return evaluate


def light_cone_init_(net: Siren, speed: float, space_dims: int) -> None:
    """First-layer rows (k, ±c|k|)/ω₀ with k ~ N(0, ω₀²) per spatial axis and phases
    uniform in [0, 2π): every feature sin(k·x ± c|k|t + φ) solves u_tt = c²Δu (module
    docstring). Uses the global torch generator (seeded by the model's construction)."""
    w0 = float(net.omega_0)
    scale = net.input_scale
    width = net.first.out_features
    with torch.no_grad():  # neurons 2j and 2j + 1: one wavenumber, one phase, both signs
        k = (torch.randn(width // 2 + 1, space_dims, dtype=torch.float64) * w0).repeat_interleave(
            2, dim=0
        )[:width]
        sign = torch.where(torch.arange(width) % 2 == 0, 1.0, -1.0).to(torch.float64)
        rows = torch.cat([k, (sign * speed * k.norm(dim=1))[:, None]], dim=1)
        rows = rows / (w0 * scale.to(torch.float64))
        net.first.weight.copy_(rows.to(net.first.weight.dtype))
        phase = (2 * math.pi * torch.rand(width // 2 + 1, dtype=torch.float64)).repeat_interleave(2)
        net.first.bias.copy_((phase[:width] / w0).to(net.first.bias.dtype))


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
    model_inits = ("siren", "tuner", "light_cone")

    def check(self, spec: ProblemBase, fail) -> None:
        pde, model = spec.pde, spec.model
        if pde.free_space.enabled and spec.boundary.kind != "none":
            fail("pde.free_space", "free space has no walls (needs boundary.kind none)")
        if model.init == "light_cone":
            if not pde.speed.is_constant():
                fail("model.init", "light_cone features need a constant pde.speed")
            if model.depth != 0:
                fail("model.depth", "light_cone features are one hidden layer (depth 0)")
            if model.omega_0 == "auto":
                fail("model.omega_0", "light_cone takes omega_0 as the wavenumber scale, not auto")

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
        influence = influence_of(spec)

        def sample_residual(step: int, n: int) -> Batch:
            if causal.enabled:
                t = t0 + (t1 - t0) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
            else:
                t = cur.times(n, step, gen)
            if influence is None:
                x = box.uniform(n, gen)
            else:
                x = influence.ball(influence.radius_at(t[:, 0]), gen)
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
            if influence is None:
                x = box.uniform(n, gen)
            else:  # the domain of dependence of the influence region up to T, and a quarter of
                # the points where the data are (where the field varies most)
                reach = torch.full((n,), influence.radius_at(2 * t1 - t0), dtype=torch.float64)
                reach[: n // 4] = influence.radius
                x = influence.ball(reach, gen)
            coords = coords_of(x, space)
            pts = torch.cat([x, torch.full((n, 1), t0, dtype=torch.float64)], dim=1)
            return {"x": pts, "f": initial.value(coords), "g": initial.velocity(coords)}

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
            value_term(spec, "initial_value", sample_initial, n_init, 100.0),
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
        evaluate = evaluate_scalar(spec, axes) if influence is None else masked(spec, influence)

        light_cone = spec.model.init == "light_cone"

        def assemble(net: nn.Module) -> nn.Module:
            if light_cone:
                light_cone_init_(net, c_const, d)
            return net

        tie = None
        at_rest = spec.initial.velocity.is_constant() and not np.any(
            spec.initial.velocity({"x": np.zeros(1)})
        )
        if light_cone and at_rest and spec.model.width % 2 == 0:
            pairs = standing_pairs(spec.model.width)

            def tie(model: nn.Module) -> Tensor:
                return pairs

        return CompiledProblem(spec, axes, 1, terms, evaluate, assemble=assemble, tie=tie)

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
        return fd_data(spec, grid, u, r)

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return initial_value_target(spec)


register(Wave())
