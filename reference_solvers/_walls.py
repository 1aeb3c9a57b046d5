"""Second differences with Dirichlet and Neumann walls, shared by the box solvers.

Node-centred grids including the boundary nodes. A Neumann face ∂u/∂n = g (n the outward
normal) is discretised by the ghost node u_{−1} = u_1 + 2 h g, which turns the face row of
−d²/dx² into (2u_0 − 2u_1)/h² and adds −2g/h to it: −Δ_h u = L u − b with b = 2g/h on the
face nodes. A Dirichlet face fixes its nodes; where faces meet, Dirichlet wins over Neumann
and, among Dirichlet faces, the earlier one in the order x−, x+, y−, y+, z−, z+.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._checks import check_finite

#: Face names in axis order.
FACES: tuple[str, ...] = ("x-", "x+", "y-", "y+", "z-", "z+")


def second_difference(n: int, h: float, lo_neumann: bool, hi_neumann: bool) -> sp.csr_matrix:
    """1-D −d²/dx² on n nodes, with ghost-node rows at the Neumann ends."""
    main = np.full(n, 2.0)
    off = np.full(n - 1, -1.0)
    m = sp.diags([off, main, off], [-1, 0, 1], format="lil")
    if lo_neumann:
        m[0, 1] = -2.0
    if hi_neumann:
        m[n - 1, n - 2] = -2.0
    return sp.csr_matrix(m) / h**2


def kron_sum(ops: Sequence[sp.spmatrix]) -> sp.csr_matrix:
    """Σ_k I ⊗ … ⊗ L_k ⊗ … ⊗ I (C order of the nodes)."""
    eye = [sp.identity(op.shape[0], format="csr") for op in ops]
    total = None
    for k, op in enumerate(ops):
        mats = list(eye)
        mats[k] = op
        term = mats[0]
        for m in mats[1:]:
            term = sp.kron(term, m, format="csr")
        total = term if total is None else total + term
    return sp.csr_matrix(total)


@dataclass(frozen=True)
class Walls:
    """−Δ_h with the walls' rows (``laplacian``), the Neumann terms ``ghost`` (b above), and
    the Dirichlet nodes ``fixed`` with their ``values``; arrays of the grid shape."""

    laplacian: sp.csr_matrix
    ghost: np.ndarray
    fixed: np.ndarray
    values: np.ndarray


def face_value(name: str, value, shape: tuple[int, ...], k: int, complex_ok: bool) -> np.ndarray:
    """A face's value as an array of the face shape (the grid shape without axis k)."""
    v = check_finite(f"boundary[{name!r}].value", value)
    if np.iscomplexobj(v) and not complex_ok:
        raise ValueError(f"boundary[{name!r}].value must be real")
    face_shape = shape[:k] + shape[k + 1 :]
    if v.ndim and v.shape != face_shape:
        raise ValueError(f"boundary[{name!r}].value has shape {v.shape}, expected {face_shape}")
    return np.broadcast_to(v, face_shape)


def walls(
    shape: tuple[int, ...],
    h: Sequence[float],
    boundary: Mapping[str, object],
    *,
    complex_ok: bool = False,
) -> Walls:
    """Assemble :class:`Walls` for ``boundary`` (face → an object with ``kind`` and ``value``,
    e.g. :class:`reference_solvers.poisson.FaceCondition`)."""
    dim = len(shape)
    faces = FACES[: 2 * dim]
    if set(boundary) != set(faces):
        raise ValueError(f"boundary must give exactly the faces {list(faces)}")
    neumann = {name: boundary[name].kind == "neumann" for name in faces}
    ops = [
        second_difference(shape[k], h[k], neumann[faces[2 * k]], neumann[faces[2 * k + 1]])
        for k in range(dim)
    ]
    dtype = complex if complex_ok else float
    ghost = np.zeros(shape, dtype=dtype)
    fixed = np.zeros(shape, dtype=bool)
    values = np.zeros(shape, dtype=dtype)
    for name in faces:
        k = FACES.index(name) // 2
        idx: list = [slice(None)] * dim
        idx[k] = 0 if name[1] == "-" else -1
        g = face_value(name, boundary[name].value, shape, k, complex_ok)
        if neumann[name]:
            ghost[tuple(idx)] += 2.0 * g / h[k]
    for name in reversed(faces):
        if neumann[name]:
            continue
        k = FACES.index(name) // 2
        idx = [slice(None)] * dim
        idx[k] = 0 if name[1] == "-" else -1
        values[tuple(idx)] = face_value(name, boundary[name].value, shape, k, complex_ok)
        fixed[tuple(idx)] = True
    return Walls(kron_sum(ops), ghost, fixed, values)
