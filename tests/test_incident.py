"""The analytic free-space field of a Gaussian source (scattered-field inversion)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import hankel2

from pinnsiren.families.helmholtz.incident import NEAR_RADIUS, gaussian_source_field
from reference_solvers.helmholtz import PML, gaussian_source, solve_helmholtz

OMEGA, SIGMA = 20.0, 0.01


def test_tabulated_core_joins_the_closed_form():
    edge = NEAR_RADIUS * SIGMA
    inside = gaussian_source_field(np.array([edge * (1 - 1e-9)]), OMEGA, SIGMA)[0]
    outside = gaussian_source_field(np.array([edge]), OMEGA, SIGMA)[0]
    assert abs(inside - outside) < 1e-6 * abs(outside)
    # far away: the point-source field times the source's Fourier transform at |xi| = k
    r = np.array([0.3, 0.7])
    expected = 0.25j * hankel2(0, OMEGA * r) * math.exp(-((OMEGA * SIGMA) ** 2) / 2)
    np.testing.assert_allclose(gaussian_source_field(r, OMEGA, SIGMA), expected, rtol=1e-12)


def test_solves_the_helmholtz_equation_through_the_source():
    """(Δ + k²) u₀ = g_σ checked with a fourth-order FD Laplacian across the core."""
    h = SIGMA / 20
    x = np.arange(-6 * SIGMA, 6 * SIGMA + h / 2, h)
    X, Y = np.meshgrid(x, x, indexing="ij")
    c0 = 1.5
    u = gaussian_source_field(np.hypot(X, Y), OMEGA, SIGMA, c0=c0, amplitude=2 - 1j)

    def d2(a: np.ndarray, axis: int) -> np.ndarray:
        s = lambda k: np.roll(a, k, axis=axis)  # noqa: E731
        return (-s(2) + 16 * s(1) - 30 * a + 16 * s(-1) - s(-2)) / (12 * h**2)

    lap = d2(u, 0) + d2(u, 1)
    g = (2 - 1j) * np.exp(-(X**2 + Y**2) / (2 * SIGMA**2)) / (2 * math.pi * SIGMA**2)
    inner = (slice(4, -4), slice(4, -4))
    residual = (lap + (OMEGA / c0) ** 2 * u - g)[inner]
    # tabulation/interpolation error amplified by 1/h²: well under 1 % of the source peak
    assert np.max(np.abs(residual)) < 1e-2 * np.max(np.abs(g))
    assert np.sqrt(np.mean(np.abs(residual) ** 2)) < 1e-3 * np.max(np.abs(g))
    assert np.isfinite(u).all() and abs(u[len(x) // 2, len(x) // 2]) > 0.1


def test_matches_the_fd_solver_with_a_pml():
    n = 301
    x = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    src = (0.1, -0.2)
    f = gaussian_source(x, x, src, 0.03, 1 + 1j)
    fd = solve_helmholtz(x, x, 10.0, 1.0, f, PML(width=0.4, a0=5.0))
    u0 = gaussian_source_field(np.hypot(X - src[0], Y - src[1]), 10.0, 0.03, amplitude=1 + 1j)
    inner = (np.abs(X) <= 0.6) & (np.abs(Y) <= 0.6)
    err = np.linalg.norm((fd - u0)[inner]) / np.linalg.norm(u0[inner])
    assert err < 0.01


def test_rejects_nonpositive_parameters():
    with pytest.raises(ValueError, match="positive"):
        gaussian_source_field(np.array([0.1]), OMEGA, 0.0)
