"""Heat family: the Crank–Nicolson reference (exactness, second order), the PINN residual
against nested autograd, and the shipped problem solved to its exact solution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pinnsiren.engine.nets import Siren
from pinnsiren.engine.sampling import make_generator
from pinnsiren.problem import SpecError, load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve
from reference_solvers.heat import solve_heat
from reference_solvers.poisson import FaceCondition
from tests.conftest import PROBLEMS

KAPPA = 0.1
RATE = KAPPA * (math.pi**2 / 4 + math.pi**2)


def _mode(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    """exp(−κ(π²/4 + π²)t) cos(πx/2) sin(πy): u_x = 0 at x = 0, u = 0 on the other walls."""
    X, Y = np.meshgrid(x, y, indexing="ij")
    return math.exp(-RATE * t) * np.cos(np.pi * X / 2) * np.sin(np.pi * Y)


MIXED = {
    "x-": FaceCondition("neumann", 0.0),
    "x+": FaceCondition("dirichlet", 0.0),
    "y-": FaceCondition("dirichlet", 0.0),
    "y+": FaceCondition("dirichlet", 0.0),
}


def test_crank_nicolson_is_second_order_with_mixed_walls():
    errors = []
    for n in (17, 33, 65):
        x = np.linspace(0, 1, n)
        u = solve_heat([x, x], KAPPA, _mode(x, x, 0.0), [0.5, 1.0], MIXED, dt=1.0 / (n - 1))
        errors.append(np.abs(u[-1] - _mode(x, x, 1.0)).max())
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(3.6 < r < 4.4 for r in ratios), (errors, ratios)


def test_polynomial_with_a_neumann_flux_is_exact():
    """u = x² + 2κt: u_t = 2κ = κ u_xx; ∂u/∂n = 0 at x = 0 and 2 at x = 1, both resolved
    exactly by the three-point stencil with ghost nodes and by Crank–Nicolson in time."""
    x = np.linspace(0, 1, 21)
    walls = {"x-": FaceCondition("neumann", 0.0), "x+": FaceCondition("neumann", 2.0)}
    u = solve_heat([x], KAPPA, x**2, [0.0, 0.3, 1.0], walls, dt=0.07)
    for k, t in enumerate((0.0, 0.3, 1.0)):
        np.testing.assert_allclose(u[k], x**2 + 2 * KAPPA * t, atol=1e-10)


def test_time_dependent_source_converges_at_second_order():
    """u = t sin(πx), f = sin(πx)(1 + κπ² t), u = 0 at both ends."""

    def run(n: int) -> float:
        x = np.linspace(0, 1, n)
        walls = {"x-": FaceCondition("dirichlet", 0.0), "x+": FaceCondition("dirichlet", 0.0)}

        def source(t: float) -> np.ndarray:
            return np.sin(np.pi * x) * (1 + KAPPA * np.pi**2 * t)

        u = solve_heat([x], KAPPA, np.zeros(n), [1.0], walls, source=source, dt=1.0 / (n - 1))
        return float(np.abs(u[-1] - np.sin(np.pi * x)).max())

    e1, e2 = run(21), run(41)
    assert 3.6 < e1 / e2 < 4.4, (e1, e2)


def test_bad_heat_inputs_are_refused():
    x = np.linspace(0, 1, 5)
    walls = {"x-": FaceCondition("dirichlet", 0.0), "x+": FaceCondition("dirichlet", 0.0)}
    with pytest.raises(ValueError, match="kappa"):
        solve_heat([x], -1.0, np.zeros(5), [1.0], walls)
    with pytest.raises(ValueError, match="faces"):
        solve_heat([x], 1.0, np.zeros(5), [1.0], {"x-": walls["x-"]})
    with pytest.raises(ValueError, match="increasing"):
        solve_heat([x], 1.0, np.zeros(5), [1.0, 0.5], walls)


def test_heat_residual_is_u_t_minus_kappa_laplacian_minus_f():
    """The compiled residual of a random network equals u_t − κΔu − f by nested autograd."""
    spec = load_problem(PROBLEMS / "heat_2d.yaml", ["pde.rhs=x*t", "sampling.points.residual=32"])
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    term = next(t for t in compiled.terms if t.name == "residual")
    torch.manual_seed(0)
    net = Siren(3, 1, width=16, depth=1, omega_0=3.0).double()
    batch = term.sample(10**9)
    x = batch["x"].clone().requires_grad_(True)
    u = net(x)[:, 0]
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    lap = sum(torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    expected = g[:, 2] - KAPPA * lap - x[:, 0] * x[:, 2]
    torch.testing.assert_close(term.residual(net, batch)[:, 0], expected.detach())


def test_heat_2d_least_squares_reaches_the_exact_solution(tmp_path):
    """The shipped file, narrower: random features and one solve, compared with the exact
    solution and the FD reference."""
    spec = load_problem(
        PROBLEMS / "heat_2d.yaml",
        [
            "model.width=400",
            "sampling.points={residual: 1200, initial: 300, boundary: 300}",
            "evaluation.grid={x: 21, y: 21, t: [0.0, 0.5, 1.0]}",
            "output.plots=false",
        ],
    )
    solve(spec, tmp_path, progress=False)
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["pinn_vs_exact"]["rel_l2"] < 1e-4
    assert metrics["reference_vs_exact"]["rel_l2"] < 2e-3


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("initial.velocity=1.0", "initial.velocity"),
        ("boundary.kind=pml", "boundary.kind"),
        ("reference.cfl=0.3", "reference.cfl"),
        ("pde.diffusivity=0", "pde.diffusivity"),
    ],
)
def test_heat_refuses_what_it_does_not_have(override, path):
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "heat_2d.yaml", [override])
    assert info.value.path == path
