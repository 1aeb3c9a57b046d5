"""Tests for pinnsiren.frequency: spectrum vectors, W1 distance and FreSh omega_0 selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from pinnsiren.engine.frequency import (
    FreshResult,
    default_spectrum_size,
    grid_points,
    model_spectrum,
    select_omega_0,
    spectrum_vector,
    wasserstein_1,
)
from pinnsiren.engine.nets import build_model

N = 64


def periodic_axis(n: int) -> np.ndarray:
    return np.arange(n) / n  # x in [0, 1), period 1


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, N // 2 - 1), phase=st.floats(0, 2 * np.pi))
def test_cosine_1d_lands_in_bin_k(k: int, phase: float) -> None:
    s = spectrum_vector(np.cos(2 * np.pi * k * periodic_axis(N) + phase), size=N // 2)
    assert s.shape == (N // 2,)
    assert np.argmax(s) == k - 1
    assert np.delete(s, k - 1).max() < 1e-9 * s[k - 1]
    assert s[k - 1] == pytest.approx(N)  # |F(k)| + |F(-k)| = n/2 + n/2


@pytest.mark.parametrize(
    ("norm", "expected"),
    [("l1", 3 + 4), ("linf", 4), ("l2", 5)],
)
def test_cosine_2d_radius_per_norm(norm: str, expected: int) -> None:
    x = periodic_axis(N)
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.cos(2 * np.pi * (3 * X - 4 * Y))
    s = spectrum_vector(f, size=20, grid_ndim=2, norm=norm)
    assert np.argmax(s) == expected - 1
    assert np.delete(s, expected - 1).max() < 1e-9 * s.max()


def test_channels_are_summed_and_dc_dropped() -> None:
    x = periodic_axis(N)
    X, Y = np.meshgrid(x, x, indexing="ij")
    two = np.stack([5.0 + np.cos(2 * np.pi * 2 * X), np.sin(2 * np.pi * 6 * Y)], axis=-1)
    s = spectrum_vector(two, size=10)  # default: last axis = channels
    assert set(np.flatnonzero(s > 1e-9 * s.max())) == {1, 5}
    assert s[1] == pytest.approx(s[5])  # both unit-amplitude: the constant 5 is not counted
    assert not spectrum_vector(np.full((N, N, 1), 3.0), size=10).any()


def test_channel_less_grid_needs_grid_ndim_and_matches() -> None:
    f = np.random.default_rng(0).standard_normal((16, 12))
    a = spectrum_vector(f, 8, grid_ndim=2)
    b = spectrum_vector(f[..., None], 8)
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError):
        spectrum_vector(f, 8, grid_ndim=4)


def test_size_beyond_grid_is_zero_padded() -> None:
    s = spectrum_vector(np.cos(2 * np.pi * 3 * periodic_axis(8)), size=20)
    assert s.shape == (20,)
    assert not s[4:].any()  # 1-D grid of 8 points has shells 1..4 only


def test_spectrum_accepts_tensors() -> None:
    f = torch.cos(2 * torch.pi * 4 * torch.arange(32) / 32)
    assert np.argmax(spectrum_vector(f, 10)) == 3


@settings(max_examples=30, deadline=None)
@given(i=st.integers(0, 19), j=st.integers(0, 19), mass=st.floats(1e-3, 1e3))
def test_w1_between_deltas_is_bin_distance(i: int, j: int, mass: float) -> None:
    p, q = np.zeros(20), np.zeros(20)
    p[i], q[j] = 1.0, mass  # normalisation makes the mass irrelevant
    assert wasserstein_1(p, q) == pytest.approx(abs(i - j), abs=1e-12)


def test_w1_symmetric_zero_scale_invariant_and_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    bins = np.arange(1, 33)
    for _ in range(5):
        p, q = rng.random(32), rng.random(32)
        d = wasserstein_1(p, q)
        assert d == pytest.approx(wasserstein_1(q, p))
        assert d == pytest.approx(wasserstein_1(7 * p, q))
        assert wasserstein_1(p, 3 * p) == pytest.approx(0.0, abs=1e-12)
        assert d == pytest.approx(wasserstein_distance(bins, bins, p, q))
    assert wasserstein_1([1, 0, 0], [0, 0.5, 0.5]) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("p", "q"),
    [([1, 2], [1, 2, 3]), ([1, -1, 2], [1, 1, 1]), ([0, 0, 0], [1, 1, 1])],
)
def test_w1_rejects_bad_input(p: list, q: list) -> None:
    with pytest.raises(ValueError):
        wasserstein_1(p, q)


def test_grid_points_layout() -> None:
    g = grid_points([(0.0, 1.0), (0.0, 2.0)], (3, 5))
    assert g.shape == (15, 2) and g.dtype == torch.float32
    g = g.reshape(3, 5, 2)
    assert torch.allclose(g[2, 1], torch.tensor([1.0, 0.5]))
    p = grid_points([(0.0, 1.0)], (4,), endpoint=False)
    assert torch.allclose(p[:, 0], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    with pytest.raises(ValueError):
        grid_points([(0.0, 1.0)], (3, 3))


def test_default_size() -> None:
    assert default_spectrum_size((128, 128)) == 64
    assert default_spectrum_size((512, 768)) == 64
    assert default_spectrum_size((40, 100)) == 20


def siren_factory(omega: float, seed: int) -> torch.nn.Module:
    return build_model("siren", 2, 1, width=64, depth=2, omega_0=omega, hidden_omega=30.0)


def test_model_spectrum_is_seeded_and_keeps_global_rng() -> None:
    coords = grid_points([(-1, 1), (-1, 1)], (32, 32)).reshape(32, 32, 2)
    state = torch.random.get_rng_state()
    a = model_spectrum(lambda s: siren_factory(30.0, s), coords, 16, [0, 1])
    assert torch.equal(state, torch.random.get_rng_state())
    b = model_spectrum(lambda s: siren_factory(30.0, s), coords, 16, [0, 1])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 16) and not np.allclose(a[0], a[1])


def siren_target(omega: float, seed: int, coords: torch.Tensor) -> np.ndarray:
    torch.manual_seed(seed)
    with torch.no_grad():
        return siren_factory(omega, seed)(coords).numpy().reshape(N, N)


def test_fresh_recovers_omega_of_a_siren_target() -> None:
    """A target drawn from an untrained SIREN with omega_0 = 60 selects omega_0 near 60.

    Control: the same procedure on an omega_0 = 150 target lands far from 60, so the
    selection follows the target and the first test can fail.
    """
    coords = grid_points([(-1, 1), (-1, 1)], (N, N))
    result = select_omega_0(siren_target(60.0, 1234, coords), coords, siren_factory)
    assert isinstance(result, FreshResult)
    assert abs(result.best_omega - 60.0) <= 20.0
    assert len(result.table) == 20 and result.size == 32
    assert result.best_omega == result.omegas[np.argmin(result.mean)]
    assert result.mean[0] > 2 * result.mean.min() and result.mean[-1] > 2 * result.mean.min()
    assert "*" in result.format_table()
    summary = json.loads(json.dumps(result.as_dict()))
    assert summary["omega_0"] == result.omega_0 == result.best_omega
    assert len(summary["table"]) == 20

    control = select_omega_0(siren_target(150.0, 99, coords), coords, siren_factory)
    assert control.best_omega >= 110.0


def test_fresh_on_a_slice_of_a_space_time_model() -> None:
    """1-D target u0(x) against a model of (x, t) evaluated on t = 0."""
    x = torch.linspace(-1, 1, 128)
    coords = torch.stack([x, torch.zeros_like(x)], dim=-1)
    target = np.sin(6 * np.pi * x.numpy())  # 6 periods on [-1, 1]: bin 6

    def factory(omega: float, seed: int) -> torch.nn.Module:
        return build_model("siren", 2, 1, width=32, depth=1, omega_0=omega)

    r = select_omega_0(target, coords, factory, omegas=[1.0, 40.0, 400.0], n_inits=2)
    assert r.size == 64
    assert r.target_spectrum.argmax() == 5
    assert r.best_omega == 40.0


def test_select_rejects_mismatched_target() -> None:
    coords = grid_points([(-1, 1), (-1, 1)], (8, 8))
    with pytest.raises(ValueError):
        select_omega_0(np.zeros(10), coords, siren_factory, omegas=[30.0])
    with pytest.raises(ValueError):
        select_omega_0(np.ones((8, 8)), coords, siren_factory, omegas=[30.0])


def test_tune_runs_on_every_kind_of_shipped_problem():
    """FreSh finds a target for wave, Helmholtz, Poisson and fit problems (tiny settings)."""
    from pinnsiren.engine.sampling import make_generator
    from pinnsiren.problem import load_problem
    from pinnsiren.run.tune import fresh_for_problem
    from tests.conftest import PROBLEMS

    small = [
        "model.width=16",
        "model.fresh.grid=32",
        "model.fresh.inits=1",
        "model.fresh.omegas=[10.0, 60.0]",
    ]
    for name in ("wave_gaussian", "helmholtz_uniform", "poisson_manufactured", "fit_image"):
        extra = ["pde.signal.size=32"] if name == "fit_image" else []
        spec = load_problem(PROBLEMS / f"{name}.yaml", small + extra)
        compiled = spec.family.compile(spec, make_generator(0))
        result, seconds = fresh_for_problem(spec, compiled.in_axes, compiled.out_features)
        assert result.omega_0 in (10.0, 60.0) and seconds >= 0, name
