"""Signal fitting (``pde.kind: fit``): compile, a tiny training run, metrics and their gauges,
masks, priors and the user-error contract."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.nets import build_model
from pinnsiren.engine.sampling import make_generator
from pinnsiren.families.fit.compile import (
    gauge_of,
    hessian_autograd,
    load_fit_signal,
    observed_mask,
    stencil_mask,
)
from pinnsiren.families.fit.metrics import apply_gauge, fit_metrics
from pinnsiren.families.fit.schema import MaskSpec
from pinnsiren.problem import load_problem
from pinnsiren.run.cli import main
from tests.conftest import PROBLEMS

FIT_FILES = (
    "fit_image.yaml",
    "poisson_image_gradient.yaml",
    "poisson_image_laplacian.yaml",
    "inpaint_image.yaml",
)
SMALL = ["pde.signal.size=32", "model.width=32", "model.depth=2"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks: one thread is faster, and immune to a busy shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _compile(name: str, *overrides: str):
    spec = load_problem(PROBLEMS / name, [*SMALL, *overrides])
    return spec.family.compile(spec, make_generator(0))


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------ compile
@pytest.mark.parametrize("name", FIT_FILES)
def test_problem_files_compile(name):
    cp = _compile(name)
    sup = cp.spec.pde.supervision
    assert cp.in_axes == ("x", "y") and cp.out_features == 1
    assert cp.terms[0].name == sup
    # the evaluation grid is the signal grid, whatever the YAML said
    assert cp.spec.evaluation.grid == {"x": 32, "y": 32}
    assert (
        gauge_of(cp.spec)
        == {"values": "none", "gradient": "constant", "laplacian": "harmonic2"}[sup]
    )
    batch = cp.terms[0].sample(0)
    width = {"values": 1, "gradient": 2, "laplacian": 1}[sup]
    assert batch["x"].shape[1] == 2 and batch["s"].shape[1] == width
    model = build_model("siren", 2, 1, width=16, depth=1)
    for term in cp.terms:
        loss = term.loss(model, term.sample(0))
        assert loss.ndim == 0 and torch.isfinite(loss)
    if name == "inpaint_image.yaml":
        assert [t.name for t in cp.terms] == ["values", "tv"]


def test_signal_grid_follows_domain_and_orientation():
    cp = _compile("fit_image.yaml", "domain.x=[0.0, 3.0]", "domain.y=[-2.0, 0.0]")
    sig = load_fit_signal(cp.spec)
    np.testing.assert_allclose(sig.x, np.linspace(0, 3, 32))
    np.testing.assert_allclose(sig.y, np.linspace(-2, 0, 32))
    assert sig.spacing == pytest.approx((3 / 31, 2 / 31))
    # Sobel target in physical units: a linear ramp s = a x + b y has gradient (a, b)
    from pinnsiren.families.fit.signals import sobel_gradient

    ramp = 0.5 * sig.x[:, None] - 2.0 * sig.y[None, :]
    gx, gy = sobel_gradient(ramp, sig.spacing)
    np.testing.assert_allclose(gx, 0.5, atol=1e-9)
    np.testing.assert_allclose(gy, -2.0, atol=1e-9)
    batch = cp.terms[0].sample(0)  # full batch: the values rows are the pixels in C order
    np.testing.assert_allclose(batch["x"].numpy(), sig.points())
    np.testing.assert_allclose(batch["s"][:, 0].numpy(), sig.values.ravel())


def test_mixed_supervision_and_prior_weights():
    cp = _compile(
        "poisson_image_gradient.yaml",
        "loss.weights.values=0.1",
        "pde.priors.hessian=1.0e-3",
        "loss.weights.tv=2.0e-3",
    )
    names = {t.name: t.weight for t in cp.terms}
    assert names == {"values": 0.1, "gradient": 1.0, "tv": 2.0e-3, "hessian": 1.0e-3}
    assert gauge_of(cp.spec) == "none"  # the values term pins the constant


# ------------------------------------------------------------------------------------ training
def test_tiny_fit_lowers_loss_and_reaches_psnr(tmp_path):
    from pinnsiren.run.compare import compare_run
    from pinnsiren.run.solve import solve

    spec = load_problem(
        PROBLEMS / "fit_image.yaml",
        [
            "pde.signal.size=32",
            "model.width=64",
            "model.depth=2",
            "model.omega_0=20.0",
            "training.phases.0.steps=100",
            "training.phases.0.lr=1.0e-3",
        ],
    )
    result = solve(spec, tmp_path / "run", progress=False)
    losses = [row["values"] for row in result.train.history]
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
    metrics = compare_run(tmp_path / "run")
    assert metrics["gauge"] == "none"
    assert metrics["psnr"] > 22.0
    assert metrics["psnr"] == metrics["psnr_raw"]
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["psnr"] == pytest.approx(metrics["psnr"])
    assert {"psnr_gradient", "psnr_laplacian", "psnr_gradient_network"} <= set(on_disk)
    assert (tmp_path / "run" / "comparison.png").stat().st_size > 0
    # a fit has no FD reference
    code, _, err = run_cli(["compare", str(tmp_path / "run"), "--reference", "x.h5"])
    assert code == 2 and "no finite-difference reference" in err


# ------------------------------------------------------------------------------------ metrics
def _image(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.linspace(-1, 1, n), np.linspace(-0.5, 1.5, n)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    s = np.sin(5 * xx) * np.cos(3 * yy) + 0.3 * np.tanh(8 * (xx - yy))
    return x, y, s


def test_gradient_gauge_constant_shift_scores_like_exact():
    x, y, s = _image()
    noisy = s + 0.01 * np.random.default_rng(0).standard_normal(s.shape)
    base = fit_metrics(noisy, s, x, y, gauge="constant")
    shifted = fit_metrics(noisy + 0.7, s, x, y, gauge="constant")
    assert shifted["psnr"] == pytest.approx(base["psnr"], abs=1e-9)
    assert shifted["psnr_gradient"] == pytest.approx(base["psnr_gradient"], abs=1e-9)
    assert shifted["psnr_raw"] < base["psnr"] - 20
    assert shifted["gauge_coefficients"][0] == pytest.approx(-0.7, abs=1e-2)
    # exact up to a constant: perfect score
    assert fit_metrics(s - 3.0, s, x, y, gauge="constant")["psnr"] > 200
    # no gauge for values supervision: the shift costs
    assert fit_metrics(noisy + 0.7, s, x, y, gauge="none")["psnr"] < base["psnr"] - 20


def test_laplacian_gauge_removes_degree2_harmonics():
    x, y, s = _image()
    xx, yy = np.meshgrid(x, y, indexing="ij")
    harmonic = 0.4 - 0.3 * xx + 0.2 * yy + 0.5 * (xx**2 - yy**2) - 0.25 * xx * yy
    noisy = s + 0.01 * np.random.default_rng(1).standard_normal(s.shape)
    base = fit_metrics(noisy, s, x, y, gauge="harmonic2")
    off = fit_metrics(noisy + harmonic, s, x, y, gauge="harmonic2")
    assert off["psnr"] == pytest.approx(base["psnr"], abs=1e-8)
    # the 5-point Laplacian annihilates the gauge: derivative PSNR unchanged without fixing
    assert off["psnr_laplacian"] == pytest.approx(base["psnr_laplacian"], abs=1e-6)
    fixed, coef = apply_gauge(s + harmonic, s, x, y, "harmonic2")
    np.testing.assert_allclose(fixed, s, atol=1e-10)
    assert len(coef) == 5


def test_inpainting_metrics_split_observed_and_heldout():
    x, y, s = _image(20)
    mask = np.zeros(s.shape, dtype=bool)
    mask[:, :10] = True
    u = s.copy()
    u[~mask] += 0.1
    m = fit_metrics(u, s, x, y, gauge="none", mask=mask)
    assert m["psnr_observed"] == float("inf")
    assert m["psnr_heldout"] == pytest.approx(10 * np.log10(m["data_range"] ** 2 / 0.01))
    assert m["observed_fraction"] == 0.5


# ------------------------------------------------------------------------------------ masks
def _pixels(sig, pts: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices (i_x, i_y) of batch points (float32 after Term.sample)."""
    p = pts.double().numpy()
    ix = np.rint((p[:, 0] - sig.x[0]) / sig.spacing[0]).astype(int)
    iy = np.rint((p[:, 1] - sig.y[0]) / sig.spacing[1]).astype(int)
    np.testing.assert_allclose(sig.x[ix], p[:, 0], atol=1e-6)
    np.testing.assert_allclose(sig.y[iy], p[:, 1], atol=1e-6)
    return ix, iy


def test_values_term_only_sees_observed_pixels():
    cp = _compile("inpaint_image.yaml", "sampling.points.values=100")
    sig = load_fit_signal(cp.spec)
    assert sig.mask is not None and sig.mask.sum() == round(0.2 * 32 * 32)
    values = cp.terms[0]
    assert values.name == "values"
    seen: set[tuple[int, int]] = set()
    for step in range(30):
        batch = values.sample(step)
        assert len(batch["x"]) == 100
        ix, iy = _pixels(sig, batch["x"])
        assert sig.mask[ix, iy].all()  # only observed pixels
        np.testing.assert_allclose(batch["s"][:, 0].numpy(), sig.values[ix, iy], atol=1e-6)
        seen |= set(zip(ix.tolist(), iy.tolist()))
    assert len(seen) > 150  # random batches, not one fixed subset
    full = _compile("inpaint_image.yaml").terms[0].sample(0)  # default: all observed pixels
    assert len(full["x"]) == sig.mask.sum()


def test_box_hole_and_derivative_stencils():
    x = y = np.linspace(-1, 1, 11)
    spec = MaskSpec(box=[(-0.3, 0.3), (-0.3, 0.3)])
    m = observed_mask(spec, x, y)
    assert m is not None and (~m).sum() == 9  # centres -0.2, 0, 0.2 on each axis
    assert not m[5, 5] and m[3, 5]
    keep = observed_mask(MaskSpec(box=[(-0.3, 0.3), (-0.3, 0.3)], hole=False), x, y)
    assert keep is not None and keep.sum() == 9
    st = stencil_mask(m)
    assert st is not None and not st[0].any() and not st[:, -1].any()  # image edge excluded
    assert not st[3, 5] and st[2, 5]  # next to the hole excluded, two away kept
    cp = _compile(
        "poisson_image_gradient.yaml",
        "pde.derivatives=sobel",  # stencil targets: masks need them
        "pde.mask.box=[[-0.5, 0.5], [-0.5, 0.5]]",
        "sampling.points.gradient=100000",
    )
    sig = load_fit_signal(cp.spec)
    pts = cp.terms[0].sample(0)["x"]
    allowed = stencil_mask(sig.mask)
    assert len(pts) == allowed.sum()
    ix, iy = _pixels(sig, pts)
    assert allowed[ix, iy].all()


# ------------------------------------------------------------------------------------ priors
def test_hessian_autograd_matches_jet_and_prior_terms_are_differentiable():
    torch.manual_seed(0)
    model = build_model("siren", 2, 1, width=16, depth=1, omega_0=5.0).double()
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    uxx, uyy, uxy = hessian_autograd(model, x)
    j = jet(model, x, DerivativeRequest(second=(0, 1)))
    torch.testing.assert_close(uxx, j.second[0][:, 0])
    torch.testing.assert_close(uyy, j.second[1][:, 0])
    h = 1e-4  # mixed derivative by central differences of the network
    pp, pm, mp, mm = (
        x + torch.tensor([a * h, b * h], dtype=x.dtype)
        for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))
    )
    with torch.no_grad():
        fd = (model(pp) - model(pm) - model(mp) + model(mm))[:, 0] / (4 * h * h)
    torch.testing.assert_close(uxy, fd, rtol=1e-4, atol=1e-4)
    cp = _compile("inpaint_image.yaml", "pde.priors.hessian=1.0")
    small = build_model("siren", 2, 1, width=8, depth=1)
    for term in cp.terms[1:]:
        loss = term.loss(small, term.sample(0))
        loss.backward()
        assert loss.item() > 0
        assert all(p.grad is not None for p in small.parameters())


# ------------------------------------------------------------------------------------ errors
def _write_fit(tmp_path: Path, signal: dict) -> Path:
    raw = yaml.safe_load((PROBLEMS / "fit_image.yaml").read_text())
    raw["pde"]["signal"] = signal
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


@pytest.mark.parametrize("command", ["validate", "solve"])
def test_missing_image_is_one_line_exit_2(tmp_path, command):
    f = _write_fit(tmp_path, {"path": "missing.png", "size": 32})
    code, out, err = run_cli([command, str(f)])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "pde.signal.path" in err and str(tmp_path / "missing.png") in err
    f = _write_fit(tmp_path, {"path": "sample:no_such_sample.jpg"})
    code, _, err = run_cli(["validate", str(f)])
    assert code == 2 and "pde.signal.path" in err and len(err.strip().splitlines()) == 1


def test_relative_signal_path_resolves_against_the_yaml(tmp_path):
    from pinnsiren.families.fit.signals import load_signal

    img = load_signal("sample:grace_hopper.jpg", size=16, normalise="none")
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "img.npy", img)
    f = _write_fit(tmp_path, {"path": "data/img.npy", "size": 16})
    spec = load_problem(f)
    assert spec.pde.signal.path == str(tmp_path / "data" / "img.npy")
    other = tmp_path / "elsewhere" / "problem.yaml"  # like a run directory's problem.yaml
    other.parent.mkdir()
    other.write_text(spec.to_yaml())
    assert load_problem(other).pde.signal.path == spec.pde.signal.path


def test_unusable_masks_are_user_errors(tmp_path):
    f = _write_fit(tmp_path, {"path": "sample:grace_hopper.jpg", "size": 16})
    code, _, err = run_cli(
        ["solve", str(f), "--set", "pde.mask.box=[[-2, 2], [-2, 2]]", "-o", str(tmp_path / "r")]
    )
    assert code == 2 and "no observed pixel" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        [
            "solve",
            str(f),
            "--set",
            "pde.supervision=gradient",
            "--set",
            "pde.mask.random=0.2",
            "-o",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2 and "3x3 stencil" in err


# ------------------------------------------------------------------------------------ targets
def test_spectral_targets_are_exact_for_mirror_bandlimited_signals(tmp_path):
    from pinnsiren.families.fit.compile import spectral_derivatives

    nx, ny, hx, hy = 24, 20, 0.1, 0.05
    ax = np.pi * 3 / (nx * hx)  # DCT-II modes: smooth under the half-sample mirror
    ay = np.pi * 2 / (ny * hy)
    px = ax * (np.arange(nx) + 0.5) * hx
    py = ay * (np.arange(ny) + 0.5) * hy
    s = np.cos(px)[:, None] * np.cos(py)[None, :]
    gx, gy, lap = spectral_derivatives(s, (hx, hy))
    np.testing.assert_allclose(gx, -ax * np.sin(px)[:, None] * np.cos(py)[None, :], atol=1e-9)
    np.testing.assert_allclose(gy, -ay * np.cos(px)[:, None] * np.sin(py)[None, :], atol=1e-9)
    np.testing.assert_allclose(lap, -(ax**2 + ay**2) * s, atol=1e-8)
    cp = _compile("poisson_image_gradient.yaml", "pde.derivatives=spectral")
    assert load_fit_signal(cp.spec).gradient.shape == (32, 32, 2)
    code, _, err = run_cli(
        [
            "solve",
            str(PROBLEMS / "poisson_image_gradient.yaml"),
            "--set",
            "pde.derivatives=spectral",
            "--set",
            "pde.mask.box=[[-0.2, 0.2], [-0.2, 0.2]]",
            "--set",
            "pde.signal.size=16",
            "-o",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2 and "spectral" in err and len(err.strip().splitlines()) == 1


def test_score_solution_of_a_fit_uses_the_target(tmp_path):
    from pinnsiren.run.compare import score_solution

    cp = _compile("poisson_image_gradient.yaml")
    model = build_model("siren", 2, 1, width=8, depth=1)
    data = cp.evaluate(model)
    assert data.attrs["gauge"] == "constant" and data.grid["x"].shape == (32,)
    score = score_solution(cp.spec, data, tmp_path)
    assert set(score) == {"rel_l2", "max_abs_error", "psnr"} and np.isfinite(score["psnr"])
