"""Helmholtz velocity inversion: data loading, the bounded velocity, a coarse end-to-end run."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from pinnsiren.engine.sampling import make_generator
from pinnsiren.errors import UserError
from pinnsiren.families.base import eval_grid
from pinnsiren.families.helmholtz.fwi import fd_data_misfit
from pinnsiren.families.helmholtz.incident import incident_field
from pinnsiren.families.helmholtz.inversion import true_velocity_on
from pinnsiren.families.helmholtz.receivers import (
    ReceiverData,
    read_data_file,
    receiver_data,
    write_data_file,
)
from pinnsiren.output.gridfile import read_grid_data
from pinnsiren.problem import load_problem, parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import build_model_for, least_squares_hook, solve
from tests.conftest import CYLINDER, PROBLEMS

COARSE = [
    "evaluation.grid.x=48",
    "evaluation.grid.y=48",
    "pde.omega=6",
    "training.pretrain_steps=30",
    "training.phases.0.steps=60",
    "training.phases.0.lr=3e-4",
    "reference.iterations=5",
    "model.width=32",
    "model.depth=2",
    "sampling.points.residual=256",
    "sampling.points.source=128",
    "output.plots=false",
]


def test_bounded_velocity_within_bounds_and_background_in_pml():
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", COARSE)
    compiled = spec.family.compile(spec, make_generator(0))
    velocity = build_model_for(spec, compiled).velocity.double()
    with torch.no_grad():
        velocity.net.last.bias.fill_(50.0)  # saturate high
        pts = torch.tensor([[0.0, 0.0], [0.9, 0.0], [0.0, -0.7]], dtype=torch.float64)
        c = velocity(pts)[:, 0]
    assert c[0] == pytest.approx(2.0) and c[0] <= 2.0
    assert c[1] == 1.0 and c[2] == 1.0  # inside the PML: the background


def test_coarse_synthetic_inversion_end_to_end(tmp_path):
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", COARSE)
    solve(spec, tmp_path, progress=False)
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    first = np.mean([float(r["data"]) for r in rows[:5]])
    last = np.mean([float(r["data"]) for r in rows[-5:]])
    assert last < first  # the receivers pull the wavefields towards the data
    metrics = compare_run(tmp_path, plots=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["problem"] == spec.name
    for key in (
        "velocity_rel_l2",
        "fwi_velocity_rel_l2",
        "data_misfit",
        "fwi_data_misfit",
        "data_misfit_fd",
        "true_velocity_data_misfit_fd",
    ):
        assert np.isfinite(metrics[key]), key
    vel = read_grid_data(tmp_path / "velocity.h5")
    c = vel.fields["velocity"]
    assert c.min() >= 0.6 - 1e-9 and c.max() <= 2.0 + 1e-9
    assert vel.fields["true_velocity"].max() > 1.3  # the fast inclusion is there
    assert metrics["fwi_data_misfit"] < 1.0


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_fd_data_misfit_of_the_true_model_is_the_noise(noise):
    """Synthetic data made on the same grid (refine 1): the FD misfit of the true velocity is
    the added relative noise (0 without), and the starting model misfits far more."""
    spec = load_problem(
        PROBLEMS / "helmholtz_inverse_synthetic.yaml",
        [*COARSE, "reference.refine=1", f"pde.data.synthesize.noise={noise}"],
    )
    grid, data = eval_grid(spec), receiver_data(spec)
    true = true_velocity_on(spec, grid)
    assert fd_data_misfit(spec, data, grid, true) == pytest.approx(noise, abs=0.15 * noise + 1e-10)
    assert fd_data_misfit(spec, data, grid, np.ones_like(true)) > 0.03  # 0.04 at omega = 6


def test_receiver_h5_round_trip(tmp_path):
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", COARSE)
    data = receiver_data(spec)
    assert data.values.shape == (len(spec.pde.receivers), len(spec.pde.sources))
    write_data_file(tmp_path / "d.h5", data, omega=spec.pde.omega)
    src, rec, val = read_data_file(tmp_path / "d.h5")
    np.testing.assert_array_equal(rec, data.receivers)
    np.testing.assert_array_equal(val, data.values)
    assert src.shape == (len(spec.pde.sources), 2)
    assert isinstance(data, ReceiverData)


def test_noise_is_relative_and_seeded():
    clean = load_problem(
        PROBLEMS / "helmholtz_inverse_synthetic.yaml", COARSE + ["pde.data.synthesize.noise=0.0"]
    )
    noisy = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", COARSE)
    a, b = receiver_data(clean).values, receiver_data(noisy).values
    rel = np.linalg.norm(b - a) / np.linalg.norm(a)
    assert 0.005 < rel < 0.02  # noise: 0.01 of the rms
    np.testing.assert_array_equal(b, receiver_data(noisy).values)


def test_cylinder_data_loads_with_declared_positions():
    spec = load_problem(PROBLEMS / "helmholtz_inverse_cylinder.yaml")
    data = receiver_data(spec)
    assert data.values.shape == (30, 5) and len(data.sources) == 5
    assert data.sources[0].amplitude == complex(1, 1)
    raw = yaml.safe_load((PROBLEMS / "helmholtz_inverse_cylinder.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["pde"]["data"]["file"] = str(CYLINDER)
    raw["pde"]["sources"][0]["position"] = [0.1, -0.3]
    with pytest.raises(UserError, match="do not match"):
        receiver_data(parse_problem(raw))
    raw["pde"].pop("sources")  # sources may come from the file
    data = receiver_data(parse_problem(raw))
    assert len(data.sources) == 5 and data.sources[0].sigma == 0.01


SCATTERED = [*COARSE, "pde.formulation=scattered"]


def test_scattered_formulation_starts_from_the_incident_field():
    """At c = c₀ the scattered field is 0: residual ≈ 0, fields = u₀, data misfit = that of u₀."""
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", SCATTERED)
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    net = build_model_for(spec, compiled).double()
    terms = {t.name: t for t in compiled.terms}
    # no near-source term: the source f has been subtracted with u₀
    assert set(terms) == {"residual", "interior", "data"}
    assert terms["interior"].follows == "residual"  # its weight is residual's, per phase too
    data = receiver_data(spec)
    u0 = incident_field(data.receivers[:, 0], data.receivers[:, 1], data.sources, 6.0, 1.0).T
    with torch.no_grad():
        res = terms["residual"].loss(net, terms["residual"].sample(0))
        mis = terms["data"].loss(net, terms["data"].sample(0))
    rms2 = np.mean(np.abs(data.values) ** 2)
    n_src = data.values.shape[1]  # the loss sums the 2·S channels, averages the receivers
    expected = np.mean(np.abs(data.values - u0) ** 2) * n_src / rms2
    assert float(mis) == pytest.approx(expected, rel=0.05)
    assert float(res) < 1e-2 * 36**2 * np.mean(np.abs(u0) ** 2)  # ω²|u₀|² sets the scale
    out = compiled.evaluate(net)
    assert out.attrs["data_misfit"] == pytest.approx(
        np.linalg.norm(data.values - u0) / np.linalg.norm(data.values), rel=0.05
    )


def test_scattered_residual_is_the_total_field_residual():
    """With v = 0 the residual must be that of the total field u₀ in the medium c:
    (Δ + ω²/c²) u₀ − f = (ω²/c² − ω²/c₀²) u₀, zero where c = c₀ and in the PML."""
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", SCATTERED)
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    term = next(t for t in compiled.terms if t.name == "residual")
    batch = term.sample(0)
    x = batch["x"].numpy()
    c = 1 + 0.5 * np.exp(-(x[:, 0] ** 2 + x[:, 1] ** 2) / 0.02)
    inside = (np.abs(x) < 0.5).all(axis=1)
    c = np.where(inside, c, 1.0)  # the velocity network holds c₀ in the PML

    class Fixed(torch.nn.Module):
        def forward(self, pts):
            return torch.as_tensor(c)[:, None]

    model = build_model_for(spec, compiled).double()
    model.velocity = Fixed()
    with torch.no_grad():
        r = term.residual(model, batch).numpy()
    r = r[:, 0::2] + 1j * r[:, 1::2]
    data = receiver_data(spec)
    u0 = incident_field(x[:, 0], x[:, 1], data.sources, 6.0, 1.0).T
    expected = (36.0 / c**2 - 36.0)[:, None] * u0
    np.testing.assert_allclose(r, expected, atol=1e-12)
    assert np.abs(expected[inside]).max() > 1.0 and np.abs(r[~inside]).max() == 0.0


@pytest.mark.parametrize("grid", [None, "[9, 9]"])
@pytest.mark.parametrize("tv_of", ["velocity", "slowness"])
def test_tv_term_is_the_gradient_norm_of_the_chosen_quantity(tv_of, grid):
    """The tv residual is √(|∇q|² + 1e-8) with q = c or q = 1/c², checked by central
    differences of the velocity model (the SIREN alone, or the SIREN plus a bilinear grid)."""
    overrides = [*SCATTERED, "loss.weights.tv=0.01", f"pde.velocity.tv_of={tv_of}"]
    if grid:
        overrides.append(f"pde.velocity.model.grid={grid}")
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", overrides)
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    term = next(t for t in compiled.terms if t.name == "tv")
    model = build_model_for(spec, compiled).double()
    with torch.no_grad():  # a velocity that varies by O(1) over the region
        model.velocity.net.last.weight.normal_(0.0, 1.0)
        if grid:
            model.velocity.grid.values.normal_(0.0, 1.0)
    x = term.sample(0)["x"][:64]
    with torch.no_grad():
        r = term.residual(model, {"x": x})

        def q(pts):
            c = model.velocity(pts)[:, 0]
            return c if tv_of == "velocity" else 1 / c**2

        h = 1e-5
        grad = [(q(x + h * e) - q(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)]
    expected = torch.sqrt(grad[0] ** 2 + grad[1] ** 2 + 1e-8)
    assert float(expected.max()) > 0.5  # the check is not trivially about a constant field
    torch.testing.assert_close(r, expected, rtol=1e-5, atol=1e-7)


def _projected_problem(formulation: str):
    overrides = [
        *COARSE,
        f"pde.formulation={formulation}",
        "training.output_layer=least_squares",
        "loss.weights.data=30",
    ]
    spec = load_problem(PROBLEMS / "helmholtz_inverse_synthetic.yaml", overrides)
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    model = build_model_for(spec, compiled).double()
    solver = least_squares_hook(spec, compiled, progress=False)
    solver.freeze(model)
    with torch.no_grad():  # a velocity that differs from the background: a real scattering source
        model.velocity.net.last.weight.normal_(0.0, 0.5)
        model.wave.last.weight.normal_(0.0, 0.1)
    batches = {t.name: t.sample(0) for t in compiled.terms}
    weights = {t.name: t.weight for t in compiled.terms}
    return compiled, model, solver, batches, weights


@pytest.mark.parametrize("formulation", ["scattered", "total"])
def test_least_squares_output_layer_solves_the_pde_terms(formulation):
    """training.output_layer: least_squares sets the wavefield's output layer to the
    minimiser of the step's weighted PDE terms (not of the data term): the gradient of those
    terms with respect to the layer vanishes there, random perturbations only raise them,
    the projected residuals are those of the plain network, and the layer is not trained."""
    compiled, model, solver, batches, weights = _projected_problem(formulation)
    layer = model.wave.last
    assert not layer.weight.requires_grad
    pde = [t for t in compiled.terms if t.name not in ("data", "tv")]

    def pde_loss(overrides=None) -> torch.Tensor:  # no overrides: the plain network path
        return sum(
            weights[t.name]
            * (
                t.loss(model, batches[t.name])
                if overrides is None
                else t.loss_of(overrides[t.name], batches[t.name])
            )
            for t in pde
        )

    layer.requires_grad_(True)
    before = pde_loss()
    grad_before = torch.autograd.grad(before, [layer.weight, layer.bias])
    projected = pde_loss(solver.before_step(model, batches, weights)).detach()
    after = pde_loss()
    assert float(projected) == pytest.approx(float(after.detach()), rel=1e-9)
    assert float(after.detach()) < 0.5 * float(before.detach())
    grad_after = torch.autograd.grad(after, [layer.weight, layer.bias])
    norm = lambda gs: float(torch.sqrt(sum((g**2).sum() for g in gs)))  # noqa: E731
    assert norm(grad_after) < 1e-6 * norm(grad_before)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        optimum = layer.weight.clone()
        for _ in range(3):
            layer.weight.copy_(optimum + 1e-3 * torch.randn(optimum.shape, generator=gen))
            assert float(pde_loss()) > float(after.detach())


def test_least_squares_data_gradient_reaches_the_velocity_through_the_solve():
    """The data term depends on the velocity only through the projected PDE solution; its
    autograd derivative with respect to a velocity parameter matches central differences
    of (solve, then misfit)."""
    compiled, model, solver, batches, weights = _projected_problem("scattered")
    data = next(t for t in compiled.terms if t.name == "data")
    bias = model.velocity.net.last.bias

    def misfit() -> torch.Tensor:
        overrides = solver.before_step(model, batches, weights)
        return data.loss_of(overrides["data"], batches["data"])

    (grad,) = torch.autograd.grad(misfit(), [bias])
    h = 1e-5
    with torch.no_grad():
        bias += h
        up = float(misfit())
        bias -= 2 * h
        down = float(misfit())
        bias += h
    assert abs(float(grad)) > 1e-3
    assert float(grad) == pytest.approx((up - down) / (2 * h), rel=1e-4)


def test_least_squares_output_layer_end_to_end(tmp_path):
    """A coarse run with the projected output layer (pretraining included) trains, fits the
    receivers better than the starting model, and moves the velocity."""
    spec = load_problem(
        PROBLEMS / "helmholtz_inverse_synthetic.yaml",
        [*COARSE, "training.output_layer=least_squares"],
    )
    solve(spec, tmp_path, progress=False)
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    first = np.mean([float(r["data"]) for r in rows[:5]])
    last = np.mean([float(r["data"]) for r in rows[-5:]])
    assert np.isfinite(last) and last < first
    c = read_grid_data(tmp_path / "velocity.h5").fields["velocity"]
    assert c.max() - c.min() > 1e-3


def test_least_squares_output_layer_with_gradient_balancing(tmp_path):
    """The solve runs before the balancing factors are measured, so both see this step's
    graph (a stale projection would fail on backward)."""
    spec = load_problem(
        PROBLEMS / "helmholtz_inverse_synthetic.yaml",
        [
            *COARSE,
            "training.output_layer=least_squares",
            "training.pretrain_steps=0",
            "training.phases.0.steps=4",
            "loss.balancing=grad_norm",
            "loss.balancing_every=2",
        ],
    )
    result = solve(spec, tmp_path, progress=False)
    assert result.train.steps == 4
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(np.isfinite(float(r["total"])) for r in rows)
    assert any(float(r["balance_data"]) != 1.0 for r in rows)
