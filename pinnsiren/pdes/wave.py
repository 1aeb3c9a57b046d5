"""Wave family: u_tt = c(x)² Δu in 1-D or 2-D space, t ∈ [t0, T].

Loss terms (network input order x[, y], t; one output u)
* ``residual``: r = u_tt − c² Δu at points whose times follow the curriculum window
  (see :mod:`pinnsiren.geometry`), or over the whole horizon with causal weights;
* ``initial_value`` (Dirichlet initial condition): r = u(x, t0) − f(x);
* ``initial_velocity`` (Neumann initial condition): r = u_t(x, t0) − g(x);
* ``boundary`` (walls, unless ``boundary.kind: none``): Dirichlet r = u − h, Neumann
  r = ∂u/∂n − h, absorbing (first-order Engquist–Majda) r = u_t + c ∂u/∂n.

Causal weighting (Wang, Sankaran & Perdikaris, "Respecting causality is all you need",
2022): the horizon is cut into M chunks, L_k is the mean squared residual of chunk k, and
the residual loss is (1/M) Σ_k w_k L_k with w_k = exp(−ε Σ_{j<k} L_j) held constant in the
gradient, so later times only count once earlier ones are resolved.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pinnsiren.geometry import Box, Curriculum
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
from pinnsiren.spec import ProblemSpec, WavePDE


def curriculum_of(spec: ProblemSpec) -> Curriculum:
    c = spec.sampling.curriculum
    total = sum(p.steps for p in spec.training.phases)
    t0, t1 = spec.domain["t"]
    enabled = c.enabled and not spec.sampling.causal.enabled
    return Curriculum(
        t0=t0,
        t_end=t1,
        ramp_steps=c.ramp_steps or max(1, total // 2),
        enabled=enabled,
        initial_fraction=c.initial_fraction,
        focus_fraction=c.focus_fraction,
        focus_duration=c.focus_duration,
    )


def causal_reduce(t0: float, t1: float, chunks: int, epsilon: float):
    """The causal-weighted mean of squared residuals over time chunks."""

    def reduce(r: Tensor, batch: Batch) -> Tensor:
        t = batch["x"][:, -1]
        index = ((t - t0) / (t1 - t0) * chunks).long().clamp(0, chunks - 1)
        sq = r**2
        sums = torch.zeros(chunks, dtype=sq.dtype, device=sq.device).index_add(0, index, sq)
        counts = torch.zeros(chunks, dtype=sq.dtype, device=sq.device).index_add(
            0, index, torch.ones_like(sq)
        )
        losses = sums / counts.clamp_min(1.0)
        with torch.no_grad():
            weights = torch.exp(-epsilon * (torch.cumsum(losses, 0) - losses))
        return (weights * losses).mean()

    return reduce


def compile_wave(spec: ProblemSpec, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    assert isinstance(pde, WavePDE) and spec.initial is not None
    space = spec.space_axes
    axes = space + ("t",)
    d = len(space)
    box = Box.from_domain(spec.domain, space)
    t0, t1 = spec.domain["t"]
    cur = curriculum_of(spec)
    constant_speed = pde.speed.is_constant()
    c_const = (
        float(pde.speed({"x": torch.zeros(1, dtype=torch.float64)})[0]) if constant_speed else 0.0
    )
    n_res = spec.points("residual", 4096)
    n_init = spec.points("initial", 1024)
    n_bnd = spec.points("boundary", 1024)

    def sample_residual(step: int) -> Batch:
        x = box.uniform(n_res, gen)
        if spec.sampling.causal.enabled:
            t = t0 + (t1 - t0) * torch.rand(n_res, 1, generator=gen, dtype=torch.float64)
        else:
            t = cur.times(n_res, step, gen)
        pts = torch.cat([x, t], dim=1)
        batch = {"x": pts}
        if not constant_speed:
            batch["c2"] = pde.speed(coords_of(x, space)) ** 2
        return batch

    if constant_speed:
        req = DerivativeRequest(
            laplacian=tuple(range(d + 1)), laplacian_weights=(-(c_const**2),) * d + (1.0,)
        )
    else:
        req = DerivativeRequest(second=(d,), laplacian=tuple(range(d)))

    def residual(model: nn.Module, batch: Batch) -> Tensor:
        j = jet(model, batch["x"], req)
        if constant_speed:
            return j.laplacian[:, 0]
        return j.second[d][:, 0] - batch["c2"] * j.laplacian[:, 0]

    causal = spec.sampling.causal
    reduce = causal_reduce(t0, t1, causal.chunks, causal.epsilon) if causal.enabled else None

    def sample_initial(step: int) -> Batch:
        x = box.uniform(n_init, gen)
        coords = coords_of(x, space)
        pts = torch.cat([x, torch.full((n_init, 1), t0, dtype=torch.float64)], dim=1)
        return {"x": pts, "f": spec.initial.value(coords), "g": spec.initial.velocity(coords)}

    dt_req = DerivativeRequest(gradient=(d,))

    def initial_value(model: nn.Module, batch: Batch) -> Tensor:
        return model(batch["x"])[:, 0] - batch["f"]

    def initial_velocity(model: nn.Module, batch: Batch) -> Tensor:
        return jet(model, batch["x"], dt_req).gradient[d][:, 0] - batch["g"]

    terms = [
        Term("residual", spec.weight("residual"), sample_residual, residual, reduce=reduce),
        Term("initial_value", spec.weight("initial_value", 100.0), sample_initial, initial_value),
        Term(
            "initial_velocity",
            spec.weight("initial_velocity", 10.0),
            sample_initial,
            initial_velocity,
        ),
    ]
    kind = spec.boundary.kind
    if kind != "none":
        grad_req = DerivativeRequest(gradient=tuple(range(d + 1)))

        def sample_boundary(step: int) -> Batch:
            x, normals, _ = box.on_faces(n_bnd, gen)
            lo, hi = cur.window(step)
            t = lo + (hi - lo) * torch.rand(n_bnd, 1, generator=gen, dtype=torch.float64)
            coords = coords_of(x, space)
            return {
                "x": torch.cat([x, t], dim=1),
                "n": normals,
                "h": spec.boundary.value(coords),
                "c": pde.speed(coords),
            }

        def boundary(model: nn.Module, batch: Batch) -> Tensor:
            if kind == "dirichlet":
                return model(batch["x"])[:, 0] - batch["h"]
            j = jet(model, batch["x"], grad_req)
            flux = sum(j.gradient[i][:, 0] * batch["n"][:, i] for i in range(d))
            if kind == "neumann":
                return flux - batch["h"]
            return j.gradient[d][:, 0] + batch["c"] * flux  # absorbing

        terms.append(Term("boundary", spec.weight("boundary", 100.0), sample_boundary, boundary))

    def evaluate(model: nn.Module):
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        u = predict(model, grid_points(data.grid, axes))[:, 0].reshape(shape)
        data.add("u", u, tuple(data.grid))
        return data

    return CompiledProblem(spec, axes, 1, terms, evaluate, {"curriculum": cur})
