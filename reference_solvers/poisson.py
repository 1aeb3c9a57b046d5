r"""Poisson equation on 1-D, 2-D and 3-D boxes.

Convention: **−Δu = f** (so ``f = 1`` with ``u = 0`` on the walls gives a positive ``u``).

Grid: node-centred tensor grid including the boundary nodes, each axis ``np.linspace(lo, hi,
n)`` (uniform spacing ``h_k`` per axis, they may differ), arrays indexed ``[i_x, i_y, i_z]``.

Boundary conditions, one per face ``"x-", "x+", "y-", "y+", "z-", "z+"``:

* ``FaceCondition("dirichlet", g)``: ``u = g`` on the face nodes.
* ``FaceCondition("neumann", g)``: ``∂u/∂n = g`` with ``n`` the **outward** normal (so on
  ``"x-"`` it prescribes ``-∂u/∂x``). Second-order ghost-node treatment: the mirror node
  ``u_{-1} = u_1 + 2 h g`` is eliminated, which gives the half-cell equation
  ``(h/2) · [-(2 u_1 - 2 u_0)/h^2] = (h/2) f_0 + g`` (after the symmetric scaling below).

``g`` is a scalar or an array with the face shape (the grid shape with that axis removed).
Where faces meet, a Dirichlet condition wins over a Neumann one; where two Dirichlet faces
meet, the face earlier in the order above sets the value.

Discretisation: second-order central differences, assembled as a Kronecker sum of 1-D
operators. The system is multiplied by the trapezoidal weights ``W`` (a half weight on every
Neumann boundary node per axis), which makes it symmetric positive (semi-)definite; Dirichlet
nodes are eliminated. The constant-coefficient system is solved exactly by the fast
diagonalisation method (eigenvectors of the 1-D operators, ``O(N · Σ n_k)`` work, default) or
by a sparse direct solve (:class:`~reference_solvers.factorization.Factorization`); both give
the same discrete solution to round-off.

All-Neumann problems are singular (constants). The discrete compatibility condition is
``Σ W f + Σ_faces Σ W_face g = 0``. The solver returns the solution of the *projected*
problem ``−Δ_h u = f − λ`` with the constant ``λ`` that makes the data compatible, normalised
to zero weighted mean ``Σ W u = 0`` (the constant mode is dropped by the fast
diagonalisation; the direct method solves the bordered system ``[[S, W1], [(W1)^T, 0]]``).
``λ`` tends to zero with ``h`` for compatible continuous data; if it is larger than 1e-3 of
``max |f|`` (or of the boundary flux scale) an :class:`IncompatibleDataWarning` reports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh_tridiagonal

from ._checks import as_coords, check_finite
from ._walls import FACES, second_difference
from .factorization import Backend, Factorization

__all__ = ["FACES", "FaceCondition", "IncompatibleDataWarning", "solve_poisson"]


class IncompatibleDataWarning(UserWarning):
    """All-Neumann data violate the compatibility condition; a constant was subtracted."""


@dataclass(frozen=True)
class FaceCondition:
    """Boundary condition on one face of the box.

    ``kind`` is ``"dirichlet"`` (``u = value``) or ``"neumann"`` (outward ``∂u/∂n = value``);
    ``value`` is a scalar or an array of the face shape (grid shape without the face's axis).
    """

    kind: Literal["dirichlet", "neumann"]
    value: float | np.ndarray = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("dirichlet", "neumann"):
            raise ValueError(f"boundary kind must be 'dirichlet' or 'neumann', got {self.kind!r}")


def _face_value(name: str, cond: FaceCondition, face_shape: tuple[int, ...]) -> np.ndarray:
    v = check_finite(f"boundary[{name!r}].value", cond.value)
    if np.iscomplexobj(v):
        raise ValueError(f"boundary[{name!r}].value must be real")
    if v.ndim == 0:
        return np.full(face_shape, float(v))
    if v.shape != face_shape:
        raise ValueError(f"boundary[{name!r}].value has shape {v.shape}, expected {face_shape}")
    return v.astype(float)


def _kron_all(mats: Sequence[sp.spmatrix]) -> sp.csr_matrix:
    out = mats[0]
    for m in mats[1:]:
        out = sp.kron(out, m, format="csr")
    return sp.csr_matrix(out)


def solve_poisson(
    coords: Sequence[np.ndarray],
    f: np.ndarray | float,
    boundary: Mapping[str, FaceCondition],
    backend: Backend = "auto",
    method: Literal["auto", "fdm", "direct"] = "auto",
) -> np.ndarray:
    """Solve ``−Δu = f`` on the box spanned by ``coords`` with one condition per face.

    Parameters
    ----------
    coords:
        1 to 3 uniformly spaced, increasing 1-D node arrays (axis order x, y, z).
    f:
        Source at the nodes, shape ``tuple(len(c) for c in coords)`` (or a scalar).
    boundary:
        Exactly the faces of the box (``"x-", "x+"`` [, ``"y-", "y+"`` [, ``"z-", "z+"``]]),
        each a :class:`FaceCondition`.
    backend:
        Sparse direct solver backend for ``method="direct"`` (``"auto"``, ``"pardiso"``,
        ``"scipy"``).
    method:
        ``"fdm"``: fast diagonalisation (exact solve of the same discrete system through the
        1-D eigenvectors, ``O(N * sum n_k)``, no fill-in; best by far in 3-D). ``"direct"``:
        sparse direct factorisation. ``"auto"`` (default) takes ``"fdm"`` unless an axis has
        more than 4096 nodes.

    Returns
    -------
    ``u`` at all nodes (boundary included), same shape as ``f``.
    """
    axes, h = as_coords(coords, max_dim=3)
    dim = len(axes)
    shape = tuple(a.size for a in axes)
    f_arr = check_finite("f", f)
    if np.iscomplexobj(f_arr):
        raise ValueError("f must be real")
    if f_arr.ndim == 0:
        f_arr = np.full(shape, float(f_arr))
    if f_arr.shape != shape:
        raise ValueError(f"f has shape {f_arr.shape}, expected {shape}")
    f_arr = f_arr.astype(float)

    faces = FACES[: 2 * dim]
    unknown = set(boundary) - set(faces)
    missing = [name for name in faces if name not in boundary]
    if unknown:
        raise ValueError(f"unknown boundary face(s) {sorted(unknown)}; expected {list(faces)}")
    if missing:
        raise ValueError(f"missing boundary condition for face(s) {missing}")
    for name in faces:
        if not isinstance(boundary[name], FaceCondition):
            raise ValueError(f"boundary[{name!r}] must be a FaceCondition")

    neumann = {name: boundary[name].kind == "neumann" for name in faces}

    # 1-D operators, trapezoid weights (half weight on Neumann ends, which are unknowns).
    ops, weights = [], []
    for k in range(dim):
        lo, hi = neumann[faces[2 * k]], neumann[faces[2 * k + 1]]
        ops.append(second_difference(shape[k], h[k], lo, hi))
        w = np.full(shape[k], h[k])
        w[0] *= 0.5
        w[-1] *= 0.5
        weights.append(w)
    weight = weights[0]
    for w in weights[1:]:
        weight = np.multiply.outer(weight, w)

    # Right-hand side b with Neumann ghost contributions 2 g / h on the face nodes.
    b = f_arr.copy()
    flux_scale = 0.0
    for k in range(dim):
        for side, name in enumerate(faces[2 * k : 2 * k + 2]):
            face_shape = shape[:k] + shape[k + 1 :]
            g = _face_value(name, boundary[name], face_shape)
            flux_scale = max(flux_scale, float(np.max(np.abs(g))) / h[k] if g.size else 0.0)
            if neumann[name]:
                idx = [slice(None)] * dim
                idx[k] = 0 if side == 0 else -1
                b[tuple(idx)] += 2.0 * g / h[k]

    # Dirichlet nodes and values (earlier faces win, so apply in reverse order).
    fixed = np.zeros(shape, dtype=bool)
    u = np.zeros(shape)
    for name in reversed(faces):
        if neumann[name]:
            continue
        k = FACES.index(name) // 2
        side = FACES.index(name) % 2
        idx = [slice(None)] * dim
        idx[k] = 0 if side == 0 else -1
        face_shape = shape[:k] + shape[k + 1 :]
        u[tuple(idx)] = _face_value(name, boundary[name], face_shape)
        fixed[tuple(idx)] = True

    if method == "auto":
        method = "fdm" if max(shape) <= 4096 else "direct"
    if method not in ("fdm", "direct"):
        raise ValueError(f"method must be 'auto', 'fdm' or 'direct', got {method!r}")

    # Symmetric system S = W L. Lift the Dirichlet values: S_ff u_f = (W b - S u_D)_f.
    rhs = weight * b - weight * _apply_laplacian(u, ops)
    all_neumann = not fixed.any()
    lam = 0.0
    if all_neumann:
        lam = float(rhs.sum() / weight.sum())  # constant that makes the data compatible
        scale = max(float(np.max(np.abs(f_arr))), flux_scale, 1e-300)
        if abs(lam) > 1e-3 * scale:
            warnings.warn(
                f"all-Neumann data are incompatible (sum of f plus boundary flux is not zero): "
                f"subtracted the constant {lam:.3g} from f",
                IncompatibleDataWarning,
                stacklevel=2,
            )
    if method == "fdm":
        free_axes = []
        for k in range(dim):
            lo = 0 if neumann[faces[2 * k]] else 1
            hi = shape[k] if neumann[faces[2 * k + 1]] else shape[k] - 1
            free_axes.append(np.arange(lo, hi))
        sub = np.ix_(*free_axes)
        u[sub] = _fast_diagonalisation(rhs[sub], ops, weights, free_axes, all_neumann)
        return u
    return _direct(u, rhs, fixed, ops, weights, weight, all_neumann, backend)


def _apply_laplacian(u: np.ndarray, ops: Sequence[sp.csr_matrix]) -> np.ndarray:
    """``L u = sum_k (L_k along axis k) u`` (``L_k`` the 1-D ``-d²/dx²`` matrices)."""
    out = np.zeros_like(u)
    for k, op in enumerate(ops):
        moved = np.moveaxis(u, k, 0)
        res = (op @ moved.reshape(moved.shape[0], -1)).reshape(moved.shape)
        out += np.moveaxis(res, 0, k)
    return out


def _along(arr: np.ndarray, mat: np.ndarray, axis: int) -> np.ndarray:
    """Multiply ``arr`` by ``mat`` along ``axis`` (``mat @ arr`` on that axis)."""
    return np.moveaxis(np.tensordot(mat, arr, axes=([1], [axis])), 0, axis)


def _fast_diagonalisation(
    rhs: np.ndarray,
    ops: Sequence[sp.csr_matrix],
    weights: Sequence[np.ndarray],
    free_axes: Sequence[np.ndarray],
    all_neumann: bool,
) -> np.ndarray:
    r"""Solve ``S_ff u = rhs`` exactly by the fast diagonalisation method.

    ``S_ff = sum_k (kron_{j != k} B_j) kron A_k`` with ``A_k = (W_k L_k)_ff`` symmetric
    tridiagonal and ``B_k = (W_k)_ff`` diagonal. The generalised eigenvectors
    ``A_k V_k = B_k V_k Λ_k``, ``V_k^T B_k V_k = I`` (from the symmetric tridiagonal
    ``B^{-1/2} A B^{-1/2}``) give ``u = (⊗V_k) diag(1 / Σ_k λ_k) (⊗V_k)^T rhs``: exact to
    round-off, ``O(N Σ n_k)`` work, no factorisation memory. In the all-Neumann case the zero
    mode (constants) is dropped, i.e. ``Σ W u = 0``.
    """
    vecs, lams = [], []
    for op, w, free in zip(ops, weights, free_axes, strict=True):
        a = (sp.diags(w) @ op).tocsr()[free][:, free].toarray()
        isq = 1.0 / np.sqrt(w[free])
        c = isq[:, None] * a * isq[None, :]
        lam, q = eigh_tridiagonal(np.diag(c).copy(), np.diag(c, 1).copy())
        if all_neumann:
            lam[0] = 0.0  # the constant mode (exactly zero in exact arithmetic)
        vecs.append(isq[:, None] * q)
        lams.append(lam)
    coef = rhs
    for k, v in enumerate(vecs):
        coef = _along(coef, v.T, k)
    denom = lams[0]
    for lam in lams[1:]:
        denom = np.add.outer(denom, lam)
    with np.errstate(divide="ignore"):
        inv = np.where(denom > 0, 1.0 / np.where(denom > 0, denom, 1.0), 0.0)
    coef = coef * inv
    for k, v in enumerate(vecs):
        coef = _along(coef, v, k)
    return coef


def _direct(
    u: np.ndarray,
    rhs: np.ndarray,
    fixed: np.ndarray,
    ops: Sequence[sp.csr_matrix],
    weights: Sequence[np.ndarray],
    weight: np.ndarray,
    all_neumann: bool,
    backend: Backend,
) -> np.ndarray:
    """Sparse direct solve of the symmetric system (bordered if all faces are Neumann)."""
    dim = len(ops)
    s = None
    for k in range(dim):
        mats = [sp.diags(weights[j]) for j in range(dim)]
        mats[k] = sp.diags(weights[k]) @ ops[k]
        term = _kron_all(mats)
        s = term if s is None else s + term
    s = sp.csr_matrix(s)
    free = ~fixed.ravel()
    u_flat = u.ravel().copy()
    if not all_neumann:
        s_ff = s[free][:, free]
        sol = Factorization(s_ff, symmetric=True, backend=backend).solve(rhs.ravel()[free])
        u_flat[free] = sol
        return u_flat.reshape(u.shape)
    # All Neumann: bordered system [[S, w], [w^T, 0]] [u, lam] = [W b, 0].
    wv = weight.ravel()
    n = wv.size
    bordered = sp.bmat(
        [[s, sp.csr_matrix(wv[:, None])], [sp.csr_matrix(wv[None, :]), None]], format="csr"
    )
    sol = Factorization(bordered, symmetric=True, backend=backend).solve(
        np.append(rhs.ravel(), 0.0)
    )
    return sol[:n].reshape(u.shape)
