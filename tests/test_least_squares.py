"""Least-squares output layers: the assembled rows against the terms' own residuals, solves to
round-off on manufactured problems, the solvers' failure messages, and Adam combined with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinnsiren.engine.lstsq import (
    LeastSquaresError,
    choose_solver,
    residual_of,
    solve_normal_blocks,
    solve_qr,
    term_rows,
)
from pinnsiren.engine.sampling import make_generator
from pinnsiren.problem import SpecError, load_problem, parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import build_model_for, least_squares_hook, solve
from tests.conftest import PROBLEMS

CPU = torch.device("cpu")


def _theta_of(net, group: int) -> torch.Tensor:
    """The output layer as least-squares coefficients ((channel, feature), group) ordering."""
    w = torch.cat([net.last.weight, net.last.bias[:, None]], dim=1)  # (G·p, K+1)
    groups = w.shape[0] // group
    return w.reshape(groups, group, -1).permute(1, 2, 0).reshape(-1, groups)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("poisson_manufactured.yaml", ["boundary.faces={x+: {kind: neumann, value: 1.0}}"]),
        ("wave_1d.yaml", []),
        ("heat_2d.yaml", ["pde.rhs=x*t"]),
        ("helmholtz_dirichlet.yaml", ["boundary.faces={y-: {kind: neumann, value: 0.5}}"]),
        ("helmholtz_uniform.yaml", []),
        ("helmholtz_square.yaml", []),
        ("helmholtz_inverse_synthetic.yaml", ["evaluation.grid.x=32", "evaluation.grid.y=32"]),
        ("fit_image.yaml", ["pde.signal.size=16", "pde.supervision=gradient"]),
    ],
)
def test_assembled_rows_reproduce_every_linear_terms_residual(name, overrides):
    """A θ − g with θ the network's own output layer equals term.residual(model, batch) for
    every linear term of every family (real, complex and one-group-per-source fields)."""
    small = ["model.width=24", "model.depth=1", "model.omega_0=8.0", *overrides]
    spec = load_problem(PROBLEMS / name, small)
    compiled = spec.family.compile(spec, make_generator(0)).to(CPU, torch.float64)
    model = build_model_for(spec, compiled).double()
    net = compiled.network(model)
    with torch.no_grad():
        net.last.weight.normal_(0.0, 1.0)
        net.last.bias.normal_(0.0, 1.0)
    theta = _theta_of(net, compiled.group)
    assert compiled.linear_terms
    for term in compiled.linear_terms:
        batch = term.sample(3, 40)
        a, g = term_rows(term, model, batch, compiled.group)
        m = a.shape[0] // len(batch["x"])
        with torch.no_grad():
            expected = term.residual(model, batch)
        got = residual_of(a, g, theta, m)
        torch.testing.assert_close(got, expected.reshape(got.shape), rtol=1e-9, atol=1e-9)


def test_a_tiny_poisson_problem_is_solved_to_round_off(tmp_path):
    """−u'' = π² sin(πx) on [0, 1], u = 0 at both ends: 60 random features, one solve."""
    spec = parse_problem(
        {
            "name": "tiny",
            "pde": {"kind": "poisson", "rhs": "pi**2*sin(pi*x)", "exact": "sin(pi*x)"},
            "domain": {"x": [0.0, 1.0]},
            "model": {"width": 60, "depth": 0, "omega_0": 20.0},
            "training": {"output_layer": "least_squares", "phases": []},
            "sampling": {"points": {"residual": 200, "boundary": 20}},
            "output": {"plots": False},
        }
    )
    solve(spec, tmp_path, progress=False)
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["pinn_vs_exact"]["rel_l2"] < 1e-8


def test_shipped_helmholtz_dirichlet_reaches_its_exact_solution(tmp_path):
    spec = load_problem(
        PROBLEMS / "helmholtz_dirichlet.yaml",
        ["evaluation.grid={x: 41, y: 41}", "output.plots=false"],
    )
    solve(spec, tmp_path, progress=False)
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["pinn_vs_exact"]["rel_l2"] < 1e-8
    assert metrics["reference_vs_exact"]["rel_l2"] < 2e-2  # the FD reference is the weaker one


def _blocks(a: torch.Tensor, g: torch.Tensor):
    return lambda: iter([(a, g)])


def test_solvers_fit_a_consistent_system_to_round_off():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(80, 12, generator=gen, dtype=torch.float64) * torch.logspace(0, 3, 12)
    theta = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    g = a @ theta
    qr = solve_qr(_blocks(a, g), 80, 12, 2, 0.0, CPU)
    torch.testing.assert_close(qr.theta, theta, rtol=1e-10, atol=1e-10)
    normal = solve_normal_blocks(_blocks(a, g), 80, 12, 2, 0.0, CPU)
    torch.testing.assert_close(normal.theta, theta, rtol=1e-5, atol=1e-5)


def test_a_singular_system_is_a_clear_error_not_nan():
    zero = torch.zeros(10, 4, dtype=torch.float64)
    rhs = torch.ones(10, 1, dtype=torch.float64)
    for solver in (solve_qr, solve_normal_blocks):
        with pytest.raises(LeastSquaresError, match="singular"):
            solver(_blocks(zero, rhs), 10, 4, 1, 0.0, CPU)
    bad = torch.ones(10, 4, dtype=torch.float64)
    bad[3, 2] = float("nan")
    with pytest.raises(LeastSquaresError, match="NaN"):
        solve_qr(_blocks(bad, rhs), 10, 4, 1, 0.0, CPU)


def test_a_rank_deficient_system_reports_its_conditioning_and_stays_finite():
    """Two identical columns: QR keeps a finite solution whose fit is exact and says the
    system is at the edge of float64; the normal equations take a ridge and say which."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    a[:, 4] = a[:, 3]
    g = a @ torch.arange(5.0, dtype=torch.float64)[:, None]
    qr = solve_qr(_blocks(a, g), 30, 5, 1, 0.0, CPU)
    assert torch.isfinite(qr.theta).all() and qr.conditioning < 1e-12
    torch.testing.assert_close(a @ qr.theta, g, rtol=1e-8, atol=1e-8)
    normal = solve_normal_blocks(_blocks(a, g), 30, 5, 1, 0.0, CPU)
    assert torch.isfinite(normal.theta).all() and normal.ridge > 0
    torch.testing.assert_close(a @ normal.theta, g, rtol=1e-5, atol=1e-5)


def test_a_system_larger_than_the_memory_is_refused_before_it_is_built():
    with pytest.raises(LeastSquaresError, match="GB"):
        choose_solver("qr", 10**6, 10**4, CPU, cap_gb=1.0)
    assert choose_solver("auto", 10**6, 5000, CPU, cap_gb=1.0)[0] == "normal"
    assert choose_solver("auto", 1000, 100, CPU, cap_gb=1.0)[0] == "qr"


def test_adam_with_the_layer_solved_every_step_then_a_final_solve(tmp_path):
    """A deeper network trained by Adam through the per-step solve: the loss falls, the layer
    is not trained, and the final float64 solve is reported in run.json."""
    spec = load_problem(
        PROBLEMS / "poisson_manufactured.yaml",
        [
            "model.width=32",
            "model.depth=1",
            "model.omega_0=8.0",
            "training.phases=[{steps: 30, lr: 1.0e-3}]",
            "sampling.points={residual: 256, boundary: 128}",
            "output.plots=false",
        ],
    )
    result = solve(spec, tmp_path, progress=False)
    history = result.train.history
    assert history[-1]["residual"] < history[0]["residual"]
    info = (tmp_path / "run.json").read_text()
    assert '"least_squares"' in info and '"rows"' in info
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["pinn_vs_exact"]["rel_l2"] < 5e-2  # 32 features after 30 steps


def test_least_squares_without_the_pde_in_the_fit_is_refused():
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "poisson_manufactured.yaml", ["loss.weights.residual=0"])
    assert info.value.path == "loss.weights.residual"
    spec = load_problem(PROBLEMS / "poisson_manufactured.yaml")
    compiled = spec.family.compile(spec, make_generator(0))
    for term in compiled.terms:
        term.weight = 0.0
    with pytest.raises(LeastSquaresError, match="positive weight"):
        least_squares_hook(spec, compiled, progress=False)


def test_wave_rows_are_exact_for_a_standing_wave():
    """The assembled wave rows vanish (to round-off) on coefficients of an exact solution:
    the solve of wave_1d reaches it to 1e-10."""
    spec = load_problem(PROBLEMS / "wave_1d.yaml", ["evaluation.grid={x: 41, t: 11}"])
    compiled = spec.family.compile(spec, make_generator(0)).to(CPU, torch.float64)
    model = build_model_for(spec, compiled).double()
    hook = least_squares_hook(spec, compiled, progress=False)
    hook.finish(model)
    data = compiled.evaluate(model)
    grid = data.grid
    T, X = np.meshgrid(grid["t"], grid["x"], indexing="ij")
    exact = np.sin(np.pi * X) * np.cos(np.pi * T) + 0.3 * np.sin(4 * np.pi * X) * np.cos(
        4 * np.pi * T
    )
    err = np.linalg.norm(data.fields["u"] - exact) / np.linalg.norm(exact)
    assert err < 1e-10
