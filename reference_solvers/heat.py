r"""Heat equation on 1-D and 2-D boxes, Crank–Nicolson in time.

Equation: **u_t = κ Δu + f(x, t)**, κ > 0 a constant diffusivity, u(x, t0) = u0(x).

Grid: node-centred tensor grid including the boundary nodes (each axis ``np.linspace``,
uniform spacing ``h_k``), arrays indexed ``[i_x, i_y]``. Walls, one
:class:`~reference_solvers.poisson.FaceCondition` per face, constant in time:

* ``dirichlet``: u = g on the face nodes (the initial value there is replaced by g);
* ``neumann``: ∂u/∂n = g, n the outward normal, by the ghost node u_{−1} = u_1 + 2 h g, which
  turns the face row of −Δ_h into (2u_0 − 2u_1)/h² − 2g/h.

Space: second-order central differences, L = −Δ_h as a Kronecker sum of 1-D operators.
Time: Crank–Nicolson, second order and unconditionally stable,

    (I + κΔt/2 L) u^{n+1} = (I − κΔt/2 L) u^n + Δt (κ b + (f^n + f^{n+1})/2),

b the Neumann ghost terms 2g/h on the face nodes; Dirichlet rows are identity rows with the
wall value. Each output interval is cut into equal steps no longer than ``dt`` (default: the
smallest grid spacing), so the requested times are hit exactly; one sparse LU factorisation
serves every step of the same length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ._checks import as_coords, check_finite
from ._walls import walls
from .poisson import FaceCondition

__all__ = ["solve_heat"]

Source = np.ndarray | Callable[[float], np.ndarray] | None


def solve_heat(
    coords: Sequence[np.ndarray],
    kappa: float,
    u0: np.ndarray,
    times: Sequence[float],
    boundary: Mapping[str, FaceCondition],
    source: Source = None,
    t0: float = 0.0,
    dt: float | None = None,
) -> np.ndarray:
    """Solve the heat equation (module docstring) and return u at ``times``.

    Parameters
    ----------
    coords:
        1 or 2 uniformly spaced, increasing node arrays (axis order x, y).
    kappa:
        Diffusivity κ > 0.
    u0:
        u at the initial time, shape ``tuple(len(c) for c in coords)``.
    times:
        Increasing output times ≥ the initial time.
    boundary:
        One :class:`FaceCondition` per face of the box.
    source:
        f: None (zero), a fixed array of the grid shape, or a callable ``f(t)`` returning one.
    t0:
        The initial time of ``u0``.
    dt:
        Longest time step (default: the smallest grid spacing).

    Returns
    -------
    u of shape ``(len(times), *grid shape)``.
    """
    axes, h = as_coords(coords, max_dim=2)
    shape = tuple(a.size for a in axes)
    if not (math.isfinite(kappa) and kappa > 0):
        raise ValueError(f"kappa must be positive and finite, got {kappa}")
    u = np.array(check_finite("u0", u0), dtype=float)
    if u.shape != shape:
        raise ValueError(f"u0 has shape {u.shape}, expected {shape}")
    times = np.asarray(times, dtype=float)
    start = float(t0)
    if times.ndim != 1 or times.size == 0 or np.any(np.diff(times) < 0) or times[0] < start:
        raise ValueError("times must be a non-empty increasing list from the initial time on")
    w = walls(shape, h, boundary)
    lap, ghost, fixed, wall = w.laplacian, w.ghost, w.fixed, w.values
    u[fixed] = wall[fixed]

    def f_at(t: float) -> np.ndarray:
        if source is None:
            return np.zeros(shape)
        value = source(t) if callable(source) else source
        value = np.asarray(check_finite("source", value), dtype=float)
        return np.broadcast_to(value, shape)

    fixed_flat = fixed.ravel()
    keep = sp.diags((~fixed_flat).astype(float))
    step = dt if dt is not None else min(h)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"dt must be positive, got {dt}")
    factors: dict[float, tuple] = {}

    def system(tau: float) -> tuple:
        """LU of the left-hand side and the right-hand operator for a step of length tau."""
        if tau not in factors:
            left = sp.identity(u.size, format="csr") + 0.5 * kappa * tau * (keep @ lap)
            right = sp.identity(u.size, format="csr") - 0.5 * kappa * tau * (keep @ lap)
            factors[tau] = (splu(left.tocsc()), right.tocsr())
        return factors[tau]

    out = np.empty((times.size, *shape))
    t, flat = start, u.ravel()
    f_now = f_at(t).ravel()
    for i, target in enumerate(times):
        span = target - t
        n = max(1, math.ceil(span / step - 1e-9)) if span > 0 else 0
        tau = span / n if n else 0.0
        for _ in range(n):
            lu, right = system(tau)
            f_next = f_at(t + tau).ravel()
            rhs = right @ flat + tau * (kappa * ghost.ravel() + 0.5 * (f_now + f_next))
            rhs[fixed_flat] = wall.ravel()[fixed_flat]
            flat = lu.solve(rhs)
            t, f_now = t + tau, f_next
        out[i] = flat.reshape(shape)
    return out
