"""Manufactured-solution and input tests for ``reference_solvers.poisson`` (−Δu = f)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reference_solvers.poisson import FACES, FaceCondition, IncompatibleDataWarning, solve_poisson

# u = 0.5 + prod_k cos(k_k x_k + phi_k): -Δu = |k|^2 (u - 0.5), ∂u/∂x_k known in closed form.
WAVENUMBERS = np.array([1.3, 0.9, 1.1])
PHASES = np.array([0.0, 0.3, 0.6])
BOXES = [(0.0, 1.0), (-0.5, 1.0), (0.0, 0.7)]


def _grid(n: int, dim: int) -> list[np.ndarray]:
    # Different spacing per axis on purpose (n, 1.5n, n intervals).
    counts = [n, n + (n - 1) // 2, n][:dim]
    return [np.linspace(*BOXES[k], counts[k]) for k in range(dim)]


def _exact(axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    dim = len(axes)
    mesh = np.meshgrid(*axes, indexing="ij")
    k, phi = WAVENUMBERS[:dim], PHASES[:dim]
    prod = np.ones_like(mesh[0])
    for d in range(dim):
        prod = prod * np.cos(k[d] * mesh[d] + phi[d])
    grads = []
    for d in range(dim):
        g = -k[d] * np.sin(k[d] * mesh[d] + phi[d])
        for e in range(dim):
            if e != d:
                g = g * np.cos(k[e] * mesh[e] + phi[e])
        grads.append(g)
    return 0.5 + prod, float(np.sum(k**2)) * prod, grads


def _solve(n: int, kinds: str, dim: int) -> float:
    axes = _grid(n, dim)
    u_exact, f, grads = _exact(axes)
    boundary = {}
    for face_id, name in enumerate(FACES[: 2 * dim]):
        axis, side = divmod(face_id, 2)
        idx = [slice(None)] * dim
        idx[axis] = -1 if side else 0
        idx = tuple(idx)
        if kinds[face_id] == "d":
            boundary[name] = FaceCondition("dirichlet", u_exact[idx])
        else:  # outward normal derivative
            boundary[name] = FaceCondition("neumann", (1 if side else -1) * grads[axis][idx])
    u = solve_poisson(axes, f, boundary)
    assert u.shape == u_exact.shape
    if "d" not in kinds:  # defined up to a constant
        u = u - u.mean() + u_exact.mean()
    return float(np.max(np.abs(u - u_exact)))


def _orders(errors: list[float]) -> np.ndarray:
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize(
    ("kinds", "dim", "sizes"),
    [
        ("dddd", 2, (17, 33, 65)),
        ("dndn", 2, (17, 33, 65)),  # Neumann on x+ and y+
        ("nnnn", 2, (17, 33, 65)),  # singular: zero-mean solution
        ("ddddnd", 3, (9, 17, 33)),  # Neumann on z-
        ("dd", 1, (17, 33, 65)),
        ("nd", 1, (17, 33, 65)),
    ],
)
def test_manufactured_second_order(kinds: str, dim: int, sizes: tuple[int, ...]) -> None:
    errors = [_solve(n, kinds, dim) for n in sizes]
    orders = _orders(errors)
    assert np.all(np.abs(orders - 2.0) <= 0.2), (errors, orders)
    assert errors[-1] < 1e-3


@pytest.mark.parametrize(
    ("kinds", "dim"), [("dndd", 2), ("nnnn", 2), ("ndddnn", 3), ("nnnnnn", 3), ("nn", 1)]
)
def test_fast_diagonalisation_equals_sparse_direct(kinds: str, dim: int) -> None:
    rng = np.random.default_rng(3)
    axes = _grid(9, dim)
    shape = tuple(a.size for a in axes)
    f = rng.standard_normal(shape)
    boundary = {}
    for face_id, name in enumerate(FACES[: 2 * dim]):
        face_shape = shape[: face_id // 2] + shape[face_id // 2 + 1 :]
        kind = "dirichlet" if kinds[face_id] == "d" else "neumann"
        boundary[name] = FaceCondition(kind, rng.standard_normal(face_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompatibleDataWarning)  # random all-Neumann data
        fdm = solve_poisson(axes, f, boundary, method="fdm")
        direct = solve_poisson(axes, f, boundary, method="direct")
    np.testing.assert_allclose(fdm, direct, atol=1e-10 * np.abs(direct).max())


def test_constant_source_positive_solution() -> None:
    x = np.linspace(0, 1, 21)
    zero = FaceCondition("dirichlet", 0.0)
    u = solve_poisson([x, x], 1.0, dict.fromkeys(FACES[:4], zero))
    assert u.min() >= 0 and u[10, 10] > 0.07  # −Δu = 1: centre value ≈ 0.0737


def test_zero_mean_for_all_neumann() -> None:
    x = np.linspace(0, 1, 33)
    mesh = np.meshgrid(x, x, indexing="ij")
    f = np.cos(np.pi * mesh[0]) * np.pi**2  # u = cos(pi x) + const, zero flux
    neumann = FaceCondition("neumann", 0.0)
    u = solve_poisson([x, x], f, dict.fromkeys(FACES[:4], neumann))
    w = np.full(33, 1 / 32)
    w[[0, -1]] /= 2
    assert abs(float(w @ u @ w)) < 1e-12


def test_incompatible_neumann_data_warn() -> None:
    x = np.linspace(0, 1, 17)
    neumann = FaceCondition("neumann", 0.0)
    with pytest.warns(IncompatibleDataWarning, match="incompatible"):
        solve_poisson([x, x], 1.0, dict.fromkeys(FACES[:4], neumann))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_poisson([x, x], 0.0, dict.fromkeys(FACES[:4], neumann))


def test_bad_inputs() -> None:
    x = np.linspace(0, 1, 9)
    zero = FaceCondition("dirichlet", 0.0)
    faces = dict.fromkeys(FACES[:4], zero)
    f = np.zeros((9, 9))
    f[3, 3] = np.nan
    with pytest.raises(ValueError, match="f contains 1 NaN") as err:
        solve_poisson([x, x], f, faces)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="missing boundary"):
        solve_poisson([x, x], 0.0, {"x-": zero})
    with pytest.raises(ValueError, match="unknown boundary"):
        solve_poisson([x], 0.0, {"x-": zero, "x+": zero, "y-": zero})
    with pytest.raises(ValueError, match="shape"):
        solve_poisson([x, x], np.zeros((9, 8)), faces)
    with pytest.raises(ValueError, match="expected"):
        solve_poisson([x, x], 0.0, {**faces, "y+": FaceCondition("dirichlet", np.zeros(4))})
    with pytest.raises(ValueError, match="uniformly spaced"):
        solve_poisson([x**2, x], 0.0, faces)
    with pytest.raises(ValueError, match="method"):
        solve_poisson([x, x], 0.0, faces, method="multigrid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        FaceCondition("robin", 0.0)  # type: ignore[arg-type]
