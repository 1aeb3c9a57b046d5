"""Tests for ``reference_solvers.factorization.Factorization`` on every available backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from reference_solvers.factorization import Factorization, available_backends

BACKENDS = available_backends()


def _matrix(n: int, complex_: bool, symmetric: bool, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=0.05, random_state=rng, format="csr")
    if complex_:
        a = a + 1j * sp.random(n, n, density=0.05, random_state=rng, format="csr")
    if symmetric:
        a = a + a.T
    # Indefinite diagonal (like Helmholtz), kept away from singular.
    diag = np.where(np.arange(n) % 3 == 0, -4.0, 4.0) + (0.5j if complex_ else 0.0)
    return sp.csr_matrix(a + sp.diags(diag))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_solves_all_transposes(backend: str, complex_: bool, symmetric: bool) -> None:
    n = 120
    a = _matrix(n, complex_, symmetric)
    rng = np.random.default_rng(1)
    b = rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3))
    lu = Factorization(a, backend=backend)  # symmetry detected
    assert lu.backend == backend and lu.symmetric == symmetric
    ops = {"N": a, "T": a.T, "H": a.conj().T}
    for trans, op in ops.items():
        x = lu.solve(b, trans=trans)
        assert x.shape == b.shape
        np.testing.assert_allclose(op @ x, b, atol=1e-9)
        x1 = lu.solve(b[:, 1], trans=trans)
        np.testing.assert_allclose(x1, x[:, 1], rtol=1e-9, atol=1e-12)
    if not complex_:
        assert lu.solve(b.real).dtype == np.float64


def test_bad_arguments() -> None:
    a = _matrix(10, False, True)
    with pytest.raises(ValueError, match="square"):
        Factorization(sp.csr_matrix(np.ones((3, 4))))
    with pytest.raises(ValueError, match="backend"):
        Factorization(a, backend="magic")  # type: ignore[arg-type]
    bad = a.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Factorization(bad)
    with pytest.raises(ValueError, match="rhs"):
        Factorization(a).solve(np.ones(11))


def test_library_imports_only_numpy_scipy() -> None:
    code = (
        "import sys, reference_solvers.poisson, reference_solvers.helmholtz, "
        "reference_solvers.wave\n"
        "bad = [m for m in ('torch', 'yaml', 'pydantic', 'pinnsiren') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
