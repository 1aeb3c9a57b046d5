r"""Scalar wave equation ``u_tt = c(x)^2 Δu`` in 1-D and 2-D (explicit leapfrog).

Equation: :math:`u_{tt} = c(\mathbf{x})^2 \Delta u` on a box, with initial displacement
``u(0) = u0`` and initial velocity ``u_t(0) = v0``. Units: ``c`` in length per time, ``times``
and ``dt`` in the same time unit.

Grid: node-centred tensor grid including the boundary nodes (``np.linspace`` per axis,
uniform spacing ``h_k``), arrays indexed ``[i_x, i_y]``.

Scheme
------
Second-order centred differences in space and the leapfrog (Störmer–Verlet) scheme in time,

.. math::  u^{n+1} = 2u^n - u^{n-1} + \Delta t^2\, c^2 \Delta_h u^n,

started by the second-order Taylor step
:math:`u^1 = u^0 + \Delta t\, v_0 + \tfrac{\Delta t^2}{2}\, c^2 \Delta_h u^0`.

Walls (``boundary`` is one kind for all walls, or a mapping face -> kind with faces
``"x-", "x+", "y-", "y+"``):

* ``"dirichlet"``: ``u = 0`` on the wall nodes (initial data are set to 0 there).
* ``"neumann"``: ``∂u/∂n = 0`` by the mirror ghost node ``u_{-1} = u_1``, i.e. the wall row of
  ``Δ_h`` is ``2 (u_1 - u_0) / h^2`` (second order).
* ``"absorbing"``: first-order Engquist–Majda condition ``u_t + c ∂u/∂n = 0`` imposed through
  the ghost node, ``u_{-1} = u_1 - (2h/c) u_t``, with the centred ``u_t = (u^{n+1} -
  u^{n-1}) / (2Δt)``. The wall update stays explicit (one scalar per node):

  .. math:: (1 + \beta\Delta t/2)\,u^{n+1} = \Delta t^2 c^2 \Delta_h^{N} u^n + 2u^n
            - (1 - \beta\Delta t/2)\,u^{n-1},\qquad \beta = 2c/h

  (``β`` summed over the absorbing faces a node lies on). Normal incidence is absorbed
  exactly in the continuum; a plane wave at angle ``θ`` reflects with amplitude
  ``(1 - cos θ) / (1 + cos θ)``. The discrete energy below can only decrease.

Time step and snapshots
-----------------------
Stability (von Neumann / energy): ``dt <= dt_limit = 1 / (c_max * sqrt(sum_k 1 / h_k^2))``,
which is ``h / (c_max sqrt(dim))`` on a uniform grid. Default
``dt = cfl * min(h) / (c_max * sqrt(dim))``; a user ``dt`` above ``dt_limit`` raises
``ValueError``. Snapshots are returned *exactly* at the requested ``times``: each interval
between consecutive snapshot times (starting at ``t = 0``) is split into the smallest integer
number of equal steps not longer than ``dt``. Equally spaced ``times`` therefore use one
constant step. Where the step changes between intervals, the variable-step leapfrog
``u^{n+1} = u^n + (dt_b/dt_a)(u^n - u^{n-1}) + dt_b (dt_a + dt_b)/2 · a^n`` is used
(still second order).

Discrete energy
---------------
With trapezoidal weights ``W`` (half weight on wall nodes), mass ``M = W / c^2`` and stiffness
``K = -W Δ_h^N`` (symmetric, positive semi-definite),

.. math::  E^{n+1/2} = \tfrac12 \left(\tfrac{u^{n+1}-u^n}{\Delta t}\right)^{\!T}
           M \left(\tfrac{u^{n+1}-u^n}{\Delta t}\right) + \tfrac12\, (u^{n+1})^T K\, u^n

is conserved to round-off by the scheme with Dirichlet/Neumann walls (and is the discrete
analogue of :math:`\tfrac12\int u_t^2/c^2 + |\nabla u|^2`); see :func:`wave_energy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from ._checks import as_coords, check_finite, check_positive, check_shape

__all__ = ["WALLS", "solve_wave", "stable_time_step", "wave_energy"]

Wall = Literal["dirichlet", "neumann", "absorbing"]
#: Accepted wall kinds.
WALLS: tuple[str, ...] = ("dirichlet", "neumann", "absorbing")
_FACES = ("x-", "x+", "y-", "y+")


def _second_difference(u: np.ndarray, axis: int, h: float) -> np.ndarray:
    """``d²u/dx²`` along ``axis`` with the mirror (Neumann) rows at both ends."""
    v = np.moveaxis(u, axis, 0)
    d = np.empty_like(v)
    d[1:-1] = v[2:] - 2.0 * v[1:-1] + v[:-2]
    d[0] = 2.0 * (v[1] - v[0])
    d[-1] = 2.0 * (v[-2] - v[-1])
    return np.moveaxis(d, 0, axis) / h**2


def _laplacian(u: np.ndarray, h: Sequence[float]) -> np.ndarray:
    """Second-order Laplacian with mirror ghost nodes on every wall (``Δ_h^N``)."""
    out = _second_difference(u, 0, h[0])
    for k in range(1, len(h)):
        out += _second_difference(u, k, h[k])
    return out


def _trapezoid_weights(shape: tuple[int, ...], h: Sequence[float]) -> np.ndarray:
    weight = np.ones(())
    for n, hk in zip(shape, h, strict=True):
        w = np.full(n, hk)
        w[0] *= 0.5
        w[-1] *= 0.5
        weight = np.multiply.outer(weight, w)
    return weight


def stable_time_step(coords: Sequence[np.ndarray], speed: np.ndarray | float) -> float:
    """Leapfrog stability limit ``1 / (c_max * sqrt(sum_k 1/h_k^2))`` for the given grid."""
    _, h = as_coords(coords, max_dim=2)
    c_max = float(np.max(check_positive("speed", speed)))
    return 1.0 / (c_max * math.sqrt(sum(1.0 / hk**2 for hk in h)))


def _walls(boundary: str | Mapping[str, str], dim: int) -> dict[str, str]:
    faces = _FACES[: 2 * dim]
    if isinstance(boundary, str):
        walls = dict.fromkeys(faces, boundary)
    else:
        unknown = set(boundary) - set(faces)
        if unknown:
            raise ValueError(f"unknown boundary face(s) {sorted(unknown)}; expected {list(faces)}")
        missing = [f for f in faces if f not in boundary]
        if missing:
            raise ValueError(f"missing boundary kind for face(s) {missing}")
        walls = {f: boundary[f] for f in faces}
    for face, kind in walls.items():
        if kind not in WALLS:
            raise ValueError(f"boundary {face!r} must be one of {list(WALLS)}, got {kind!r}")
    return walls


def _face_index(face: str, dim: int) -> tuple[slice | int, ...]:
    k = _FACES.index(face) // 2
    idx: list[slice | int] = [slice(None)] * dim
    idx[k] = 0 if face.endswith("-") else -1
    return tuple(idx)


def solve_wave(
    coords: Sequence[np.ndarray],
    speed: np.ndarray | float,
    u0: np.ndarray,
    v0: np.ndarray | float,
    times: Sequence[float] | np.ndarray,
    boundary: Wall | Mapping[str, Wall] = "dirichlet",
    dt: float | None = None,
    cfl: float = 0.5,
) -> np.ndarray:
    """Integrate ``u_tt = c^2 Δu`` from ``t = 0`` and return snapshots at ``times``.

    Parameters
    ----------
    coords:
        One or two uniformly spaced 1-D node arrays (x[, y]).
    speed:
        Wave speed ``c > 0`` at the nodes (grid shape) or a scalar.
    u0, v0:
        Initial displacement ``u(0)`` and velocity ``u_t(0)`` at the nodes (``v0`` may be a
        scalar).
    times:
        Non-decreasing snapshot times ``>= 0``.
    boundary:
        ``"dirichlet"``, ``"neumann"`` or ``"absorbing"`` for every wall, or a mapping
        ``{"x-": ..., "x+": ..., ...}``.
    dt:
        Maximum time step (default ``cfl * min(h) / (c_max * sqrt(dim))``); must not exceed
        the stability limit :func:`stable_time_step`.
    cfl:
        Courant number for the default step.

    Returns
    -------
    Array of shape ``(len(times), *grid)``.
    """
    axes, h = as_coords(coords, max_dim=2)
    dim = len(axes)
    shape = tuple(a.size for a in axes)
    c = check_positive("speed", check_shape("speed", speed, shape)).astype(float)
    u = check_finite("u0", check_shape("u0", u0, shape)).astype(float).copy()
    v = check_finite("v0", check_shape("v0", v0, shape)).astype(float).copy()
    if np.iscomplexobj(u0) or np.iscomplexobj(v0):
        raise ValueError("u0 and v0 must be real")
    t_out = check_finite("times", np.atleast_1d(np.asarray(times, dtype=float)))
    if t_out.ndim != 1 or t_out.size == 0:
        raise ValueError("times must be a non-empty 1-D sequence")
    if t_out[0] < 0 or np.any(np.diff(t_out) < 0):
        raise ValueError("times must be non-negative and non-decreasing")
    walls = _walls(boundary, dim)

    limit = 1.0 / (float(np.max(c)) * math.sqrt(sum(1.0 / hk**2 for hk in h)))
    if dt is None:
        if not (math.isfinite(cfl) and cfl > 0):
            raise ValueError(f"cfl must be positive, got {cfl}")
        dt = cfl * min(h) / (float(np.max(c)) * math.sqrt(dim))
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive and finite, got {dt}")
    if dt > limit * (1 + 1e-12):
        raise ValueError(
            f"time step dt={dt:.6g} exceeds the leapfrog stability limit {limit:.6g} "
            f"(= 1/(c_max*sqrt(sum 1/h^2)))"
        )

    c2 = c**2
    beta = np.zeros(shape)  # absorbing-wall damping rate 2c/h per face
    dirichlet = np.zeros(shape, dtype=bool)
    for face, kind in walls.items():
        idx = _face_index(face, dim)
        k = _FACES.index(face) // 2
        if kind == "absorbing":
            beta[idx] += 2.0 * c[idx] / h[k]
        elif kind == "dirichlet":
            dirichlet[idx] = True
    beta[dirichlet] = 0.0
    u[dirichlet] = 0.0
    v[dirichlet] = 0.0

    def accel(field: np.ndarray) -> np.ndarray:
        return c2 * _laplacian(field, h)

    out = np.empty((t_out.size, *shape))
    t_now = 0.0
    u_prev: np.ndarray | None = None  # u at t_now - dt_prev
    dt_prev = 0.0
    for m, t_target in enumerate(t_out):
        span = t_target - t_now
        if span > 0:
            n_steps = max(1, math.ceil(span / dt * (1 - 1e-12)))
            step = span / n_steps
            for _ in range(n_steps):
                if u_prev is None:
                    # Taylor start: u1 = u0 + dt v0 + dt^2/2 (c^2 Δu0 - β v0).
                    u_next = u + step * v + 0.5 * step**2 * (accel(u) - beta * v)
                else:
                    ratio = step / dt_prev
                    half = 0.5 * beta * step
                    u_next = (
                        0.5 * (dt_prev + step) * step * accel(u)
                        + u
                        + ratio * (u - u_prev)
                        + half * u_prev
                    ) / (1.0 + half)
                u_next[dirichlet] = 0.0
                u_prev, u = u, u_next
                dt_prev = step
            t_now = float(t_target)
        out[m] = u
    return out


def wave_energy(
    coords: Sequence[np.ndarray],
    speed: np.ndarray | float,
    u_prev: np.ndarray,
    u_next: np.ndarray,
    dt: float,
) -> float:
    r"""Discrete leapfrog energy :math:`E^{n+1/2}` between two consecutive time levels.

    .. math::  E = \tfrac12 \sum W\, c^{-2} \left(\tfrac{u^{n+1} - u^n}{\Delta t}\right)^2
                 + \tfrac12 \sum (u^{n+1})\, (-W \Delta_h^N u^n),

    with trapezoidal weights ``W``. Exactly conserved (to round-off) by :func:`solve_wave` with
    Dirichlet or Neumann walls; non-increasing with absorbing walls. Positive for
    ``dt < dt_limit``.
    """
    axes, h = as_coords(coords, max_dim=2)
    shape = tuple(a.size for a in axes)
    c = check_positive("speed", check_shape("speed", speed, shape))
    a = check_finite("u_prev", check_shape("u_prev", u_prev, shape)).astype(float)
    b = check_finite("u_next", check_shape("u_next", u_next, shape)).astype(float)
    w = _trapezoid_weights(shape, h)
    vel = (b - a) / dt
    kinetic = 0.5 * float(np.sum(w * vel**2 / c**2))
    potential = -0.5 * float(np.sum(w * b * _laplacian(a, h)))
    return kinetic + potential
