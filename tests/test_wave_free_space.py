"""Wave in free space: the domain of influence, light-cone features that solve the wave
equation exactly, their tied pairs, and a 1-D pulse against d'Alembert's solution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.sampling import make_generator
from pinnsiren.families.wave import influence_of
from pinnsiren.problem import SpecError, load_problem, parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import build_model_for, solve
from tests.conftest import PROBLEMS

PULSE_1D = {
    "name": "free1d",
    "pde": {
        "kind": "wave",
        "speed": 1.0,
        "free_space": True,
        "exact": "0.5*exp(-(x - t)**2/1e-3) + 0.5*exp(-(x + t)**2/1e-3)",
    },
    "domain": {"x": [-1.0, 1.0], "t": [0.0, 0.4]},
    "initial": {"value": "exp(-x**2/1e-3)", "velocity": 0.0},
    "boundary": {"kind": "none"},
    "model": {"width": 400, "depth": 0, "omega_0": 63.0, "init": "light_cone"},
    "training": {
        "output_layer": "least_squares",
        "phases": [],
        "least_squares": {"points": {"residual": 200, "initial_value": 2000}},
    },
    "loss": {"weights": {"initial_velocity": 0.0}},
    "evaluation": {"grid": {"x": 201, "t": [0.0, 0.2, 0.4]}},
    "output": {"plots": False},
}


def test_influence_ball_covers_the_data_and_grows_at_the_speed():
    spec = load_problem(PROBLEMS / "wave_gaussian.yaml")
    inf = influence_of(spec)
    # exp(−r²/1e−3) falls below 1e−6 of its peak at r = √(1e−3 · ln 1e6) ≈ 0.1175
    assert np.allclose(inf.center, 0.0, atol=1e-2)
    assert 0.1175 + 0.02 < inf.radius < 0.1175 + 0.02 + 0.02
    assert inf.radius_at(0.4) == pytest.approx(inf.radius + 0.4)
    pts = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.3, 0.0, 0.3], [0.9, 0.0, 0.4]])
    assert inf.inside(pts).tolist() == [True, False, True, False]


def test_light_cone_features_solve_the_wave_equation_and_pairs_are_at_rest():
    """Every feature of the light-cone first layer has u_tt − c²Δu = 0 (to round-off), and
    a tied ± pair has u_t = 0 at t = 0."""
    spec = load_problem(PROBLEMS / "wave_gaussian.yaml", ["model.width=64", "pde.speed=1.5"])
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    net = build_model_for(spec, compiled).double()
    x = torch.rand(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    req = DerivativeRequest(gradient=(2,), second=(0, 1, 2))
    j = jet(net, x, req, features=True)
    wave = j.second[2] - 1.5**2 * (j.second[0] + j.second[1])
    assert float(wave.abs().max()) < 1e-9 * float(j.second[2].abs().max())
    tie = compiled.tie(net)
    x[:, 2] = 0.0
    ut = jet(net, x, req, features=True).gradient[2]
    ut = torch.cat([ut, torch.zeros_like(ut[:, :1])], dim=1) @ tie
    assert float(ut.abs().max()) < 1e-9 * float(j.gradient[2].abs().max())


def test_free_space_pulse_matches_dalembert(tmp_path):
    """u0 = exp(−x²/1e−3) at rest: u = (f(x − t) + f(x + t))/2; the least-squares field
    (zero outside the domain of influence) is far closer to it than the coarse FD reference."""
    solve(parse_problem(PULSE_1D), tmp_path, progress=False)
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["pinn_vs_exact"]["rel_l2"] < 1e-2
    assert metrics["reference_vs_exact"]["rel_l2"] > 5 * metrics["pinn_vs_exact"]["rel_l2"]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("boundary.kind=dirichlet", "pde.free_space"),
        ("pde.speed=1 + 0.1*x", "model.init"),
        ("model.depth=1", "model.depth"),
    ],
)
def test_free_space_and_light_cone_rules(override, path):
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "wave_gaussian.yaml", [override])
    assert info.value.path == path


def test_light_cone_is_refused_outside_the_wave_family():
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "poisson_manufactured.yaml", ["model.init=light_cone"])
    assert info.value.path == "model.init"
