"""Sparse direct factorisation with an optional fast backend.

:class:`Factorization` factors a square sparse matrix once and then solves for any number of
right-hand sides with ``A``, ``A^T`` or ``A^H``. Two backends are available:

``"pardiso"``
    Intel oneMKL PARDISO through the optional PyPI package ``py-mkl-pardiso`` (import name
    ``pymklpardiso``; x86_64 only, MKL is linked into the wheel). Parallel nested-dissection
    ordering (METIS), supernodal factorisation. Symmetric matrices (real or complex
    *symmetric*, i.e. ``A == A.T``, which is what the Helmholtz operator with PML is) use
    PARDISO's symmetric-indefinite ``L D L^T`` factorisation, which stores only one triangle.
``"scipy"``
    SuperLU via :func:`scipy.sparse.linalg.splu`, always available. For structurally symmetric
    matrices the minimum-degree ordering on ``A^T + A`` with SuperLU's symmetric mode is used
    (several times faster and leaner than the default COLAMD ordering on grid operators).
    SuperLU calls level-2 BLAS on small blocks; SciPy's bundled multi-threaded OpenBLAS makes
    that up to 100x slower when the cores are busy (threads spin-wait). The BLAS of the loaded
    OpenBLAS libraries is therefore switched to one thread during SuperLU calls and restored
    afterwards (:func:`single_threaded_blas`).

``backend="auto"`` takes PARDISO when the package imports and falls back to SciPy otherwise;
the environment variable ``REFERENCE_SOLVERS_BACKEND`` (``pardiso`` or ``scipy``), when set,
replaces ``"auto"`` (e.g. to run the test suite on the fallback). The backend actually used is
reported by :attr:`Factorization.backend`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["Factorization", "available_backends", "single_threaded_blas"]

Backend = Literal["auto", "pardiso", "scipy"]
Trans = Literal["N", "T", "H"]

# PARDISO matrix types (oneMKL documentation, parameter ``mtype``).
_MTYPE_REAL_SYM_INDEF = -2
_MTYPE_REAL_NONSYM = 11
_MTYPE_COMPLEX_SYM = 6
_MTYPE_COMPLEX_NONSYM = 13


def _import_pardiso():  # pragma: no cover - depends on the environment
    try:
        return importlib.import_module("pymklpardiso")
    except Exception:  # ImportError, or a broken binary wheel
        return None


_OPENBLAS_SETTERS = (
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
)
_openblas_cache: list[tuple[object, object]] | None = None


def _openblas_controls() -> list[tuple[object, object]]:
    """(set, get) thread-count functions of every OpenBLAS mapped into this process (Linux)."""
    global _openblas_cache
    if _openblas_cache is not None:
        return _openblas_cache
    controls: list[tuple[object, object]] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower()})
    except OSError:  # not Linux: leave BLAS threading alone
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS_SETTERS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                controls.append((getattr(lib, set_name), getattr(lib, get_name)))
                break
    _openblas_cache = controls
    return controls


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with every loaded OpenBLAS limited to one thread, then restore."""
    controls = _openblas_controls()
    saved = []
    for set_threads, get_threads in controls:
        saved.append(int(get_threads()))  # type: ignore[operator]
        set_threads(1)  # type: ignore[operator]
    try:
        yield
    finally:
        for (set_threads, _), n in zip(controls, saved, strict=True):
            set_threads(n)  # type: ignore[operator]


def available_backends() -> list[str]:
    """Names of the backends that can run in this environment, fastest first."""
    names = ["scipy"]
    if _import_pardiso() is not None:
        names.insert(0, "pardiso")
    return names


def _is_symmetric(a: sp.csr_matrix) -> bool:
    """Exact test ``A == A^T`` (plain transpose, no conjugation)."""
    diff = (a - a.T).tocsr()
    diff.eliminate_zeros()
    if diff.nnz == 0:
        return True
    scale = float(np.max(np.abs(a.data))) if a.nnz else 1.0
    return float(np.max(np.abs(diff.data))) <= 1e-14 * scale


class Factorization:
    """One factorisation of a square sparse matrix ``A``, reusable for many solves.

    Parameters
    ----------
    matrix:
        Square sparse (or dense) matrix, real or complex.
    symmetric:
        ``True`` if ``A == A^T`` (no conjugation), ``False`` if not, ``None`` to test it.
        Symmetric matrices are factored as ``L D L^T`` by PARDISO (half the memory), and their
        transposed solves reuse the same factors.
    backend:
        ``"auto"`` (PARDISO if installed, else SciPy), ``"pardiso"`` or ``"scipy"``.

    Attributes
    ----------
    backend: str
        The backend actually used (``"pardiso"`` or ``"scipy"``).
    shape, dtype, symmetric:
        Properties of the factored matrix.
    """

    def __init__(
        self,
        matrix: sp.spmatrix | sp.sparray | np.ndarray,
        symmetric: bool | None = None,
        backend: Backend = "auto",
    ) -> None:
        a = sp.csr_matrix(matrix)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"matrix must be square, got shape {a.shape}")
        if not np.all(np.isfinite(a.data)):
            raise ValueError("matrix contains NaN or infinite entries")
        a.sum_duplicates()
        a.sort_indices()
        self.dtype = np.dtype(np.complex128 if np.iscomplexobj(a.data) else np.float64)
        a = a.astype(self.dtype, copy=False)
        self.shape: tuple[int, int] = (int(a.shape[0]), int(a.shape[1]))
        self.symmetric: bool = _is_symmetric(a) if symmetric is None else bool(symmetric)

        if backend == "auto":
            backend = os.environ.get("REFERENCE_SOLVERS_BACKEND") or "auto"  # type: ignore
        if backend not in ("auto", "pardiso", "scipy"):
            raise ValueError(f"backend must be 'auto', 'pardiso' or 'scipy', got {backend!r}")
        pardiso = _import_pardiso() if backend in ("auto", "pardiso") else None
        if backend == "pardiso" and pardiso is None:
            raise ValueError("backend 'pardiso' requested but package py-mkl-pardiso is missing")
        self._transposed: Factorization | None = None
        # Kept only where a lazily factored A^T may be needed (PARDISO, nonsymmetric A).
        self._matrix = a if (pardiso is not None and not self.symmetric) else None
        if pardiso is not None:
            self.backend = "pardiso"
            complex_ = self.dtype == np.complex128
            if self.symmetric:
                mtype = _MTYPE_COMPLEX_SYM if complex_ else _MTYPE_REAL_SYM_INDEF
                stored = sp.triu(a, format="csr")
            else:
                mtype = _MTYPE_COMPLEX_NONSYM if complex_ else _MTYPE_REAL_NONSYM
                stored = a
            # Let the full matrix go before factorising if the caller holds no reference
            # (saves its memory, ~100 MB at 1024^2, during the factorisation peak).
            del a, matrix
            self._setup_pardiso(pardiso, stored, mtype)
        else:
            self.backend = "scipy"
            self._setup_scipy(a)

    # ------------------------------------------------------------------ backends
    def _setup_pardiso(self, module, stored: sp.csr_matrix, mtype: int) -> None:
        stored.sort_indices()
        # iparm (0-based indices, oneMKL PARDISO documentation):
        #   [1] = 3   parallel nested-dissection ordering (METIS)
        #   [7] = 0   iterative refinement only if pivots had to be perturbed
        #   [9]       pivot perturbation 10^-8 (symmetric indefinite) / 10^-13 (nonsymmetric)
        #   [10],[12] scaling + weighted matching: off for symmetric (not needed for these
        #             operators, costs ~10 %), on for nonsymmetric (MKL's default there)
        #   [23] = 1  two-level parallel factorisation (faster on few cores, measured)
        iparm = {1: 3, 7: 0, 23: 1}
        if self.symmetric:
            iparm.update({9: 8, 10: 0, 12: 0})
        else:
            iparm.update({9: 13, 10: 1, 12: 1})
        indptr = np.asarray(stored.indptr, dtype=np.int64)
        indices = np.asarray(stored.indices, dtype=np.int64)
        data = np.ascontiguousarray(stored.data, dtype=self.dtype)
        low_level = getattr(getattr(module, "_mkl_pardiso", None), "PardisoSolver", None)
        if low_level is not None:
            # The compiled class of py-mkl-pardiso 0.0.6: same phases as the public wrapper,
            # without its per-row Python loop that checks the triangle (seconds at 10^6 rows).
            solver = low_level(mtype, 0)
            for idx, value in iparm.items():
                solver.set_iparm(idx, value)
            solver.set_pattern(ia=indptr, ja=indices, n=self.shape[0])
            solver.factor(data)
        else:  # pragma: no cover - other versions of the package
            solver = module.PardisoSolver(stored, mtype, iparms=iparm)
        self._pardiso = solver

    def _setup_scipy(self, a: sp.csr_matrix) -> None:
        structurally_symmetric = self.symmetric or (a != 0).astype(np.int8).nnz == (
            ((a != 0) + (a != 0).T).nnz
        )
        with single_threaded_blas():
            self._lu = self._splu(a, structurally_symmetric)

    @staticmethod
    def _splu(a: sp.csr_matrix, structurally_symmetric: bool) -> spla.SuperLU:
        if structurally_symmetric:
            return spla.splu(
                a.tocsc(),
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.01,
                options={"SymmetricMode": True},
            )
        return spla.splu(a.tocsc(), permc_spec="COLAMD")

    # ------------------------------------------------------------------ solves
    def solve(self, rhs: np.ndarray, trans: Trans = "N") -> np.ndarray:
        """Solve ``op(A) x = rhs`` with ``op`` = identity (``"N"``), ``^T`` or ``^H``.

        ``rhs`` has shape ``(n,)`` or ``(n, k)`` (``k`` right-hand sides, one factorisation);
        the result has the same shape and the matrix dtype promoted with ``rhs``.
        """
        b = np.asarray(rhs)
        if b.shape[0] != self.shape[0] or b.ndim not in (1, 2):
            raise ValueError(f"rhs must have shape ({self.shape[0]},) or ({self.shape[0]}, k)")
        if trans not in ("N", "T", "H"):
            raise ValueError(f"trans must be 'N', 'T' or 'H', got {trans!r}")
        out_dtype = np.result_type(self.dtype, b.dtype)
        real_matrix = self.dtype == np.float64
        if trans == "H":
            if real_matrix:
                trans = "T"
            else:
                # A^H x = b  <=>  A^T conj(x) = conj(b)
                return np.conj(self.solve(np.conj(b), "T"))
        if trans == "T" and self.symmetric:
            trans = "N"
        if real_matrix and np.iscomplexobj(b):
            return self._solve_real(b.real, trans) + 1j * self._solve_real(b.imag, trans)
        return self._solve_real(b.astype(out_dtype, copy=False), trans)

    def _solve_real(self, b: np.ndarray, trans: Trans) -> np.ndarray:
        """Solve with a right-hand side of the matrix dtype, ``trans`` in ``{"N", "T"}``."""
        b = np.ascontiguousarray(b, dtype=self.dtype)
        if self.backend == "scipy":
            with single_threaded_blas():
                return self._lu.solve(b, trans=trans)
        if trans == "T":
            if self._transposed is None:
                assert self._matrix is not None
                self._transposed = Factorization(
                    self._matrix.T.tocsr(), symmetric=False, backend="pardiso"
                )
            return self._transposed._solve_real(b, "N")
        if b.ndim == 1:
            return np.asarray(self._pardiso.solve(b))
        # Column-major blocks of right-hand sides; solve them together.
        return np.asarray(self._pardiso.solve(np.asfortranarray(b)))

    def release(self) -> None:
        """Free the factors now (they are also freed when the object is garbage-collected)."""
        if self.backend == "pardiso":
            self._pardiso.release()
        self._lu = None
        self._transposed = None
