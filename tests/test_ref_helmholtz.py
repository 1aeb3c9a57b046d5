"""Tests for ``reference_solvers.helmholtz``: (Δ + ω²/c²) u = f, e^{+iωt}, PML."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import hankel2

from reference_solvers.helmholtz import (
    PML,
    ResolutionWarning,
    gaussian_source,
    helmholtz_operator,
    pml_padding,
    pml_profile,
    solve_helmholtz,
)
from tests.conftest import CYLINDER

DATA = CYLINDER


def _manufactured_error(n: int) -> float:
    """u = sin(pi x) sin(pi y) exp(i(a x + b y)) on [0, 1]^2, heterogeneous c, u = 0 walls."""
    omega, a, b = 10.0, 2.0, -1.0
    x = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    c = 1.0 + 0.3 * np.sin(2.0 * X) * Y
    s = np.sin(np.pi * X) * np.sin(np.pi * Y)
    sx = np.pi * np.cos(np.pi * X) * np.sin(np.pi * Y)
    sy = np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y)
    e = np.exp(1j * (a * X + b * Y))
    lap = e * (-2 * np.pi**2 * s + 2j * (a * sx + b * sy) - (a**2 + b**2) * s)
    u_exact = s * e
    f = lap + (omega / c) ** 2 * u_exact
    u = solve_helmholtz(x, x, omega, c, f, pml=None)
    return float(np.linalg.norm(u - u_exact) / np.linalg.norm(u_exact))


def test_manufactured_second_order_heterogeneous() -> None:
    errors = np.array([_manufactured_error(n) for n in (41, 81, 161)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - 2.0) <= 0.2), (errors, orders)


def test_point_source_matches_hankel_with_pml() -> None:
    # omega = 20, sigma = 0.01, unit amplitude at the centre. Physical region |x|,|y| <= 0.5,
    # PML of width 0.3 around it (box [-0.8, 0.8]^2), h = 1/150 (~47 points per wavelength:
    # the second-order phase error over r <= 0.7 is ~0.4 %, measured 0.44 %).
    omega, sigma = 20.0, 0.01
    x = np.linspace(-0.8, 0.8, 241)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u = solve_helmholtz(x, x, omega, 1.0, gaussian_source(x, x, (0.0, 0.0), sigma), PML(0.3))
    r = np.hypot(X, Y)
    mask = (np.abs(X) <= 0.5) & (np.abs(Y) <= 0.5) & (r >= 0.1)
    exact = 0.25j * hankel2(0, omega * r[mask]) * np.exp(-(omega**2) * sigma**2 / 2)
    rel = np.linalg.norm(u[mask] - exact) / np.linalg.norm(exact)
    assert rel < 0.01, rel
    assert np.all(u[[0, -1], :] == 0) and np.all(u[:, [0, -1]] == 0)


def test_many_sources_one_call_and_symmetry() -> None:
    x = np.linspace(-1, 1, 61)
    y = np.linspace(-1, 1.2, 67)
    c = np.ones((61, 67))
    c[20:30, 30:40] = 1.5
    src = np.stack([gaussian_source(x, y, p, 0.05, 1 + 1j) for p in [(0.1, 0.2), (-0.3, 0)]])
    u = solve_helmholtz(x, y, 5.0, c, src)
    assert u.shape == src.shape and u.dtype == np.complex128
    u1 = solve_helmholtz(x, y, 5.0, c, src[1])
    np.testing.assert_allclose(u[1], u1, rtol=1e-10, atol=1e-12)
    a = helmholtz_operator(x, y, 5.0, c, PML())
    assert abs(a - a.T).max() == 0  # complex symmetric (reciprocity)


def test_pml_profile_formula() -> None:
    x = np.linspace(-1, 1, 9)
    sigma, dsigma = pml_profile(x, -1.0, 1.0, PML(width=0.5, a0=5.0), omega=20.0)
    d = np.maximum(np.abs(x) - 0.5, 0.0)
    np.testing.assert_allclose(sigma, 20.0 * 5.0 * (d / 0.5) ** 2)
    np.testing.assert_allclose(dsigma, 2 * 20.0 * 5.0 * np.sign(x) * d / 0.25)
    assert np.all(sigma[np.abs(x) <= 0.5] == 0)
    zero, dzero = pml_profile(x, -1, 1, None, 20.0)
    assert not zero.any() and not dzero.any()
    # Derivative agrees with finite differences of sigma.
    fine = np.linspace(-1, 1, 2001)
    s, ds = pml_profile(fine, -1.0, 1.0, PML(0.4, 3.0), 7.0)
    np.testing.assert_allclose(np.gradient(s, fine)[1:-1], ds[1:-1], atol=0.5)


def test_cylinder_data_reproduced() -> None:
    from scipy.interpolate import RegularGridInterpolator
    from scipy.io import loadmat

    data = loadmat(DATA)
    sources, receivers, rec_val = data["source"], data["receivers"], data["rec_val"]
    # Free-space data; [-1, 1]^2 with the default PML (0.5 <= |x| <= 1) keeps receivers
    # (|x|, |y| <= 0.402) in the physical region. 201^2 nodes (h = 0.01, 31 points per
    # wavelength) gives ~2.4 % misfit in about a second (512^2 gives 1.75 %).
    x = np.linspace(-1, 1, 201)
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.stack([gaussian_source(x, x, s, 0.01, 1 + 1j) for s in sources])
    misfits = []
    for c_disk in (2.0, 1.0):
        c = np.where(X**2 + Y**2 < 0.1**2, c_disk, 1.0)
        u = solve_helmholtz(x, x, 20.0, c, f)
        pred = np.stack(
            [RegularGridInterpolator((x, x), u[k])(receivers) for k in range(len(sources))],
            axis=1,
        )
        misfits.append(np.linalg.norm(pred - rec_val) / np.linalg.norm(rec_val))
    assert misfits[0] < 0.05, misfits
    assert misfits[1] > 0.25, misfits


def test_bad_inputs_and_resolution_warning() -> None:
    x = np.linspace(-1, 1, 41)
    src = gaussian_source(x, x, (0, 0), 0.1)
    c = np.ones((41, 41))
    c[3, 4] = np.nan
    with pytest.raises(ValueError, match="velocity contains 1 NaN") as err:
        solve_helmholtz(x, x, 5.0, c, src)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="velocity must be positive"):
        solve_helmholtz(x, x, 5.0, np.zeros((41, 41)), src)
    with pytest.raises(ValueError, match="velocity must be positive"):
        helmholtz_operator(x, x, 5.0, -1.0)
    with pytest.raises(ValueError, match="sources contains"):
        solve_helmholtz(x, x, 5.0, 1.0, src * np.nan)
    with pytest.raises(ValueError, match="sources has shape"):
        solve_helmholtz(x, x, 5.0, 1.0, src[:-1])
    with pytest.raises(ValueError, match="omega"):
        solve_helmholtz(x, x, -5.0, 1.0, src)
    with pytest.raises(ValueError, match="PML width"):
        solve_helmholtz(x, x, 5.0, 1.0, src, pml=PML(width=1.0))
    # h = 0.05, omega = 40: 2 pi / (40 * 0.05) = 3.1 points per wavelength.
    with pytest.warns(ResolutionWarning, match=r"only 3\.1 grid points per wavelength"):
        solve_helmholtz(x, x, 40.0, 1.0, src)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_helmholtz(x, x, 5.0, 1.0, src)  # 25 points per wavelength: silent


def test_pml_padding_keeps_physical_nodes() -> None:
    x = np.linspace(-0.5, 0.5, 51)  # h = 0.02
    ext, inner, width = pml_padding(x, 0.25)
    assert width == pytest.approx(0.26) and ext.size == 51 + 26
    np.testing.assert_array_equal(ext[inner], x)
    np.testing.assert_allclose(np.diff(ext), 0.02, rtol=1e-9)
    sigma, _ = pml_profile(ext, ext[0], ext[-1], PML(width), 10.0)
    assert np.all(sigma[inner] < 1e-9) and sigma[0] > 0


def test_walls_solver_is_second_order_with_dirichlet_and_neumann_faces():
    """(Δ + k²) u = f on [0, 1]², u = sin(2πx) cos(3πy) + i x y: Dirichlet on x = 0 and x = 1
    (0 and i y), Neumann on y = 0 and y = 1 (outward ∂u/∂n = −i x and i x)."""
    from reference_solvers.helmholtz import solve_helmholtz_walls
    from reference_solvers.poisson import FaceCondition

    k = 10.0
    errors = []
    for n in (41, 81, 161):
        x = np.linspace(0, 1, n)
        X, Y = np.meshgrid(x, x, indexing="ij")
        smooth = np.sin(2 * np.pi * X) * np.cos(3 * np.pi * Y)
        u = smooth + 1j * X * Y
        f = -13 * np.pi**2 * smooth + k**2 * u
        walls = {
            "x-": FaceCondition("dirichlet", 0.0),
            "x+": FaceCondition("dirichlet", 1j * x),
            "y-": FaceCondition("neumann", -1j * x),
            "y+": FaceCondition("neumann", 1j * x),
        }
        errors.append(np.abs(solve_helmholtz_walls(x, x, k, 1.0, f, walls) - u).max())
    assert all(3.6 < errors[i] / errors[i + 1] < 4.4 for i in range(2)), errors
