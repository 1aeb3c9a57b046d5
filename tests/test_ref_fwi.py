"""Tests for ``reference_solvers.fwi``: adjoint-state FWI for (Δ + ω² m) u = f with PML."""

from __future__ import annotations

import numpy as np
import pytest

from reference_solvers.fwi import (
    _Regulariser,
    forward,
    invert,
    misfit_and_gradient,
    physical_mask,
    predict_data,
    sample_operator,
)
from reference_solvers.helmholtz import PML, gaussian_source, solve_helmholtz
from tests.conftest import CYLINDER

DATA = CYLINDER


def _ring(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    t = phase + np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _setup(n: int = 41, omega: float = 6.0, nsrc: int = 3, nrec: int = 12):
    """Small problem on [-1, 1]^2, PML 0.3 wide (physical region |x|, |y| <= 0.7)."""
    x = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pml = PML(0.3)
    c_true = 1.0 + 0.3 * np.exp(-((X - 0.1) ** 2 + (Y + 0.1) ** 2) / 0.04)
    src = _ring(nsrc, 0.55, 0.3)
    f = np.stack([gaussian_source(x, x, s, 0.08, 1 + 1j) for s in src])
    rec = _ring(nrec, 0.6)
    data = predict_data(x, x, omega, c_true, f, rec, pml)
    return x, X, Y, omega, pml, c_true, f, rec, data


# ------------------------------------------------------------------------------ sampling
def test_sample_operator_exact_for_bilinear() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(-1.0, 1.0, 11)
    y = np.sort(np.concatenate([[-0.5, 2.0], rng.uniform(-0.5, 2.0, 7)]))  # non-uniform
    X, Y = np.meshgrid(x, y, indexing="ij")

    def func(px, py):
        return 0.3 - 1.2 * px + 0.7 * py + 2.5 * px * py

    pts = np.concatenate(
        [
            np.stack([rng.uniform(-1, 1, 50), rng.uniform(-0.5, 2.0, 50)], 1),
            [[-1.0, -0.5], [1.0, 2.0], [1.0, -0.5], [x[3], y[4]], [0.0, 2.0]],  # corners, nodes
        ]
    )
    p = sample_operator(x, y, pts)
    assert p.shape == (len(pts), x.size * y.size)
    np.testing.assert_allclose(p @ func(X, Y).ravel(), func(pts[:, 0], pts[:, 1]), atol=1e-13)
    np.testing.assert_allclose(np.asarray(p.sum(axis=1)).ravel(), 1.0, atol=1e-14)
    assert p.getnnz(axis=1).max() <= 4 and p.min() >= 0
    with pytest.raises(ValueError, match="point 1 has x = 1.5 outside"):
        sample_operator(x, y, [[0.0, 0.0], [1.5, 0.0]])
    with pytest.raises(ValueError, match="points has shape"):
        sample_operator(x, y, np.zeros((3, 3)))


# ------------------------------------------------------------------------------ forward
def test_forward_matches_solve_helmholtz_and_predict_data() -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup()
    u, lu = forward(x, x, omega, c_true, f, pml)
    assert u.shape == f.shape and lu.symmetric
    np.testing.assert_allclose(u, solve_helmholtz(x, x, omega, c_true, f, pml), atol=1e-12)
    # One factorisation serves further solves (here: source 0 again, from the returned LU).
    from reference_solvers.helmholtz import helmholtz_rhs

    u0 = lu.solve(helmholtz_rhs(x, x, omega, f[0], pml)).reshape(x.size, x.size)
    lu.release()
    np.testing.assert_allclose(u0, u[0], atol=1e-12)
    p = sample_operator(x, x, rec)
    np.testing.assert_allclose(data, (p @ u.reshape(len(f), -1).T), atol=1e-14)
    # misfit of the true model is zero
    J, g = misfit_and_gradient(1.0 / c_true**2, x, x, omega, f, rec, data, pml)
    assert J < 1e-25 and np.max(np.abs(g)) < 1e-12


# ------------------------------------------------------------------------------ gradient
def _fd_check(m, dm, args, kwargs, step) -> tuple[float, float]:
    J, g = misfit_and_gradient(m, *args, **kwargs)
    jp, _ = misfit_and_gradient(m + step * dm, *args, **kwargs)
    jm, _ = misfit_and_gradient(m - step * dm, *args, **kwargs)
    return (jp - jm) / (2.0 * step), float(np.sum(g * dm))


@pytest.mark.parametrize("estimate_amplitude", [False, True])
def test_gradient_matches_finite_differences(estimate_amplitude: bool) -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup()
    m = 1.0 + 0.1 * np.sin(3.0 * X) * np.cos(2.0 * Y)  # not the true model
    args = (x, x, omega, f, rec, data, pml)
    # mask=None: every interior node is free, including the PML where A is complex --
    # this is where a wrong conjugation in the adjoint would show.
    kwargs = {"estimate_amplitude": estimate_amplitude}
    rng = np.random.default_rng(1)
    for _ in range(3):
        dm = rng.standard_normal(m.shape)
        fd, ad = _fd_check(m, dm, args, kwargs, 1e-5)
        assert abs(fd - ad) <= 1e-5 * abs(ad), (fd, ad)
    # Single cells: one near a receiver, one at the inclusion, one inside the PML.
    for i, j in ((33, 20), (22, 18), (3, 30)):
        dm = np.zeros_like(m)
        dm[i, j] = 1.0
        fd, ad = _fd_check(m, dm, args, kwargs, 1e-3)
        assert abs(fd - ad) <= 1e-5 * abs(ad), ((i, j), fd, ad)


def test_gradient_is_zero_on_masked_cells() -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup()
    m = np.ones_like(X)
    mask = physical_mask(x, x, pml)
    assert mask.sum() == 29**2  # |x|, |y| <= 0.7 on h = 0.05 (inner edge of the layer included)
    _, g_all = misfit_and_gradient(m, x, x, omega, f, rec, data, pml)
    _, g = misfit_and_gradient(m, x, x, omega, f, rec, data, pml, mask)
    assert np.all(g[~mask] == 0) and np.all(g_all[[0, -1], :] == 0)
    np.testing.assert_array_equal(g[mask], g_all[mask])
    assert np.count_nonzero(g_all[~mask]) > 0
    # Along a direction supported on the free cells the masked gradient is exact.
    dm = np.where(mask, np.cos(5 * X + Y), 0.0)
    fd, ad = _fd_check(m, dm, (x, x, omega, f, rec, data, pml, mask), {}, 1e-5)
    assert abs(fd - ad) <= 1e-5 * abs(ad)


def test_regulariser_gradient() -> None:
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 1.0, 9)
    y = np.linspace(0.0, 2.0, 13)
    reg = _Regulariser(x, y, tv=0.3, tikhonov=0.05, epsilon=0.1)
    m = rng.uniform(0.2, 1.0, x.size * y.size)
    value, grad = reg(m)
    assert value > 0
    assert reg(np.full_like(m, 0.5))[0] == pytest.approx(0.0, abs=1e-15)
    dm = rng.standard_normal(m.shape)
    step = 1e-6
    fd = (reg(m + step * dm)[0] - reg(m - step * dm)[0]) / (2 * step)
    assert fd == pytest.approx(float(grad @ dm), rel=1e-7)


# ------------------------------------------------------------------------------ inversion
def test_synthetic_inversion_reduces_misfit_and_model_error() -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup(n=51, omega=8.0, nsrc=6, nrec=24)
    mask = physical_mask(x, x, pml)
    seen: list[float] = []
    bounds = (0.95, 1.2)  # the true maximum 1.3 is *outside*: the bound must bind
    result = invert(
        x,
        x,
        omega,
        f,
        rec,
        data,
        c0=1.0,
        bounds=bounds,
        pml=pml,
        mask=mask,
        iterations=25,
        callback=lambda it, c, mis: seen.append(mis),
    )
    c = result.velocity
    assert result.history[0] > 10.0 * result.history[-1], result.history
    assert result.iterations == len(seen) == len(result.history) - 1
    assert seen == result.history[1:]
    assert result.seconds > 0 and result.evaluations >= result.iterations
    err0 = np.linalg.norm((1.0 - c_true)[mask])
    err = np.linalg.norm((c - c_true)[mask])
    assert err < 0.5 * err0, (err, err0)
    assert c[mask].min() >= bounds[0] - 1e-12 and c[mask].max() <= bounds[1] + 1e-12
    assert c[mask].max() == pytest.approx(bounds[1])
    assert np.all(c[~mask] == 1.0)  # PML and walls stay at the start model


def test_inversion_options_multiscale_tv_stop_and_amplitude() -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup(n=41, omega=6.0, nsrc=4, nrec=16)
    # Unknown source scale: data twice as strong, with a phase shift.
    scale = 2.0 * np.exp(0.4j)
    result = invert(
        x,
        x,
        omega,
        f,
        rec,
        scale * data,
        m0=1.0,
        bounds=(0.9, 1.5),
        pml=pml,
        mask=physical_mask(x, x, pml),
        iterations=6,
        tv=1e-3,
        multiscale=[0.2],
        estimate_amplitude=True,
    )
    assert result.iterations <= 12 and result.history[-1] < 0.5 * result.history[0]
    assert abs(result.amplitude - scale) < 0.1 * abs(scale)
    assert len(result.objective_history) == len(result.history)
    stopped = invert(
        x, x, omega, f, rec, data, c0=1.0, bounds=(0.9, 1.5), pml=pml, iterations=20,
        callback=lambda it, c, mis: it >= 3,
    )  # fmt: skip
    assert stopped.iterations == 3 and len(stopped.history) == 4


def test_bad_inputs() -> None:
    x, X, Y, omega, pml, c_true, f, rec, data = _setup(n=21, omega=3.0, nsrc=2, nrec=4)
    m = np.ones_like(X)
    with pytest.raises(ValueError, match="data has shape"):
        misfit_and_gradient(m, x, x, omega, f, rec, data[:, :1], pml)
    with pytest.raises(ValueError, match="sources_rhs has shape"):
        misfit_and_gradient(m, x, x, omega, f[:, :-1], rec, data, pml)
    with pytest.raises(ValueError, match="m must be positive"):
        misfit_and_gradient(-m, x, x, omega, f, rec, data, pml)
    with pytest.raises(ValueError, match="mask must be a boolean"):
        misfit_and_gradient(m, x, x, omega, f, rec, data, pml, mask=m)
    with pytest.raises(ValueError, match="exactly one of m0"):
        invert(x, x, omega, f, rec, data, bounds=(1, 2), m0=1.0, c0=1.0)
    with pytest.raises(ValueError, match="bounds must satisfy"):
        invert(x, x, omega, f, rec, data, bounds=(2, 1), c0=1.0)


# ------------------------------------------------------------------------------ real data
def test_cylinder_data_reproduced_by_true_model() -> None:
    from scipy.io import loadmat

    d = loadmat(DATA)
    sources, receivers, rec_val = d["source"], d["receivers"], d["rec_val"]
    assert sources.shape == (5, 2) and receivers.shape == (30, 2) and rec_val.shape == (30, 5)
    # [-0.7, 0.7]^2 with a 0.25 PML keeps the receivers (|x|, |y| <= 0.402) in the physical
    # region |x|, |y| <= 0.45; h = 0.01 (31 points per wavelength). Measured misfit 2.5 %
    # (1.8 % at h = 0.005).
    x = np.linspace(-0.7, 0.7, 141)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pml = PML(0.25)
    f = np.stack([gaussian_source(x, x, s, 0.01, 1 + 1j) for s in sources])
    c_true = np.where(X**2 + Y**2 < 0.1**2, 2.0, 1.0)
    m_true = 1.0 / c_true**2
    J, _ = misfit_and_gradient(m_true, x, x, 20.0, f, receivers, rec_val, pml)
    rel_true = np.sqrt(2.0 * J) / np.linalg.norm(rec_val)
    J1, g1 = misfit_and_gradient(np.ones_like(X), x, x, 20.0, f, receivers, rec_val, pml)
    rel_homogeneous = np.sqrt(2.0 * J1) / np.linalg.norm(rec_val)
    assert rel_true < 0.05, rel_true
    assert rel_homogeneous > 0.3, rel_homogeneous
    # Not cycle-skipped: from c = 1 the steepest-descent step lowers m (raises c) at the disk.
    centre = np.argmin(np.abs(x))
    assert g1[centre, centre] > 0
