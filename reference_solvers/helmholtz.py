r"""2-D frequency-domain wave equation (Helmholtz) with a perfectly matched layer.

Equation and conventions
------------------------
.. math::  \left(\Delta + \frac{\omega^2}{c(x, y)^2}\right) u = f, \qquad u \in \mathbb{C},

with time convention :math:`e^{+i\omega t}`: the outgoing field of a unit point source
:math:`f = \delta(x - x_s)` is :math:`u = \tfrac{i}{4} H_0^{(2)}(\omega r / c)`
(``scipy.special.hankel2``), i.e. it behaves like :math:`e^{-i\omega r/c}`. Units: any
consistent set (e.g. ``x`` in km, ``c`` in km/s, ``omega`` in rad/s); only ``omega/c`` matters.

PML (complex coordinate stretching)
-----------------------------------
On the box :math:`[x_{lo}, x_{hi}] \times [y_{lo}, y_{hi}]` the layer occupies the outer
``width`` of every side. With depth into the layer measured from its inner edge,

.. math::  d(x) = \max(0,\; x_{lo} + w - x,\; x - (x_{hi} - w)),\qquad
           \sigma(x) = \omega\, a_0\, (d / w)^2,\qquad
           e_x(x) = 1 - i\,\sigma(x)/\omega = 1 - i\,a_0\,(d/w)^2,

and the same in ``y``. The solved equation is the stretched Helmholtz equation in
divergence form

.. math::  \partial_x\!\left(\tfrac{e_y}{e_x}\partial_x u\right)
         + \partial_y\!\left(\tfrac{e_x}{e_y}\partial_y u\right)
         + e_x e_y \tfrac{\omega^2}{c^2} u = e_x e_y f,

with :math:`u = 0` on the outer edge of the box. Outside the layer :math:`e_x = e_y = 1`
and this is the physical equation. An outgoing wave :math:`e^{-ikx}` is damped in the layer by
:math:`\exp(-k\int\sigma/\omega\,dx)`, i.e. by :math:`\exp(-k a_0 w / 3)` one way.

Discretisation
--------------
Node-centred grid including the boundary nodes (``x = np.linspace(...)``, arrays indexed
``[i_x, i_y]``), second-order central differences with the coefficients
:math:`e_y/e_x` evaluated *exactly* at the mid-points :math:`x_{i\pm 1/2}` (the profile is
analytic), so the discrete operator is complex symmetric (``A == A.T``). Unknowns are all
nodes in C order (``k = i_x * ny + i_y``); rows of boundary nodes are identity rows with zero
right-hand side, and the corresponding columns of interior rows are zeroed (equivalent since
``u = 0`` there, and it keeps the matrix symmetric).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ._checks import check_finite, check_positive, check_shape, uniform_spacing
from ._walls import walls
from .factorization import Backend, Factorization

__all__ = [
    "PML",
    "Factorization",
    "ResolutionWarning",
    "gaussian_density",
    "gaussian_source",
    "helmholtz_operator",
    "helmholtz_rhs",
    "pml_padding",
    "pml_profile",
    "points_per_wavelength",
    "solve_helmholtz",
    "solve_helmholtz_walls",
]

#: Minimum number of grid points per wavelength below which :class:`ResolutionWarning` is issued.
MIN_POINTS_PER_WAVELENGTH = 10.0


class ResolutionWarning(UserWarning):
    """The grid has too few points per wavelength for an accurate second-order solve."""


@dataclass(frozen=True)
class PML:
    """Perfectly matched layer profile ``sigma(d) = omega * a0 * (d / width)**2``.

    ``width`` is the thickness (coordinate units) of the layer on each side of the box;
    ``a0`` is the dimensionless strength: one-way amplitude decay across the layer at normal
    incidence is ``exp(-(omega / c) * a0 * width / 3)``.
    """

    width: float = 0.5
    a0: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"PML width must be positive and finite, got {self.width}")
        if not (math.isfinite(self.a0) and self.a0 >= 0):
            raise ValueError(f"PML a0 must be non-negative and finite, got {self.a0}")


def pml_profile(
    coord_1d: np.ndarray, lo: float, hi: float, pml: PML | None, omega: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""PML damping :math:`\sigma(x)` and its derivative :math:`d\sigma/dx` (numpy, vectorised).

    .. math::  d = \max(0, lo + w - x) + \max(0, x - (hi - w)),\qquad
               \sigma = \omega a_0 (d/w)^2,\qquad
               \frac{d\sigma}{dx} = \frac{2\omega a_0}{w^2}
                   \big(\max(0, x - (hi - w)) - \max(0, lo + w - x)\big).

    ``sigma`` has units of ``omega`` (1/time); the stretching factor is
    ``e = 1 - 1j * sigma / omega``. With ``pml=None`` both arrays are zero. Works for any
    array shape of ``coord_1d`` (points outside ``[lo, hi]`` continue the parabola).
    """
    x = np.asarray(coord_1d, dtype=float)
    if pml is None:
        return np.zeros_like(x), np.zeros_like(x)
    if 2 * pml.width >= hi - lo:
        raise ValueError(f"PML width {pml.width} leaves no physical region in [{lo}, {hi}]")
    w = pml.width
    d_left = np.maximum(0.0, (lo + w) - x)
    d_right = np.maximum(0.0, x - (hi - w))
    scale = omega * pml.a0
    sigma = scale * ((d_left + d_right) / w) ** 2
    dsigma = 2.0 * scale * (d_right - d_left) / w**2
    return sigma, dsigma


def _stretch(coord: np.ndarray, lo: float, hi: float, pml: PML | None, omega: float) -> np.ndarray:
    """Complex stretching factor ``e = 1 - i sigma / omega`` at ``coord``."""
    sigma, _ = pml_profile(coord, lo, hi, pml, omega)
    return 1.0 - 1j * sigma / omega


def pml_padding(coord: np.ndarray, width: float) -> tuple[np.ndarray, slice, float]:
    """Extend a physical axis on both sides by whole cells to make room for a PML.

    Returns ``(extended_axis, inner, pml_width)``: ``extended_axis[inner]`` equals ``coord``,
    and ``PML(width=pml_width)`` (``pml_width = k h >= width``, ``k`` whole cells) then
    starts exactly at the first and last physical node. Use it when the physical region of a
    problem is given and the PML must lie outside it.
    """
    h = uniform_spacing("coord", coord)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"PML width must be positive and finite, got {width}")
    k = math.ceil(width / h - 1e-9)
    c = np.asarray(coord, dtype=float)
    n = c.size + 2 * k
    ext = np.linspace(c[0] - k * h, c[-1] + k * h, n)
    ext[k : k + c.size] = c  # bitwise identical physical nodes
    return ext, slice(k, k + c.size), k * h


def points_per_wavelength(
    x: np.ndarray, y: np.ndarray, omega: float, velocity: np.ndarray | float
) -> float:
    """Grid points per shortest wavelength ``2 pi min(c) / (omega * max(hx, hy))``."""
    h = max(float(x[1] - x[0]), float(y[1] - y[0]))
    return 2.0 * math.pi * float(np.min(velocity)) / (omega * h)


def _validate(
    x: np.ndarray, y: np.ndarray, omega: float, velocity: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    hx = uniform_spacing("x", x)
    hy = uniform_spacing("y", y)
    if not (math.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be positive and finite, got {omega}")
    c = check_positive("velocity", check_shape("velocity", velocity, (x.size, y.size)))
    ppw = points_per_wavelength(x, y, omega, c)
    if ppw < MIN_POINTS_PER_WAVELENGTH:
        warnings.warn(
            f"only {ppw:.1f} grid points per wavelength in the slowest region "
            f"(need >= {MIN_POINTS_PER_WAVELENGTH:g} for a second-order Helmholtz solve)",
            ResolutionWarning,
            stacklevel=3,
        )
    return x, y, hx, hy, c


def helmholtz_operator(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    velocity: np.ndarray | float,
    pml: PML | None = None,
) -> sp.csr_matrix:
    r"""Sparse matrix ``A`` of the (stretched) Helmholtz operator on the ``(nx, ny)`` grid.

    ``A u`` is :math:`\partial_x(\tfrac{e_y}{e_x}\partial_x u) + \partial_y(\tfrac{e_x}{e_y}
    \partial_y u) + e_x e_y \omega^2 c^{-2} u` at interior nodes and ``u`` at boundary nodes
    (identity rows; boundary columns of interior rows are zero). Nodes are in C order of the
    ``(nx, ny)`` grid. The right-hand side that matches ``A`` is ``e_x e_y f`` at interior
    nodes and 0 at boundary nodes (see :func:`helmholtz_rhs`). ``A`` is complex symmetric.
    """
    x, y, hx, hy, c = _validate(x, y, omega, velocity)
    return _assemble(x, y, hx, hy, omega, c, pml)


def _assemble(
    x: np.ndarray,
    y: np.ndarray,
    hx: float,
    hy: float,
    omega: float,
    c: np.ndarray,
    pml: PML | None,
) -> sp.csr_matrix:
    """Five-point stencil in C order; identity rows/zero columns for the boundary nodes.

    Interior row ``(i, j)``:  ``[bx_{i+1/2} (u_{i+1,j} - u_ij) - bx_{i-1/2} (u_ij - u_{i-1,j})]
    * ey_j / hx^2 + [by_{j+1/2} (...) - by_{j-1/2} (...)] * ex_i / hy^2 + ex_i ey_j w^2/c^2 u_ij``
    with ``bx = 1/e_x`` at x mid-points and ``by = 1/e_y`` at y mid-points.
    """
    nx, ny = x.size, y.size
    ex = _stretch(x, x[0], x[-1], pml, omega)
    ey = _stretch(y, y[0], y[-1], pml, omega)
    bx = 1.0 / _stretch(0.5 * (x[1:] + x[:-1]), x[0], x[-1], pml, omega)  # (nx-1,)
    by = 1.0 / _stretch(0.5 * (y[1:] + y[:-1]), y[0], y[-1], pml, omega)  # (ny-1,)
    node = np.arange(nx * ny, dtype=np.int32 if nx * ny < 2**31 else np.int64).reshape(nx, ny)
    inner = node[1:-1, 1:-1]
    # Coupling coefficients of interior nodes to their four neighbours.
    west = (bx[:-1, None] * ey[None, 1:-1]) / hx**2  # (nx-2, ny-2): to (i-1, j)
    east = (bx[1:, None] * ey[None, 1:-1]) / hx**2  # to (i+1, j)
    south = (ex[1:-1, None] * by[None, :-1]) / hy**2  # to (i, j-1)
    north = (ex[1:-1, None] * by[None, 1:]) / hy**2  # to (i, j+1)
    centre = -(west + east + south + north) + (
        np.outer(ex[1:-1], ey[1:-1]) * (omega / c[1:-1, 1:-1]) ** 2
    )
    rows = [inner.ravel()]
    cols = [inner.ravel()]
    vals = [centre.ravel()]
    # Neighbour couplings, only between interior nodes (boundary columns are zero).
    for coef, di, dj in ((west, -1, 0), (east, 1, 0), (south, 0, -1), (north, 0, 1)):
        nb = node[1 + di : nx - 1 + di, 1 + dj : ny - 1 + dj]
        ok = np.ones(coef.shape, dtype=bool)
        if di == -1:
            ok[0, :] = False
        elif di == 1:
            ok[-1, :] = False
        elif dj == -1:
            ok[:, 0] = False
        else:
            ok[:, -1] = False
        rows.append(inner[ok])
        cols.append(nb[ok])
        vals.append(coef[ok])
    boundary = np.ones((nx, ny), dtype=bool)
    boundary[1:-1, 1:-1] = False
    rows.append(node[boundary])
    cols.append(node[boundary])
    vals.append(np.ones(int(boundary.sum()), dtype=complex))
    a = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(nx * ny, nx * ny),
    )
    a.sort_indices()
    return a


def helmholtz_rhs(
    x: np.ndarray, y: np.ndarray, omega: float, f: np.ndarray, pml: PML | None = None
) -> np.ndarray:
    """Right-hand side(s) matching :func:`helmholtz_operator`: ``e_x e_y f``, 0 on the edge.

    ``f`` has shape ``(nx, ny)`` or ``(nsrc, nx, ny)``; the result has shape ``(nx*ny,)`` or
    ``(nx*ny, nsrc)`` (C-order nodes in rows).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    f = check_finite("sources", f)
    single = f.ndim == 2
    f = f[None] if single else f
    if f.ndim != 3 or f.shape[1:] != (x.size, y.size):
        raise ValueError(
            f"sources has shape {np.shape(f)}, expected ({x.size}, {y.size}) or "
            f"(nsrc, {x.size}, {y.size})"
        )
    ex = _stretch(x, x[0], x[-1], pml, omega)
    ey = _stretch(y, y[0], y[-1], pml, omega)
    b = f.astype(complex) * np.outer(ex, ey)[None]
    b[:, 0, :] = b[:, -1, :] = 0.0
    b[:, :, 0] = b[:, :, -1] = 0.0
    b = b.reshape(b.shape[0], -1).T
    return b[:, 0] if single else b


def solve_helmholtz(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    velocity: np.ndarray | float,
    sources: np.ndarray,
    pml: PML | None = PML(),  # noqa: B008 - frozen, immutable default
    backend: Backend = "auto",
) -> np.ndarray:
    r"""Solve :math:`(\Delta + \omega^2/c^2) u = f` (with PML) for one or many sources.

    Parameters
    ----------
    x, y:
        Node coordinates (``np.linspace``), the box is ``[x[0], x[-1]] x [y[0], y[-1]]``
        and includes the PML (outer ``pml.width`` of every side).
    omega:
        Angular frequency (rad per unit time).
    velocity:
        Wave speed ``c`` at the nodes, shape ``(nx, ny)`` (or a scalar), ``c > 0``.
    sources:
        Complex ``f`` at the nodes, shape ``(nx, ny)`` or ``(nsrc, nx, ny)``.
    pml:
        PML profile, or ``None`` for plain Dirichlet ``u = 0`` walls.
    backend:
        Sparse direct solver (see :class:`Factorization`); one factorisation serves all sources.

    Returns
    -------
    Complex ``u`` with the shape of ``sources``; zero on the outer edge of the box.
    """
    x, y, hx, hy, c = _validate(x, y, omega, velocity)
    b = helmholtz_rhs(x, y, omega, sources, pml)
    # No reference to the matrix is kept here, so Factorization can free it early.
    lu = Factorization(_assemble(x, y, hx, hy, omega, c, pml), symmetric=True, backend=backend)
    u = lu.solve(b)
    lu.release()
    if u.ndim == 1:
        return u.reshape(x.size, y.size)
    return np.ascontiguousarray(u.T).reshape(-1, x.size, y.size)


def gaussian_density(
    x: np.ndarray,
    y: np.ndarray,
    center: Sequence[float],
    sigma: float,
    amplitude: complex = 1.0,
) -> np.ndarray:
    r"""Normalised 2-D Gaussian ``amplitude * exp(-|r - r0|^2 / (2 sigma^2)) / (2 pi sigma^2)``
    at points ``(x, y)`` (broadcastable arrays); complex.

    Its integral over the plane is ``amplitude``; far from the source the Helmholtz field it
    drives is the point-source field times ``exp(-(omega/c)^2 sigma^2 / 2)``.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    r2 = (np.asarray(x, dtype=float) - center[0]) ** 2 + (
        np.asarray(y, dtype=float) - center[1]
    ) ** 2
    g = np.exp(-r2 / (2.0 * sigma**2)) / (2.0 * math.pi * sigma**2)
    return (complex(amplitude) * g).astype(complex)


def gaussian_source(
    x: np.ndarray,
    y: np.ndarray,
    center: Sequence[float],
    sigma: float,
    amplitude: complex = 1.0,
) -> np.ndarray:
    """:func:`gaussian_density` on the grid ``x × y`` (complex ``(nx, ny)``, ``indexing="ij"``)."""
    x = np.asarray(x, dtype=float)[:, None]
    y = np.asarray(y, dtype=float)[None, :]
    return gaussian_density(x, y, center, sigma, amplitude)


def solve_helmholtz_walls(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    velocity: np.ndarray | float,
    sources: np.ndarray,
    boundary: Mapping[str, object],
) -> np.ndarray:
    r"""Solve :math:`(\Delta + \omega^2/c^2) u = f` in a box with Dirichlet / Neumann walls.

    ``boundary`` maps each face ``x-, x+, y-, y+`` to a condition with ``kind``
    (``"dirichlet"``: u = value, ``"neumann"``: ∂u/∂n = value, n outward) and ``value`` (a
    scalar or an array along the face, real or complex), e.g.
    :class:`reference_solvers.poisson.FaceCondition`. Five-point stencil with ghost nodes at
    the Neumann walls (second order), one sparse LU (``scipy.sparse.linalg.splu``) for all
    sources. ``sources`` has shape ``(nx, ny)`` or ``(nsrc, nx, ny)``; so has the result.
    A wavenumber that is (close to) a Dirichlet/Neumann eigenvalue of the box makes the
    problem (nearly) singular: that is the physics of a closed cavity, not of the solver.
    """
    x, y, hx, hy, c = _validate(x, y, omega, velocity)
    f = check_finite("sources", sources)
    single = f.ndim == 2
    f = (f[None] if single else f).astype(complex)
    shape = (x.size, y.size)
    if f.shape[1:] != shape:
        raise ValueError(f"sources has shape {np.shape(sources)}, expected {shape}")
    w = walls(shape, (hx, hy), boundary, complex_ok=True)
    k2 = ((omega / c) ** 2).ravel()
    free = (~w.fixed).ravel().astype(float)
    a = sp.diags(free) @ (sp.diags(k2) - w.laplacian) + sp.diags(1.0 - free)
    rhs = (f - w.ghost[None]).reshape(f.shape[0], -1)
    rhs[:, w.fixed.ravel()] = w.values.ravel()[w.fixed.ravel()]
    lu = splu(sp.csc_matrix(a, dtype=complex))
    u = np.stack([lu.solve(b) for b in rhs]).reshape(f.shape)
    return u[0] if single else u
