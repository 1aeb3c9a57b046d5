"""PDE families: residual operators against finite differences, samplers, curriculum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinnsiren.engine import nets
from pinnsiren.engine.jets import Jet
from pinnsiren.engine.sampling import Curriculum, make_generator
from pinnsiren.families.helmholtz import is_inversion
from pinnsiren.families.helmholtz.operator import coefficient_batch, helmholtz_operator, pairs
from pinnsiren.families.wave import causal_reduce
from pinnsiren.problem import SpecError, load_problem, parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import build_model_for, solve
from pinnsiren.schema.geometry import Box
from reference_solvers.helmholtz import PML
from reference_solvers.helmholtz import helmholtz_operator as fd_operator
from tests.conftest import PROBLEMS


def test_curriculum_window_grows_linearly():
    cur = Curriculum(t0=0.0, t_end=0.4, ramp_steps=100, initial_fraction=0.25)
    assert cur.window(0) == (0.0, 0.0)
    assert cur.window(50) == pytest.approx((0.0, 0.2))
    assert cur.window(100) == cur.window(1000) == pytest.approx((0.0, 0.4))
    t = cur.times(400, 50, make_generator(0))[:, 0]
    assert (t == 0).sum() >= 100  # the initial fraction sits on t0
    assert float(t.max()) <= 0.2 + 1e-12
    off = Curriculum(t0=0.0, t_end=0.4, ramp_steps=100, enabled=False)
    assert off.window(0) == (0.0, 0.4)


def test_boundary_points_lie_on_faces_with_outward_normals():
    box = Box(("x", "y"), (0.0, -1.0), (2.0, 1.0))
    pts, normals, face = box.on_faces(2000, make_generator(1))
    for k, name in enumerate(box.faces):
        sel = face == k
        axis = "xy".index(name[0])
        bound = box.upper[axis] if name[1] == "+" else box.lower[axis]
        assert torch.all(pts[sel, axis] == bound)
        assert torch.all(normals[sel, axis] == (1.0 if name[1] == "+" else -1.0))
    # faces drawn in proportion to their length: x-faces have length 2, y-faces length 2
    counts = torch.bincount(face, minlength=4).double() / 2000
    assert torch.allclose(counts, torch.full((4,), 0.25, dtype=torch.float64), atol=0.04)


def test_causal_weights_silence_late_chunks_until_early_ones_are_solved():
    reduce = causal_reduce(0.0, 1.0, chunks=4, epsilon=1.0)
    t = torch.tensor([[0.1], [0.3], [0.6], [0.9]], dtype=torch.float64)
    batch = {"x": torch.cat([torch.zeros_like(t), t], dim=1)}
    big_early = torch.tensor([10.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    # chunk 3's loss (9) is weighted by exp(-(100 + 0 + 0)) ~ 0
    assert float(reduce(big_early, batch)) == pytest.approx(100 / 4, rel=1e-9)
    solved_early = torch.tensor([0.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert float(reduce(solved_early, batch)) == pytest.approx(9 / 4, rel=1e-9)


def test_helmholtz_pinn_operator_matches_fd_operator_with_pml():
    """The PINN residual and the FD reference discretise the same PML equation."""
    spec = load_problem(PROBLEMS / "helmholtz_uniform.yaml")
    omega = spec.pde.omega
    n = 401
    x = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    a, b = 3.0, 2.0  # smooth complex test function u = exp(i(a x + b y)) * bump
    bump = np.exp(-((X**2 + Y**2) / 0.3))
    u = np.exp(1j * (a * X + b * Y)) * bump
    ux = u * (1j * a - 2 * X / 0.3)
    uy = u * (1j * b - 2 * Y / 0.3)
    uxx = ux * (1j * a - 2 * X / 0.3) - u * 2 / 0.3
    uyy = uy * (1j * b - 2 * Y / 0.3) - u * 2 / 0.3
    velocity = 1.0 + 0.5 * np.exp(-((X - 0.2) ** 2 + Y**2) / 0.05)
    pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))
    batch = coefficient_batch(pts, spec, omega)
    c = batch["C"][:, 0].numpy() + 1j * batch["C"][:, 1].numpy()
    batch["Ck2"] = pairs(c * omega**2 / velocity.ravel() ** 2)
    value, gx, gy, sxx, syy = (pairs(v.ravel()) for v in (u, ux, uy, uxx, uyy))
    jet = Jet(value=value, gradient={0: gx, 1: gy}, second={0: sxx, 1: syy})
    pinn = helmholtz_operator(jet, batch).numpy()
    pinn = (pinn[:, 0] + 1j * pinn[:, 1]).reshape(n, n)
    fd = (fd_operator(x, x, omega, velocity, PML(0.5, 5.0)) @ u.ravel()).reshape(n, n)
    inner = (slice(2, -2), slice(2, -2))
    err = np.abs(pinn[inner] - fd[inner]).max() / np.abs(pinn[inner]).max()
    assert err < 2e-3


def test_every_shipped_forward_problem_compiles_and_its_terms_evaluate():
    for path in sorted(PROBLEMS.glob("*.yaml")):
        spec = load_problem(path)
        if spec.kind == "fit" or (spec.kind == "helmholtz" and is_inversion(spec)):
            continue
        small = ["sampling.points.residual=64", "model.width=16"]
        if spec.model.inclusion is not None:
            small.append("model.inclusion.width=8")
        spec = load_problem(path, small)
        compiled = spec.family.compile(spec, make_generator(0))
        model = build_model_for(spec, compiled).double()
        compiled.to(torch.device("cpu"), torch.float64)
        for term in compiled.terms:
            loss = term.loss(model, term.sample(0))
            assert loss.ndim == 0 and torch.isfinite(loss), (path.name, term.name)


def test_poisson_neumann_face_uses_outward_flux():
    spec = parse_problem(
        {
            "name": "p",
            "pde": {"kind": "poisson", "rhs": 0.0},
            "domain": {"x": [0, 1]},
            "boundary": {"kind": "dirichlet", "faces": {"x+": {"kind": "neumann", "value": 2.0}}},
            "sampling": {"points": {"boundary": 64}},
        }
    )
    compiled = spec.family.compile(spec, make_generator(0)).to(torch.device("cpu"), torch.float64)
    term = next(t for t in compiled.terms if t.name == "boundary")

    class Linear(torch.nn.Module):  # u = 2x: u(0) = 0 and du/dn(1) = 2
        def forward(self, x):
            return 2 * x

    batch = term.sample(0)
    assert batch["neumann"].any() and (~batch["neumann"]).any()
    on_right = batch["x"][:, 0] == 1.0
    assert torch.equal(batch["neumann"], on_right)
    assert torch.all(batch["g"][on_right] == 2.0) and torch.all(batch["g"][~on_right] == 0.0)
    # the exact solution u = 2x has zero boundary residual
    u = Linear()(batch["x"])[:, 0]
    r = torch.where(batch["neumann"], 2.0 * batch["n"][:, 0], u) - batch["g"]
    assert torch.allclose(r, torch.zeros_like(r))
    model = nets.Siren(1, 1, width=4, depth=1).double()
    assert torch.isfinite(term.loss(model, batch))


SCATTERED_SQUARE = [
    "pde.formulation=scattered",
    "pde.background=1.0",
    "pde.omega=4.0",
    "pde.sources.0.sigma=0.05",
    "model={width: 48, depth: 2, omega_0: 6.0}",
    "training={dtype: float64, phases: [{steps: 900, lr: 2.0e-3, schedule: cosine}]}",
    "sampling.points={residual: 1024}",
    "evaluation.grid.x=41",
    "evaluation.grid.y=41",
    "reference.refine=4",
    "output.plots=false",
]


def test_scattered_forward_helmholtz_converges_to_the_fd_total_field(tmp_path):
    """helmholtz_square at ω = 4 in the scattered formulation: u₀ + v against the FD solve."""
    spec = load_problem(PROBLEMS / "helmholtz_square.yaml", SCATTERED_SQUARE)
    compiled = spec.family.compile(spec, make_generator(0))
    assert [t.name for t in compiled.terms] == ["residual"]
    batch = compiled.terms[0].sample(0)
    in_pml = (batch["x"].abs() > 0.5).any(dim=1)
    assert float(batch["g"][in_pml].abs().max()) == 0.0  # c = c₀ there: no scattering source
    assert float(batch["g"][~in_pml].abs().max()) > 1.0
    solve(spec, tmp_path, progress=False)
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["rel_l2"] < 0.05, metrics["rel_l2"]


@pytest.mark.parametrize(
    "overrides, path, words",
    [
        (
            ["pde.formulation=scattered", "pde.background=null"],
            "pde.background",
            "needs the background",
        ),
        (["pde.formulation=total", "pde.background=1.0"], "pde.background", "only used with"),
        (
            ["pde.formulation=scattered", "pde.background=2.0"],
            "pde.velocity",
            "inside the PML",
        ),
    ],
)
def test_scattered_forward_rules(overrides, path, words):
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "helmholtz_square.yaml", overrides)
    assert info.value.path == path and words in str(info.value)
