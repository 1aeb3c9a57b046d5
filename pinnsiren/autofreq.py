"""FreSh ω₀ selection for a problem: what the problem knows before it is solved.

The target signal, sampled on a regular grid of ``model.fresh.grid`` nodes per spatial axis:

* wave: the initial displacement u(x, t0) (the network is evaluated on the slice t = t0);
* Helmholtz: a coarse FD solution (Re, Im) with the problem's PML and velocity (for an
  inversion, the initial velocity);
* Poisson: the right-hand side, or the boundary value when the right-hand side is constant;
* fit: the signal itself.

The untrained SIREN of the problem's ``model`` section is evaluated on the same grid for
each candidate ω₀ and several seeds, and :func:`pinnsiren.frequency.select_omega_0` picks the
ω₀ whose output spectrum is nearest (Wasserstein-1) to the target's.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from pinnsiren.errors import UserError
from pinnsiren.frequency import FreshResult, select_omega_0
from pinnsiren.nets import build_model
from pinnsiren.spec import ProblemSpec


def _space_grid(spec: ProblemSpec, n: int) -> dict[str, np.ndarray]:
    return {a: np.linspace(*spec.domain[a], n) for a in spec.space_axes}


def fresh_target(spec: ProblemSpec, in_axes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(target on the grid (*grid[, channels]), network inputs on the grid (*grid, d_in))."""
    n = spec.model.fresh.grid
    grid = _space_grid(spec, n)
    mesh = dict(zip(grid, np.meshgrid(*grid.values(), indexing="ij")))
    shape = tuple(len(v) for v in grid.values())
    if spec.kind == "wave":
        target = np.asarray(spec.initial.value(mesh), dtype=float)
        mesh = {**mesh, "t": np.full(shape, spec.domain["t"][0])}
    elif spec.kind == "helmholtz":
        from pinnsiren.pdes.helmholtz import pml_of, source_density
        from reference_solvers.helmholtz import solve_helmholtz

        velocity = spec.pde.velocity
        vfield = velocity.initial if spec.is_inversion else velocity
        c = np.asarray(vfield(mesh), dtype=float)
        rhs = source_density(mesh["x"], mesh["y"], spec.pde.sources[:1])
        u = solve_helmholtz(grid["x"], grid["y"], spec.pde.omega, c, rhs, pml_of(spec))
        target = np.stack([u.real, u.imag], axis=-1)
    elif spec.kind == "poisson":
        target = np.asarray(spec.pde.rhs(mesh), dtype=float)
        if np.ptp(target) == 0:
            target = np.asarray(spec.boundary.value(mesh), dtype=float)
        if np.ptp(target) == 0:
            raise UserError(
                f"{spec.name}: model.omega_0: auto needs a non-constant right-hand side or "
                "boundary value to tune on"
            )
    elif spec.kind == "fit":
        from pinnsiren.pdes.fit import load_fit_signal

        signal = load_fit_signal(spec)
        target = signal.values
        mesh = dict(zip(("x", "y"), np.meshgrid(signal.x, signal.y, indexing="ij")))
        shape = signal.shape
    else:  # pragma: no cover - the schema knows no other kinds
        raise UserError(f"{spec.name}: no FreSh target for {spec.kind}")
    coords = np.stack([np.broadcast_to(mesh[a], shape) for a in in_axes], axis=-1)
    return target, coords


def fresh_for_problem(
    spec: ProblemSpec, in_axes: tuple[str, ...], out_features: int
) -> tuple[FreshResult, float]:
    """Run FreSh on the problem (see module docstring); returns the result and its seconds."""
    start = time.perf_counter()
    target, coords = fresh_target(spec, in_axes)
    m = spec.model
    scale = [float(m.input_scale.get(a, 1.0)) for a in in_axes] if m.input_scale else None

    def factory(omega: float, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(
            "siren",
            len(in_axes),
            out_features,
            width=m.width,
            depth=m.depth,
            omega_0=omega,
            hidden_omega=m.hidden_omega,
            input_scale=scale,
        )

    result = select_omega_0(
        target, coords, factory, omegas=m.fresh.omegas, n_inits=m.fresh.inits, size=m.fresh.size
    )
    return result, time.perf_counter() - start
