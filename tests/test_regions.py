"""Inclusion features: the region network's jet and jump, the cell-averaged FD velocity, and a
coarse inclusion solve with continuity across the interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.nets import Siren
from pinnsiren.engine.regions import BoxRegion, Disk, RegionSum
from pinnsiren.families.helmholtz.forward import cell_slowness_velocity
from pinnsiren.problem import SpecError, load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve
from tests.conftest import PROBLEMS


def _region_net(region) -> RegionSum:
    torch.manual_seed(0)
    outer = Siren(2, 2, width=12, depth=0, omega_0=5.0).double()
    inner = Siren(2, 2, width=7, depth=0, omega_0=9.0).double()
    return RegionSum(outer, inner, region, 2).double()


def test_region_features_switch_on_inside_and_the_jump_is_their_part():
    net = _region_net(Disk((0.1, 0.0), 0.3))
    req = DerivativeRequest(gradient=(0, 1), second=(0, 1))
    theta = torch.linspace(0, 2 * np.pi, 9, dtype=torch.float64)[:-1]
    normal = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    on = torch.tensor([0.1, 0.0], dtype=torch.float64) + 0.3 * normal
    eps = 1e-7
    inside, outside = jet(net, on - eps * normal, req), jet(net, on + eps * normal, req)
    jump = jet(net.jump(), on, req)
    torch.testing.assert_close(inside.value - outside.value, jump.value, atol=1e-5, rtol=0)
    for a in (0, 1):
        torch.testing.assert_close(
            inside.gradient[a] - outside.gradient[a], jump.gradient[a], atol=1e-4, rtol=0
        )
    far = torch.tensor([[0.9, 0.9]], dtype=torch.float64)  # outside: the outer network alone
    alone = net.outer.features(far) @ net.last.weight[:, :12].T + net.last.bias
    torch.testing.assert_close(net(far), alone)
    box = BoxRegion((-0.3, -0.3), (0.3, 0.3))
    assert box(torch.tensor([[0.3, 0.0], [0.31, 0.0]], dtype=torch.float64)).tolist() == [1, 0]


def test_cell_averaged_slowness_integrates_the_disk_exactly():
    """Σ h² / c_eff² over the nodes matches ∫ 1/c² (the disk's area at 1/4, the rest at 1)
    to second order; node values miss it by the cut cells (first order)."""
    spec = load_problem(PROBLEMS / "helmholtz_circle.yaml")
    x = np.linspace(-1, 1, 401)
    space = {"x": x, "y": x}
    h = x[1] - x[0]
    weights = np.full(401, h)
    weights[[0, -1]] = h / 2
    w2 = np.outer(weights, weights)
    exact = (4 - np.pi * 0.01) * 1.0 + np.pi * 0.01 * 0.25
    averaged = float((w2 / cell_slowness_velocity(spec, space) ** 2).sum())
    nodes = float((w2 / spec.pde.velocity({"x": x[:, None], "y": x[None, :]}) ** 2).sum())
    assert abs(averaged - exact) < 1e-5
    assert abs(averaged - exact) < 0.1 * abs(nodes - exact)


def test_coarse_inclusion_solve_is_continuous_and_close_to_fd(tmp_path):
    spec = load_problem(
        PROBLEMS / "helmholtz_circle.yaml",
        [
            "pde.omega=8",
            "pde.velocity.disk.radius=0.2",
            "model.width=800",
            "model.omega_0=60",
            "model.inclusion={width: 120, omega_0: 30.0}",
            "sampling.points={residual: 3000, interior: 1500, interface: 300}",
            "evaluation.grid={x: 64, y: 64}",
            "output.plots=false",
        ],
    )
    solve(spec, tmp_path, progress=False)
    assert compare_run(tmp_path, plots=False)["rel_l2"] < 3e-2
    model = torch.load(tmp_path / "model.pt", weights_only=False)["module"]
    angle = torch.linspace(0, 2 * np.pi, 33, dtype=torch.float64)[:-1]
    normal = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    with torch.no_grad():
        inside, outside = model(0.2 * normal - 1e-9 * normal), model(0.2 * normal + 1e-9 * normal)
    assert float((inside - outside).abs().max()) < 1e-2 * float(inside.abs().max())


def test_inclusion_features_need_a_shaped_velocity_in_a_forward_problem():
    with pytest.raises(SpecError) as info:
        load_problem(
            PROBLEMS / "helmholtz_circle.yaml", ["pde.velocity=1 + 0.5*exp(-(x**2 + y**2)/0.01)"]
        )
    assert info.value.path in ("model.inclusion", "pde.velocity")
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "poisson_manufactured.yaml", ["model.inclusion={width: 10}"])
    assert info.value.path == "model.inclusion"
