r"""Frequency-domain full-waveform inversion (FWI) by the adjoint-state method.

Forward problem
---------------
For every source ``s`` the discrete stretched Helmholtz equation of
:mod:`reference_solvers.helmholtz` (time convention :math:`e^{+i\omega t}`, PML in divergence
form, ``u = 0`` on the outer edge of the box),

.. math::  A(m)\,u_s = b_s,\qquad
           A(m) = K + \operatorname{diag}(g \odot m),\qquad g = \omega^2 e_x e_y,
           \qquad b_s = e_x e_y f_s,

is solved on the ``(nx, ny)`` node grid (C order, ``indexing="ij"``). The unknown model is the
squared slowness :math:`m = 1/c^2`. ``K`` (the stretched Laplacian) does not depend on ``m``;
``g`` is zero on the boundary nodes (identity rows). ``A`` is complex *symmetric*
(:math:`A^T = A`) but not Hermitian (:math:`A^H = \bar A \ne A` inside the PML). One sparse
factorisation of ``A`` serves all sources.

Receivers and misfit
--------------------
Receiver values are bilinear interpolations of the nodal field, :math:`d^{pred}_s = P u_s`
with the real sparse matrix ``P`` of :func:`sample_operator`. The misfit is

.. math::  J(m) = \tfrac12 \sum_s \lVert P u_s(m) - d_s \rVert_2^2,\qquad
           \text{relative misfit} = \frac{\lVert P U - D\rVert_F}{\lVert D\rVert_F}.

Adjoint-state gradient
----------------------
Let :math:`r_s = P u_s - d_s`. Differentiating :math:`A u_s = b_s` along a real perturbation
:math:`\delta m` gives :math:`A\,\delta u_s = -\operatorname{diag}(g \odot u_s)\,\delta m`, and
since ``J`` is a real function of complex ``u``,

.. math::  \delta J = \operatorname{Re} \sum_s r_s^H P\,\delta u_s
                    = -\operatorname{Re} \sum_s r_s^H P A^{-1}
                      \operatorname{diag}(g \odot u_s)\,\delta m .

With the adjoint field :math:`\lambda_s` defined by :math:`A^H \lambda_s = P^T r_s` we have
:math:`r_s^H P A^{-1} = \lambda_s^H`, so
:math:`\partial J/\partial m_k = -\operatorname{Re} \sum_s \overline{\lambda_{s,k}}\, g_k\,
u_{s,k}`. Conjugating the adjoint equation (``P`` is real) gives
:math:`A^T \bar\lambda_s = P^T \bar r_s`, and :math:`A^T = A`. Hence with
:math:`\mu_s = \bar\lambda_s`

.. math::  A\,\mu_s = P^T \bar r_s,\qquad
           \frac{\partial J}{\partial m_k} = -\operatorname{Re}\Big( g_k \sum_s \mu_{s,k}\,
           u_{s,k} \Big),

i.e. the adjoint sources are the *conjugated* residuals injected at the receivers (the
frequency-domain image of time reversal), solved with the *same* factors as the forward
problem, and the imaging condition multiplies :math:`\mu_s` and :math:`u_s` without any
conjugation. (Using :math:`r_s` instead of :math:`\bar r_s`, or :math:`\bar u_s` in the
product, is the classic sign/phase bug; :file:`tests/test_ref_fwi.py` checks the gradient
against finite differences.) Cells outside the ``mask`` of free cells get zero gradient;
boundary nodes have :math:`g = 0` and so never influence the data.

Unknown source scaling (optional)
---------------------------------
With ``estimate_amplitude=True`` the predicted data are :math:`\alpha P u_s` with one complex
scalar :math:`\alpha` for all sources, eliminated by least squares (variable projection):
:math:`\alpha = \sum_s (P u_s)^H d_s / \sum_s \lVert P u_s\rVert^2`. Since
:math:`\partial J/\partial\bar\alpha = 0` at that :math:`\alpha`, the gradient is the one above
with :math:`r_s = \alpha P u_s - d_s` and adjoint source :math:`P^T \overline{\bar\alpha r_s}`
(envelope theorem).

Inversion
---------
:func:`invert` minimises

.. math::  \Phi(m) = \frac{J(m)}{\tfrac12 \lVert D\rVert_F^2}
   + \beta_{TV} \sum_{cells} h_x h_y \Big(\sqrt{|\nabla_h m|^2 + \varepsilon^2} -
     \varepsilon\Big)
   + \frac{\beta_{2}}{2} \sum_{cells} h_x h_y |\nabla_h m|^2

(the first term is the squared relative misfit; :math:`\nabla_h` are forward differences on
the nodes) with SciPy's L-BFGS-B over the free cells, under the box constraints
:math:`1/c_{max}^2 \le m \le 1/c_{min}^2`. Optionally (``multiscale``) the first stages use a
coarse bilinear parameterisation :math:`m_{free} = S\theta` (``S`` = bilinear interpolation
from a coarse node grid of the given spacing): the gradient is :math:`S^T \nabla_m\Phi`, and
because ``S`` forms convex combinations the same bounds on :math:`\theta` keep ``m`` in bounds.

Building sources for the SIREN cylinder data set
------------------------------------------------
``data_cylinder_5.mat`` holds free-space data for :math:`f_s = (1+i)\,g_\sigma(x - s)` with
:math:`\sigma = 0.01`, :math:`\omega = 20`::

    d = scipy.io.loadmat(path)
    f = np.stack([gaussian_source(x, y, s, 0.01, 1 + 1j) for s in d["source"]])
    result = invert(x, y, 20.0, f, d["receivers"], d["rec_val"], c0=1.0, bounds=(1.0, 3.0),
                    pml=PML(0.5), mask=physical_mask(x, y, PML(0.5)))

with e.g. ``x = y = np.linspace(-1, 1, 201)`` (the default PML, 0.5 wide, leaves the receivers
at ``|x|, |y| <= 0.402`` in the physical region). Half the unknowns for the same accuracy:
``np.linspace(-0.75, 0.75, 151)`` with ``PML(0.25)`` (true-model misfit 2.5 % at h = 0.01,
1.8 % at h = 0.005; see ``benchmarks/fwi_cylinder.py``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ._checks import check_finite, check_positive, check_shape, uniform_spacing
from .factorization import Backend, Factorization
from .helmholtz import (
    MIN_POINTS_PER_WAVELENGTH,
    PML,
    ResolutionWarning,
    helmholtz_operator,
    helmholtz_rhs,
    pml_profile,
    points_per_wavelength,
)

__all__ = [
    "FWIResult",
    "ForwardModel",
    "Wavefields",
    "forward",
    "invert",
    "misfit_and_gradient",
    "physical_mask",
    "predict_data",
    "sample_operator",
]

_DEFAULT_PML = PML()

#: ``callback(iteration, velocity, relative_misfit)``; returning ``True`` stops the inversion.
Callback = Callable[[int, np.ndarray, float], "bool | None"]


# ---------------------------------------------------------------------------------- sampling
def _axis(name: str, coord: np.ndarray) -> np.ndarray:
    c = np.asarray(check_finite(name, coord), dtype=float)
    if c.ndim != 1 or c.size < 2 or np.any(np.diff(c) <= 0):
        raise ValueError(f"{name} must be a strictly increasing 1-D array with >= 2 nodes")
    return c


def _bilinear(coord: np.ndarray, p: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Cell index ``i`` (``coord[i] <= p <= coord[i+1]``) and local coordinate ``t`` in [0, 1]."""
    span = coord[-1] - coord[0]
    tol = 1e-12 * span
    outside = (p < coord[0] - tol) | (p > coord[-1] + tol)
    if np.any(outside):
        k = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"point {k} has {name} = {p[k]:g} outside the grid [{coord[0]:g}, {coord[-1]:g}]"
        )
    i = np.clip(np.searchsorted(coord, p, side="right") - 1, 0, coord.size - 2)
    t = np.clip((p - coord[i]) / (coord[i + 1] - coord[i]), 0.0, 1.0)
    return i, t


def sample_operator(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> sp.csr_matrix:
    r"""Sparse bilinear interpolation ``P`` from nodal values to ``points``.

    For a point in the cell :math:`[x_i, x_{i+1}] \times [y_j, y_{j+1}]` with local
    coordinates :math:`t_x = (p_x - x_i)/(x_{i+1} - x_i)`, :math:`t_y` likewise,

    .. math::  (P u) = (1-t_x)(1-t_y)\,u_{ij} + t_x(1-t_y)\,u_{i+1,j}
                     + (1-t_x)t_y\,u_{i,j+1} + t_x t_y\,u_{i+1,j+1}.

    Parameters
    ----------
    x, y:
        Strictly increasing node coordinates (need not be uniform).
    points:
        ``(n_points, 2)`` array of ``(x, y)`` positions inside the box.

    Returns
    -------
    Real CSR matrix of shape ``(n_points, nx * ny)`` acting on C-order node vectors
    (``u.ravel()`` of an ``(nx, ny)`` array); every row sums to one and ``P`` reproduces
    bilinear functions ``a + b x + c y + d x y`` exactly.
    """
    x = _axis("x", x)
    y = _axis("y", y)
    pts = np.asarray(check_finite("points", points), dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points has shape {pts.shape}, expected (n_points, 2)")
    i, tx = _bilinear(x, pts[:, 0], "x")
    j, ty = _bilinear(y, pts[:, 1], "y")
    ny = y.size
    cols = np.stack([i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1], 1)
    vals = np.stack([(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty], 1)
    rows = np.repeat(np.arange(len(pts)), 4)
    p = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(len(pts), x.size * y.size))
    p.eliminate_zeros()
    return p


def physical_mask(x: np.ndarray, y: np.ndarray, pml: PML | None = _DEFAULT_PML) -> np.ndarray:
    """Boolean ``(nx, ny)`` mask of the interior nodes outside the PML (the physical region).

    Nodes on the inner edge of the layer (where the damping starts from zero) count as
    physical. This is the default ``mask`` of :func:`invert` (the velocity stays at its
    starting, background value inside the absorbing layer).
    """
    x = _axis("x", x)
    y = _axis("y", y)
    # sigma / omega = a0 (d / w)^2: "zero" up to round-off in the node coordinates.
    tol = 1e-12 * (pml.a0 if pml is not None else 1.0)
    sx, _ = pml_profile(x, x[0], x[-1], pml, 1.0)
    sy, _ = pml_profile(y, y[0], y[-1], pml, 1.0)
    mask = (sx <= tol)[:, None] & (sy <= tol)[None, :]
    mask[[0, -1], :] = False
    mask[:, [0, -1]] = False
    return mask


# ---------------------------------------------------------------------------------- problem
def _sources(f: np.ndarray, nx: int, ny: int) -> tuple[np.ndarray, bool]:
    f = np.asarray(check_finite("sources_rhs", f))
    single = f.ndim == 2
    f = f[None] if single else f
    if f.ndim != 3 or f.shape[1:] != (nx, ny):
        raise ValueError(
            f"sources_rhs has shape {np.shape(f)}, expected (nsrc, {nx}, {ny}) or ({nx}, {ny})"
        )
    return f.astype(complex), single


@dataclass
class Wavefields:
    """The solution of :meth:`ForwardModel.solve` for one model: the nodal fields ``u``
    (``(n, nsrc)``, C-order nodes), the receiver data ``P u`` (``(n_receivers, nsrc)``) and the
    factorisation of ``A(m)``, kept for adjoint solves (freed by :meth:`release` or when
    garbage-collected)."""

    u: np.ndarray
    data: np.ndarray
    factorization: Factorization

    def release(self) -> None:
        self.factorization.release()


class ForwardModel:
    r"""The ``m``-independent parts of :math:`A(m) u_s = b_s` on one grid, and the data map.

    Holds ``K`` of :math:`A(m) = K + \operatorname{diag}(g m)` (CSR, with the data positions
    of its diagonal), :math:`g = \omega^2 e_x e_y` (0 on boundary nodes), the right-hand sides
    ``b`` (``(n, nsrc)``) and the receiver operator ``P`` (see the module docstring).
    :meth:`solve` gives the wavefields and data of one squared-slowness model ``m``;
    :meth:`gradient` the adjoint-state gradient of any real function of those data.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        omega: float,
        sources_rhs: np.ndarray,
        receivers: np.ndarray,
        pml: PML | None = _DEFAULT_PML,
        backend: Backend = "auto",
    ) -> None:
        self.x = np.asarray(x, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.hx = uniform_spacing("x", self.x)
        self.hy = uniform_spacing("y", self.y)
        if not (math.isfinite(omega) and omega > 0):
            raise ValueError(f"omega must be positive and finite, got {omega}")
        self.omega = float(omega)
        self.shape = (self.x.size, self.y.size)
        nx, ny = self.shape
        f, _ = _sources(sources_rhs, nx, ny)
        self.nsrc = f.shape[0]
        self.b = helmholtz_rhs(self.x, self.y, omega, f, pml).reshape(nx * ny, self.nsrc)
        self.P = sample_operator(self.x, self.y, receivers)
        # g = omega^2 e_x e_y at interior nodes, 0 on the edge (exactly the rhs of f = 1).
        ones = np.ones(self.shape, dtype=complex)
        self.g = (omega**2) * helmholtz_rhs(self.x, self.y, omega, ones, pml)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResolutionWarning)
            a1 = helmholtz_operator(self.x, self.y, omega, 1.0, pml)
        rows = np.repeat(np.arange(a1.shape[0]), np.diff(a1.indptr))
        self.diag_pos = np.flatnonzero(rows == a1.indices)
        if self.diag_pos.size != a1.shape[0]:  # pragma: no cover - operator always has a diagonal
            raise RuntimeError("Helmholtz operator without a full diagonal")
        self.K = a1
        self.K.data[self.diag_pos] -= self.g  # remove the c = 1 mass term
        self.backend = backend

    def operator(self, m_flat: np.ndarray) -> sp.csr_matrix:
        """``A(m) = K + diag(g m)`` sharing ``K``'s sparsity pattern."""
        a = self.K.copy()
        a.data[self.diag_pos] += self.g * m_flat
        return a

    def solve(self, m_flat: np.ndarray) -> Wavefields:
        """Wavefields and receiver data of the squared slowness ``m`` (flat, C order), all
        sources with one factorisation."""
        lu = Factorization(self.operator(m_flat), symmetric=True, backend=self.backend)
        u = lu.solve(self.b)
        return Wavefields(u=u, data=np.asarray(self.P @ u), factorization=lu)

    def gradient(self, fields: Wavefields, data_gradient: np.ndarray) -> np.ndarray:
        r"""Adjoint-state gradient :math:`\partial L/\partial m` (flat, real) of a real
        function :math:`L` of the predicted data :math:`d = P u`, given
        ``data_gradient`` :math:`G = \partial L/\partial \operatorname{Re} d +
        i\,\partial L/\partial \operatorname{Im} d` (``(n_receivers, nsrc)``).

        :math:`\delta L = \operatorname{Re}\sum_s G_s^H P\,\delta u_s` and
        :math:`A\,\delta u_s = -\operatorname{diag}(g \odot u_s)\,\delta m`; with
        :math:`A\mu_s = P^T \bar G_s` (the same factors, :math:`A^T = A`),

        .. math::  \frac{\partial L}{\partial m_k} = -\operatorname{Re}\Big(g_k
                   \sum_s \mu_{s,k}\,u_{s,k}\Big).

        For :math:`L = \tfrac12\sum_s\lVert d_s - d^{obs}_s\rVert^2`, :math:`G` is the
        residual and this is the gradient of the module docstring.
        """
        g = np.asarray(data_gradient)
        if g.shape != fields.data.shape:
            raise ValueError(f"data_gradient has shape {g.shape}, expected {fields.data.shape}")
        mu = fields.factorization.solve(self.P.T @ np.conj(g))
        return -np.real(self.g * np.sum(mu * fields.u, axis=1))


class _Problem:
    """One FWI data set: the :class:`ForwardModel`, the observed data and the free cells."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        omega: float,
        sources_rhs: np.ndarray,
        receivers: np.ndarray,
        data: np.ndarray,
        pml: PML | None,
        mask: np.ndarray | None,
        backend: Backend,
        estimate_amplitude: bool,
    ) -> None:
        self.model = model = ForwardModel(x, y, omega, sources_rhs, receivers, pml, backend)
        self.x, self.y, self.omega, self.shape = model.x, model.y, model.omega, model.shape
        d = np.asarray(check_finite("data", data))
        if d.shape != (model.P.shape[0], model.nsrc):
            raise ValueError(
                f"data has shape {d.shape}, expected (n_receivers, n_sources) = "
                f"({model.P.shape[0]}, {model.nsrc})"
            )
        self.data = d.astype(complex)
        self.data_norm2 = float(np.vdot(self.data, self.data).real)
        if self.data_norm2 == 0:
            raise ValueError("data are identically zero")
        if mask is None:
            free = np.ones(self.shape, dtype=bool)
        else:
            free = np.asarray(mask)
            if free.shape != self.shape or free.dtype != bool:
                raise ValueError(f"mask must be a boolean array of shape {self.shape}")
        # Boundary nodes never influence the data (identity rows): never free.
        free = free.copy()
        free[[0, -1], :] = False
        free[:, [0, -1]] = False
        self.free = free.ravel()
        self.estimate_amplitude = estimate_amplitude

    def evaluate(
        self, m_flat: np.ndarray, gradient: bool = True
    ) -> tuple[float, np.ndarray | None, float, complex]:
        """``J``, ``dJ/dm`` (flat, zero off the free cells), relative misfit, amplitude."""
        fields = self.model.solve(m_flat)
        try:
            pred = fields.data
            alpha = 1.0 + 0.0j
            if self.estimate_amplitude:
                den = float(np.vdot(pred, pred).real)
                alpha = complex(np.vdot(pred, self.data) / den) if den > 0 else 1.0 + 0.0j
            r = alpha * pred - self.data
            rr = float(np.vdot(r, r).real)
            misfit = 0.5 * rr
            rel = math.sqrt(rr / self.data_norm2)
            if not gradient:
                return misfit, None, rel, alpha
            # dJ/d(alpha P u) = r, and d(alpha P u) = alpha P du: G = conj(alpha) r.
            grad = self.model.gradient(fields, np.conj(alpha) * r)
        finally:
            fields.release()
        grad[~self.free] = 0.0
        return misfit, grad, rel, alpha


def _slowness_checked(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.ascontiguousarray(
        check_positive("m", check_shape("m", m, shape)), dtype=float
    ).ravel()


def _warn_resolution(x: np.ndarray, y: np.ndarray, omega: float, c_min: float) -> None:
    ppw = points_per_wavelength(x, y, omega, c_min)
    if ppw < MIN_POINTS_PER_WAVELENGTH:
        warnings.warn(
            f"only {ppw:.1f} grid points per wavelength at velocity {c_min:g} "
            f"(need >= {MIN_POINTS_PER_WAVELENGTH:g} for a second-order Helmholtz solve)",
            ResolutionWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------- public API
def forward(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    velocity: np.ndarray | float,
    sources_rhs: np.ndarray,
    pml: PML | None = _DEFAULT_PML,
    backend: Backend = "auto",
) -> tuple[np.ndarray, Factorization]:
    r"""Wavefields of all sources with one factorisation of :math:`A(c)`.

    Solves :math:`(\Delta + \omega^2/c^2) u_s = f_s` with the PML of
    :mod:`reference_solvers.helmholtz` (the box ``[x[0], x[-1]] x [y[0], y[-1]]`` includes the
    layer). ``sources_rhs`` holds the source terms :math:`f_s` at the nodes, complex
    ``(nsrc, nx, ny)`` (or ``(nx, ny)`` for one source); the PML weighting :math:`e_x e_y f`
    is applied here.

    Returns
    -------
    wavefields:
        Complex ``u`` with the shape of ``sources_rhs``.
    factorization:
        The :class:`~reference_solvers.factorization.Factorization` of ``A`` (complex
        symmetric), e.g. for adjoint solves; call ``.release()`` when done.
    """
    a = helmholtz_operator(x, y, omega, velocity, pml)  # validates and warns
    nx, ny = np.size(x), np.size(y)
    f, single = _sources(sources_rhs, nx, ny)
    b = helmholtz_rhs(x, y, omega, f, pml).reshape(nx * ny, f.shape[0])
    lu = Factorization(a, symmetric=True, backend=backend)
    u = np.ascontiguousarray(lu.solve(b).T).reshape(-1, nx, ny)
    return (u[0] if single else u), lu


def predict_data(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    velocity: np.ndarray | float,
    sources_rhs: np.ndarray,
    receivers: np.ndarray,
    pml: PML | None = _DEFAULT_PML,
    backend: Backend = "auto",
) -> np.ndarray:
    """Synthetic receiver data ``P u_s``, complex ``(n_receivers, n_sources)``."""
    u, lu = forward(x, y, omega, velocity, sources_rhs, pml, backend)
    lu.release()
    u = u[None] if u.ndim == 2 else u
    p = sample_operator(x, y, receivers)
    return np.asarray(p @ u.reshape(u.shape[0], -1).T)


def misfit_and_gradient(
    m: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    sources_rhs: np.ndarray,
    receivers: np.ndarray,
    data: np.ndarray,
    pml: PML | None = _DEFAULT_PML,
    mask: np.ndarray | None = None,
    *,
    estimate_amplitude: bool = False,
    backend: Backend = "auto",
) -> tuple[float, np.ndarray]:
    r"""Misfit :math:`J = \tfrac12\sum_s\lVert P u_s - d_s\rVert^2` and its adjoint-state gradient.

    Parameters
    ----------
    m:
        Squared slowness :math:`1/c^2` at the nodes, ``(nx, ny)``, positive.
    x, y, omega, pml:
        Grid (uniform, box includes the PML), angular frequency, absorbing layer.
    sources_rhs:
        Source terms :math:`f_s`, complex ``(nsrc, nx, ny)``.
    receivers:
        ``(n_receivers, 2)`` positions; data are bilinear samples (:func:`sample_operator`).
    data:
        Observed data, complex ``(n_receivers, nsrc)``.
    mask:
        Boolean ``(nx, ny)``, ``True`` on the free cells (default: all). The gradient is zero
        elsewhere (and always on the boundary nodes).
    estimate_amplitude:
        Eliminate one unknown complex source scale by least squares (see module docstring).

    Returns
    -------
    ``(J, dJ/dm)`` with the gradient as a real ``(nx, ny)`` array. The gradient is

    .. math::  \frac{\partial J}{\partial m_k} = -\operatorname{Re}\Big(\omega^2 e_x e_y
               \sum_s \mu_{s,k}\,u_{s,k}\Big),\qquad A\mu_s = P^T\bar r_s,

    one factorisation of ``A`` serving the forward and the adjoint solves (derivation in the
    module docstring: :math:`\mu_s = \bar\lambda_s` with :math:`A^H\lambda_s = P^T r_s` and
    :math:`A^T = A`).
    """
    prob = _Problem(
        x, y, omega, sources_rhs, receivers, data, pml, mask, backend, estimate_amplitude
    )
    m_flat = _slowness_checked(m, prob.shape)
    _warn_resolution(prob.x, prob.y, prob.omega, 1.0 / math.sqrt(float(np.max(m_flat))))
    misfit, grad, _, _ = prob.evaluate(m_flat)
    assert grad is not None
    return misfit, grad.reshape(prob.shape)


# ---------------------------------------------------------------------------------- inversion
class _Regulariser:
    r"""TV and Tikhonov penalties on forward differences of ``m`` (see module docstring)."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, tv: float, tikhonov: float, epsilon: float
    ) -> None:
        nx, ny = x.size, y.size
        hx, hy = float(x[1] - x[0]), float(y[1] - y[0])

        def diff(n: int, h: float) -> sp.csr_matrix:
            return sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n)) / h

        def first(n: int) -> sp.csr_matrix:
            return sp.eye(n - 1, n, format="csr")

        self.dx = sp.kron(diff(nx, hx), first(ny), format="csr")
        self.dy = sp.kron(first(nx), diff(ny, hy), format="csr")
        self.area = hx * hy
        self.tv = float(tv)
        self.tikhonov = float(tikhonov)
        self.epsilon = float(epsilon)
        if self.tv < 0 or self.tikhonov < 0:
            raise ValueError("regularisation weights tv and tikhonov must be >= 0")
        if self.tv > 0 and not self.epsilon > 0:
            raise ValueError(f"tv_epsilon must be positive, got {epsilon}")

    def __call__(self, m_flat: np.ndarray) -> tuple[float, np.ndarray]:
        value = 0.0
        grad = np.zeros_like(m_flat)
        if self.tv == 0 and self.tikhonov == 0:
            return value, grad
        gx = self.dx @ m_flat
        gy = self.dy @ m_flat
        if self.tv > 0:
            s = np.sqrt(gx**2 + gy**2 + self.epsilon**2)
            w = self.tv * self.area
            value += w * float(np.sum(s - self.epsilon))
            grad += w * (self.dx.T @ (gx / s) + self.dy.T @ (gy / s))
        if self.tikhonov > 0:
            w = self.tikhonov * self.area
            value += 0.5 * w * float(np.sum(gx**2 + gy**2))
            grad += w * (self.dx.T @ gx + self.dy.T @ gy)
        return value, grad


@dataclass
class FWIResult:
    """Outcome of :func:`invert`.

    Attributes
    ----------
    velocity:
        Final model ``c = 1/sqrt(m)``, ``(nx, ny)``.
    history:
        Relative data misfit ``||P U - D|| / ||D||`` of the start model and after every
        L-BFGS-B iteration (all stages).
    iterations:
        L-BFGS-B iterations performed (all stages).
    seconds:
        Wall time of :func:`invert`.
    slowness:
        Final squared slowness ``m``.
    evaluations:
        Misfit + gradient evaluations (each one factorisation, ``2 nsrc`` solves).
    objective_history:
        Objective ``Phi`` (squared relative misfit + regularisation) per history entry.
    amplitude:
        Source scale used for the final model (1 unless ``estimate_amplitude``).
    message:
        Optimizer message of the last stage.
    """

    velocity: np.ndarray
    history: list[float]
    iterations: int
    seconds: float
    slowness: np.ndarray
    evaluations: int = 0
    objective_history: list[float] = field(default_factory=list)
    amplitude: complex = 1.0 + 0.0j
    message: str = ""

    @property
    def misfit(self) -> float:
        """Final relative data misfit."""
        return self.history[-1]


def _coarse_axis(coord: np.ndarray, spacing: float) -> np.ndarray:
    lo, hi = float(coord.min()), float(coord.max())
    n = max(2, int(math.ceil((hi - lo) / spacing - 1e-9)) + 1)
    return np.linspace(lo, hi, n)


def invert(
    x: np.ndarray,
    y: np.ndarray,
    omega: float,
    sources_rhs: np.ndarray,
    receivers: np.ndarray,
    data: np.ndarray,
    *,
    bounds: tuple[float, float],
    m0: np.ndarray | float | None = None,
    c0: np.ndarray | float | None = None,
    pml: PML | None = _DEFAULT_PML,
    mask: np.ndarray | None = None,
    iterations: int = 50,
    tv: float = 0.0,
    tikhonov: float = 0.0,
    tv_epsilon: float | None = None,
    multiscale: Sequence[float] = (),
    estimate_amplitude: bool = False,
    callback: Callback | None = None,
    backend: Backend = "auto",
) -> FWIResult:
    r"""Classical single-frequency FWI: L-BFGS-B on the squared slowness ``m``.

    Minimises :math:`\Phi(m)` of the module docstring (squared relative misfit
    :math:`\lVert PU - D\rVert^2/\lVert D\rVert^2` plus optional TV / Tikhonov penalties) over
    the free cells, with the box constraints :math:`1/c_{max}^2 \le m \le 1/c_{min}^2`.

    Parameters
    ----------
    x, y, omega, sources_rhs, receivers, data, pml:
        As in :func:`misfit_and_gradient`.
    bounds:
        ``(c_min, c_max)`` velocity bounds, ``0 < c_min < c_max``.
    m0, c0:
        Starting model as squared slowness *or* velocity (exactly one; scalar or ``(nx, ny)``).
        Cells outside ``mask`` keep this value. Free cells are clipped into the bounds.
    mask:
        Boolean ``(nx, ny)`` of free cells. Default: :func:`physical_mask` (everything outside
        the PML, which keeps the start model), unlike :func:`misfit_and_gradient`, whose
        default frees every interior node.
    iterations:
        Maximum L-BFGS-B iterations per stage.
    tv, tikhonov:
        Weights :math:`\beta_{TV}`, :math:`\beta_2` (relative to the squared relative misfit).
    tv_epsilon:
        TV smoothing :math:`\varepsilon` in units of ``m`` per length; default
        ``1e-2 * (m_max - m_min) / (x[-1] - x[0])``.
    multiscale:
        Coarse parameter spacings (coordinate units, decreasing) run as stages before the
        final nodal stage, each for up to ``iterations`` iterations.
    estimate_amplitude:
        Eliminate one unknown complex source scale (variable projection).
    callback:
        ``callback(iteration, velocity, relative_misfit)`` after every iteration; return
        ``True`` to stop.
    backend:
        Sparse direct solver backend.

    Returns
    -------
    :class:`FWIResult`; ``history[k]`` is the relative misfit after iteration ``k``
    (``history[0]``: start model). Each iteration costs about one evaluation: one
    factorisation and ``2 nsrc`` solves. A :class:`ResolutionWarning` is issued if ``c_min``
    leaves fewer than 10 points per wavelength.
    """
    start = time.perf_counter()
    if mask is None:
        mask = physical_mask(x, y, pml)
    prob = _Problem(
        x, y, omega, sources_rhs, receivers, data, pml, mask, backend, estimate_amplitude
    )
    c_min, c_max = (float(v) for v in bounds)
    if not (0 < c_min < c_max and math.isfinite(c_max)):
        raise ValueError(f"bounds must satisfy 0 < c_min < c_max, got {bounds}")
    if (m0 is None) == (c0 is None):
        raise ValueError("give exactly one of m0 (squared slowness) or c0 (velocity)")
    if m0 is None:
        c_start = check_positive("c0", check_shape("c0", c0, prob.shape))
        m_start = 1.0 / np.asarray(c_start, dtype=float) ** 2
    else:
        m_start = np.asarray(m0, dtype=float)
    m = _slowness_checked(m_start, prob.shape).copy()
    if int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    spacings = [float(s) for s in multiscale]
    if any(not s > 0 for s in spacings):
        raise ValueError(f"multiscale spacings must be positive, got {list(multiscale)}")
    _warn_resolution(prob.x, prob.y, prob.omega, c_min)
    m_lo, m_hi = 1.0 / c_max**2, 1.0 / c_min**2
    eps = 1e-2 * (m_hi - m_lo) / (prob.x[-1] - prob.x[0]) if tv_epsilon is None else tv_epsilon
    run = _Inversion(prob, _Regulariser(prob.x, prob.y, tv, tikhonov, eps), (m_lo, m_hi), callback)
    m[run.free] = np.clip(m[run.free], m_lo, m_hi)
    run.evaluate(m)
    run.record()
    message = "no iterations requested"
    for spacing in [*spacings, None]:
        if run.stopped or iterations == 0:
            break
        m, message = run.stage(m, spacing, int(iterations))
    if not np.array_equal(run.last_m, m):
        run.evaluate(m)  # make the reported amplitude belong to the final model
    m_grid = m.reshape(prob.shape)
    return FWIResult(
        velocity=1.0 / np.sqrt(m_grid),
        history=run.history,
        iterations=run.nit,
        seconds=time.perf_counter() - start,
        slowness=m_grid,
        evaluations=run.nfev,
        objective_history=run.objective,
        amplitude=run.last_alpha,
        message=message,
    )


class _Inversion:
    """State of one :func:`invert` run: objective, counters, history, L-BFGS-B stages."""

    def __init__(
        self,
        prob: _Problem,
        reg: _Regulariser,
        bounds: tuple[float, float],
        callback: Callback | None,
    ) -> None:
        self.prob = prob
        self.reg = reg
        self.bounds = bounds
        self.callback = callback
        self.free = np.flatnonzero(prob.free)
        self.scale = 0.5 * prob.data_norm2  # J / scale = squared relative misfit
        self.history: list[float] = []
        self.objective: list[float] = []
        self.nit = 0
        self.nfev = 0
        self.stopped = False
        self.last_m = np.empty(0)
        self.last_rel = math.nan
        self.last_phi = math.nan
        self.last_alpha = 1.0 + 0.0j

    def evaluate(self, m_flat: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective ``Phi`` and its gradient with respect to the full nodal ``m``."""
        misfit, grad, rel, alpha = self.prob.evaluate(m_flat)
        assert grad is not None
        r_val, r_grad = self.reg(m_flat)
        phi = misfit / self.scale + r_val
        self.nfev += 1
        self.last_m, self.last_rel, self.last_phi, self.last_alpha = m_flat.copy(), rel, phi, alpha
        return phi, grad / self.scale + r_grad

    def record(self) -> None:
        self.history.append(float(self.last_rel))
        self.objective.append(float(self.last_phi))

    def stage(
        self, m: np.ndarray, spacing: float | None, iterations: int
    ) -> tuple[np.ndarray, str]:
        """One L-BFGS-B run on the nodal (``spacing=None``) or a coarse bilinear grid."""
        prob, free = self.prob, self.free
        lo, hi = self.bounds
        s_op: sp.csr_matrix | None = None
        if spacing is None:
            theta0 = m[free].copy()
        else:
            ix, iy = np.unravel_index(free, prob.shape)
            pts = np.stack([prob.x[ix], prob.y[iy]], 1)
            xc = _coarse_axis(pts[:, 0], spacing)
            yc = _coarse_axis(pts[:, 1], spacing)
            s_op = sample_operator(xc, yc, pts)  # fine free nodes <- coarse nodes
            xx, yy = np.meshgrid(xc, yc, indexing="ij")
            coarse = np.stack([xx.ravel(), yy.ravel()], 1)
            theta0 = np.clip(sample_operator(prob.x, prob.y, coarse) @ m, lo, hi)

        def to_m(theta: np.ndarray) -> np.ndarray:
            full = m.copy()
            full[free] = theta if s_op is None else s_op @ theta
            return full

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            phi, g = self.evaluate(to_m(theta))
            return phi, (g[free] if s_op is None else s_op.T @ g[free])

        def on_iteration(intermediate_result) -> None:  # noqa: ANN001 - scipy OptimizeResult
            self.nit += 1
            m_it = to_m(intermediate_result.x)
            if not np.array_equal(self.last_m, m_it):
                self.evaluate(m_it)
            self.record()
            if self.callback is not None:
                velocity = 1.0 / np.sqrt(m_it.reshape(prob.shape))
                if self.callback(self.nit, velocity, self.history[-1]):
                    self.stopped = True
                    raise StopIteration

        res = minimize(
            fun,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(lo, hi)] * theta0.size,
            callback=on_iteration,
            options={
                "maxiter": iterations,
                "maxfun": 3 * iterations + 20,
                "ftol": 1e-14,
                "gtol": 1e-14,
                "maxcor": 20,
            },
        )
        return to_m(res.x), str(res.message)
