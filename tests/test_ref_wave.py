"""Tests for ``reference_solvers.wave``: u_tt = c² Δu, leapfrog, walls, energy."""

from __future__ import annotations

import numpy as np
import pytest

from reference_solvers.wave import solve_wave, stable_time_step, wave_energy

C = 1.3


def _orders(errors: list[float]) -> np.ndarray:
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def _standing_1d(n: int, wall: str, with_velocity: bool) -> float:
    x = np.linspace(0.0, 1.0, n)
    shape = np.sin(np.pi * x) if wall == "dirichlet" else np.cos(np.pi * x)
    w = np.pi * C
    times = np.array([0.0, 0.25, 0.5, 0.77, 1.0])  # unequal intervals on purpose
    if with_velocity:  # u = sin(w t) s(x) + cos(w t) s(x): u0 = s, v0 = w s
        u = solve_wave([x], C, shape, w * shape, times, wall)
        exact = (np.sin(w * times) + np.cos(w * times))[:, None] * shape
    else:
        u = solve_wave([x], C, shape, 0.0, times, wall)
        exact = np.cos(w * times)[:, None] * shape
    assert u.shape == (5, n)
    np.testing.assert_array_equal(u[0], shape if wall == "neumann" else u[0])
    return float(np.max(np.abs(u - exact)))


@pytest.mark.parametrize("wall", ["dirichlet", "neumann"])
@pytest.mark.parametrize("with_velocity", [False, True])
def test_standing_wave_1d_second_order(wall: str, with_velocity: bool) -> None:
    errors = [_standing_1d(n, wall, with_velocity) for n in (21, 41, 81)]
    assert np.all(np.abs(_orders(errors) - 2.0) <= 0.2), errors


def _standing_2d(n: int, with_velocity: bool) -> float:
    # u = sin(pi x) cos(1.5 pi y) T(t) on [0, 1] x [0, 2]: Dirichlet in x, Neumann in y.
    x = np.linspace(0.0, 1.0, n)
    y = np.linspace(0.0, 2.0, 2 * n - 1)
    X, Y = np.meshgrid(x, y, indexing="ij")
    shape = np.sin(np.pi * X) * np.cos(1.5 * np.pi * Y)
    w = C * np.pi * np.sqrt(1.0 + 1.5**2)
    walls = {"x-": "dirichlet", "x+": "dirichlet", "y-": "neumann", "y+": "neumann"}
    times = [0.3, 0.7]
    if with_velocity:
        u = solve_wave([x, y], C, 0.0 * shape, w * shape, times, walls)
        exact = np.sin(w * np.array(times))[:, None, None] * shape
    else:
        u = solve_wave([x, y], C, shape, 0.0, times, walls)
        exact = np.cos(w * np.array(times))[:, None, None] * shape
    return float(np.max(np.abs(u - exact)))


@pytest.mark.parametrize("with_velocity", [False, True])
def test_standing_wave_2d_second_order(with_velocity: bool) -> None:
    errors = [_standing_2d(n, with_velocity) for n in (21, 41, 81)]
    assert np.all(np.abs(_orders(errors) - 2.0) <= 0.2), errors


@pytest.mark.parametrize("wall", ["dirichlet", "neumann"])
def test_discrete_energy_conserved(wall: str) -> None:
    x = np.linspace(0.0, 1.0, 61)
    y = np.linspace(0.0, 0.8, 41)
    X, Y = np.meshgrid(x, y, indexing="ij")
    c = 1.0 + 0.5 * X * Y  # heterogeneous speed
    u0 = np.exp(-((X - 0.4) ** 2 + (Y - 0.5) ** 2) / 0.01)
    v0 = np.sin(3 * X) * Y * (0.8 - Y)
    dt = 0.9 * stable_time_step([x, y], c)
    times = np.arange(300) * dt  # every step is a snapshot
    u = solve_wave([x, y], c, u0, v0, times, wall, dt=dt)
    energy = np.array([wave_energy([x, y], c, u[i], u[i + 1], dt) for i in range(299)])
    assert energy[0] > 0.1
    assert np.ptp(energy) / energy[0] < 1e-10


def test_absorbing_walls_let_pulse_leave_2d() -> None:
    x = np.linspace(-1.0, 1.0, 101)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u0 = np.exp(-(X**2 + Y**2) / (2 * 0.08**2))
    dt = 0.5 * stable_time_step([x, x], 1.0)
    k = round(1.8 / dt)  # the front has crossed every wall (corners at t = sqrt(2))
    times = np.array([0, 1, k, k + 1]) * dt
    u = solve_wave([x, x], 1.0, u0, 0.0, times, "absorbing", dt=dt)
    e0 = wave_energy([x, x], 1.0, u[0], u[1], dt)
    e1 = wave_energy([x, x], 1.0, u[2], u[3], dt)
    assert e1 / e0 < 0.05, e1 / e0


def test_absorbing_walls_1d_and_mixed_walls() -> None:
    x = np.linspace(-1.0, 1.0, 201)
    u0 = np.exp(-(x**2) / (2 * 0.05**2))
    dt = stable_time_step([x], 1.0) * 0.5
    k = round(1.5 / dt)
    u = solve_wave([x], 1.0, u0, 0.0, np.array([0, 1, k, k + 1]) * dt, "absorbing", dt=dt)
    e = [wave_energy([x], 1.0, u[i], u[i + 1], dt) for i in (0, 2)]
    assert e[1] / e[0] < 1e-3
    # Reflecting left wall, absorbing right wall: half the pulse comes back and leaves too;
    # the right-moving half leaves at t ~ 1, the reflected one only at t ~ 3: at t = 1.6 about
    # half of the energy remains.
    walls = {"x-": "neumann", "x+": "absorbing"}
    k = round(1.6 / dt)
    u = solve_wave([x], 1.0, u0, 0.0, np.array([0, 1, k, k + 1]) * dt, walls, dt=dt)
    ratio = wave_energy([x], 1.0, u[2], u[3], dt) / wave_energy([x], 1.0, u[0], u[1], dt)
    assert 0.45 < ratio < 0.55


def test_snapshots_at_requested_times() -> None:
    x = np.linspace(0.0, 1.0, 41)
    s = np.sin(np.pi * x)
    times = [0.0, 0.0, 1e-3, 0.31, 0.9]
    u = solve_wave([x], 1.0, s, 0.0, times, dt=0.01)
    np.testing.assert_array_equal(u[0], u[1])
    exact = np.cos(np.pi * np.array(times))[:, None] * s
    assert np.max(np.abs(u - exact)) < 1e-3


def test_bad_inputs() -> None:
    x = np.linspace(0.0, 1.0, 21)
    u0 = np.zeros(21)
    limit = stable_time_step([x], 2.0)
    assert limit == pytest.approx(0.05 / 2.0)
    with pytest.raises(ValueError, match=r"dt=0\.03 exceeds the leapfrog stability limit 0\.025"):
        solve_wave([x], 2.0, u0, 0.0, [0.1], dt=0.03)
    with pytest.raises(ValueError, match="exceeds"):
        solve_wave([x], 2.0, u0, 0.0, [0.1], cfl=1.5)
    c = np.ones(21)
    c[4] = np.nan
    with pytest.raises(ValueError, match="speed contains 1 NaN") as err:
        solve_wave([x], c, u0, 0.0, [0.1])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="speed must be positive"):
        solve_wave([x], np.zeros(21), u0, 0.0, [0.1])
    with pytest.raises(ValueError, match="u0 has shape"):
        solve_wave([x], 1.0, np.zeros(20), 0.0, [0.1])
    with pytest.raises(ValueError, match="non-decreasing"):
        solve_wave([x], 1.0, u0, 0.0, [0.2, 0.1])
    with pytest.raises(ValueError, match="boundary"):
        solve_wave([x], 1.0, u0, 0.0, [0.1], boundary="periodic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coords"):
        solve_wave([x, x, x], 1.0, u0, 0.0, [0.1])
