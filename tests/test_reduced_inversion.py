"""Reduced-space inversion (``pde.velocity.method: reduced``): FD wavefields, the adjoint-state
gradient through a torch autograd function, the velocity network trained on data and TV."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml

from pinnsiren.engine.sampling import make_generator
from pinnsiren.errors import UserError
from pinnsiren.families.base import eval_grid
from pinnsiren.families.helmholtz.fwi import fd_data_misfit
from pinnsiren.families.helmholtz.inversion import true_velocity_on
from pinnsiren.families.helmholtz.operator import AXES, source_densities
from pinnsiren.families.helmholtz.receivers import receiver_data
from pinnsiren.families.helmholtz.reduced import FDData, ReducedInversion
from pinnsiren.families.metrics import region_mask
from pinnsiren.output.gridfile import read_grid_data
from pinnsiren.problem import SpecError, parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import build_model_for, solve
from reference_solvers.fwi import misfit_and_gradient
from reference_solvers.helmholtz import PML
from tests.conftest import PROBLEMS

RAW = yaml.safe_load((PROBLEMS / "helmholtz_inverse_synthetic.yaml").read_text())


def reduced_raw(**changes) -> dict:
    """The synthetic inversion as a small reduced problem: ω = 12 on an 81² grid, noise-free
    data from the same grid, one L-BFGS phase."""
    raw = copy.deepcopy(RAW)
    for key in ("model", "sampling"):
        raw.pop(key)
    raw["pde"].pop("formulation")
    raw["pde"]["omega"] = 12.0
    raw["pde"]["velocity"].update(
        method="reduced", model={"width": 32, "depth": 2, "omega_0": 10.0}, tv_of="slowness"
    )
    raw["pde"]["data"]["synthesize"]["noise"] = 0.0
    raw["training"] = {"dtype": "float64", "phases": [{"optimizer": "lbfgs", "steps": 60}]}
    raw["loss"] = {"weights": {"data": 1.0, "tv": 1e-4}}
    raw["evaluation"] = {"grid": {"x": 81, "y": 81}}
    raw["reference"] = {"refine": 1, "iterations": 5}
    raw["output"] = {"plots": False}
    for key, value in changes.items():
        target = raw
        *path, last = key.split(".")
        for part in path:
            target = target.setdefault(part, {})
        target[last] = value
    return raw


def reduced_spec(**changes):
    return parse_problem(reduced_raw(**changes), "reduced.yaml", PROBLEMS)


def test_fd_data_gradient_matches_central_differences():
    spec = reduced_spec()
    inv = ReducedInversion(spec)
    n = len(inv.wavefields.free)
    gen = torch.Generator().manual_seed(0)
    m = (1.0 + 0.1 * torch.rand(n, generator=gen, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(len(inv.data.receivers), 2 * len(inv.data.sources), generator=gen)
    weights = weights.double()

    def loss(m_free: torch.Tensor) -> torch.Tensor:  # a real, nonlinear function of the data
        d = FDData.apply(m_free, inv.wavefields)
        return (weights * d).sum() + (d**2).sum()

    loss(m).backward()
    direction = torch.randn(n, generator=gen, dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        fd = (loss(m + h * direction) - loss(m - h * direction)) / (2 * h)
    assert float(m.grad @ direction) == pytest.approx(float(fd), rel=1e-6)


def test_fd_data_gradient_is_the_classical_fwi_gradient():
    """The misfit ½‖d − d_obs‖² differentiated through FDData equals reference_solvers' own
    misfit gradient on the free nodes. Both use ForwardModel.gradient, so this checks the
    wiring (free nodes, background, data layout); the central differences above check the
    gradient itself."""
    spec = reduced_spec()
    inv = ReducedInversion(spec)
    grid = eval_grid(spec)
    true = true_velocity_on(spec, grid)
    m_free = torch.as_tensor(1.0 / true.ravel()[inv.wavefields.free] ** 2 * 1.05)
    m_free.requires_grad_(True)
    observed = inv.observed
    (0.5 * ((FDData.apply(m_free, inv.wavefields) - observed) ** 2).sum()).backward()
    x, y = grid["x"], grid["y"]
    _, expected = misfit_and_gradient(
        inv.wavefields.slowness(m_free.detach().numpy()).reshape(inv.wavefields.shape),
        x,
        y,
        spec.pde.omega,
        source_densities(x, y, inv.data.sources),
        inv.data.receivers,
        inv.data.values,
        PML(spec.boundary.width, spec.boundary.strength),
    )
    assert np.allclose(m_free.grad.numpy(), expected.ravel()[inv.wavefields.free], rtol=1e-10)


def test_data_term_is_sources_times_the_squared_relative_misfit():
    spec = reduced_spec()
    compiled = spec.family.compile(spec, make_generator(0))
    model = build_model_for(spec, compiled).double()
    term = next(t for t in compiled.terms if t.name == "data")
    loss = float(term.loss(model, term.sample(0)).detach())
    solution = compiled.evaluate(model)
    misfit = solution.attrs["data_misfit"]
    assert loss == pytest.approx(len(spec.pde.sources) * misfit**2, rel=1e-10)
    data = receiver_data(spec)
    grid = eval_grid(spec)
    assert misfit == pytest.approx(
        fd_data_misfit(spec, data, grid, solution.fields["velocity"]), rel=1e-10
    )
    assert np.allclose(solution.fields["velocity"], 1.0, atol=1e-2)  # the initial model


def test_reduced_inversion_recovers_the_inclusions_end_to_end(tmp_path):
    spec = reduced_spec()
    result = solve(spec, tmp_path, progress=False)
    info = json.loads((tmp_path / "run.json").read_text())
    # each L-BFGS step costs at least one line-search evaluation; the step's own start is
    # the last accepted point, reused (without reuse: about two evaluations per step)
    assert result.train.steps <= info["loss_evaluations"] < 1.3 * result.train.steps + 5
    metrics = compare_run(tmp_path, plots=False)
    vel = read_grid_data(tmp_path / "velocity.h5")
    true = vel.fields["true_velocity"]
    mask = region_mask(vel.grid, AXES, {a: tuple(v) for a, v in metrics["region"].items()})
    start = np.linalg.norm((1.0 - true)[mask]) / np.linalg.norm(true[mask])
    assert metrics["data_misfit"] < 0.01  # the start model misfits by about 0.2
    assert metrics["data_misfit"] == pytest.approx(metrics["data_misfit_fd"], rel=1e-9)
    assert metrics["velocity_rel_l2"] < 0.65 * start
    assert vel.attrs["method"] == "reduced"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"model": {"width": 64}}, "model"),
        ({"pde.formulation": "scattered"}, "pde.formulation"),
        (
            {"training.output_layer": "least_squares", "training.phases": [{"steps": 5}]},
            "training.output_layer",
        ),
        ({"training.pretrain_steps": 10}, "training.pretrain_steps"),
        ({"sampling": {"points": {"residual": 100}}}, "sampling.points.residual"),
        ({"loss": {"weights": {"residual": 1.0}}}, "loss.weights.residual"),
        ({"evaluation": {"grid": {"x": [-1.0, 0.0, 0.5, 1.0], "y": 81}}}, "evaluation.grid.x"),
        ({"evaluation": {"grid": {"x": 81, "y": 41}}}, "evaluation.grid.y"),
        ({"training.least_squares": {"ridge": 1e-6}}, "training.least_squares"),
        (
            {"loss": {"weights": {"data": 1.0}}, "training.phases": [{"weights": {"tv": 1.0}}]},
            "training.phases.0.weights.tv",
        ),
    ],
)
def test_keys_a_reduced_inversion_cannot_honour_are_refused(change, key):
    with pytest.raises(SpecError) as err:
        reduced_spec(**change)
    assert err.value.path == key and "\n" not in str(err.value)


def test_tune_refuses_a_reduced_inversion():
    spec = reduced_spec()
    with pytest.raises(UserError, match="no wavefield network"):
        spec.family.fresh_target(spec)


def test_a_non_finite_velocity_gives_nan_data_not_a_solver_crash():
    inv = ReducedInversion(reduced_spec())
    m = torch.ones(len(inv.wavefields.free), dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        m[3] = float("nan")
    d = FDData.apply(m, inv.wavefields)
    assert d.shape == inv.observed.shape and torch.isnan(d).all()
    d.sum().backward()
    assert torch.isnan(m.grad).all()
