"""Problem schema: shipped files validate, defaults resolve, overrides and fields work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pinnsiren.problem import SpecError, apply_overrides, load_problem, parse_problem
from pinnsiren.schema.fields import FieldError, parse_field
from tests.conftest import PROBLEMS

MINIMAL = {"name": "p", "pde": {"kind": "poisson", "rhs": 1.0}, "domain": {"x": [0, 1]}}


@pytest.mark.parametrize("path", sorted(PROBLEMS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_problems_validate(path):
    spec = load_problem(path)
    assert spec.name == path.stem
    assert set(spec.evaluation.grid) == set(spec.axes)


def test_family_defaults_are_filled():
    spec = parse_problem(MINIMAL)
    assert spec.boundary.kind == "dirichlet"
    assert spec.evaluation.grid == {"x": 101}
    assert spec.model.omega_0 == 30.0
    wave = parse_problem(
        {"name": "w", "pde": {"kind": "wave"}, "domain": {"x": [0, 1], "t": [0, 1]}}
    )
    assert wave.initial is not None and wave.boundary.kind == "none"
    assert wave.evaluation.grid["t"] == 5


def test_spec_is_immutable():
    spec = parse_problem(MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


def test_overrides_set_nested_keys_and_list_items():
    raw = {"a": {"b": 1}, "l": [{"steps": 1}]}
    out = apply_overrides(raw, ["a.b=2.5", "l.0.steps=7", "new.key=[1, 2]"])
    assert out == {"a": {"b": 2.5}, "l": [{"steps": 7}], "new": {"key": [1, 2]}}
    assert raw["a"]["b"] == 1  # the input is not modified
    with pytest.raises(SpecError, match="no such list index"):
        apply_overrides(raw, ["l.3.steps=1"])


def test_override_reaches_the_validated_spec():
    spec = load_problem(
        PROBLEMS / "wave_1d.yaml", ["training.phases=[{steps: 17}]", "model.width=8"]
    )
    assert spec.training.phases[0].steps == 17 and spec.model.width == 8


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (lambda r: r.update(modle={}), "modle", "unknown key"),
        (lambda r: r["pde"].update(kind="poison"), "pde.kind", "poisson"),
        (lambda r: r["pde"].update(rhs="sin(q)"), "pde.rhs", "not an axis"),
        (lambda r: r["pde"].update(rhs="sin(x"), "pde.rhs", "cannot parse"),
        (lambda r: r.update(domain={"x": [1, 0]}), "domain.x", "low < high"),
        (lambda r: r.update(domain={"x": [0, 1], "t": [0, 1]}), "domain.t", "not time"),
        (lambda r: r.update(model={"width": 0}), "model.width", "greater than 0"),
        (lambda r: r.update(training={"dtype": "float16"}), "training.dtype", "float32"),
        (
            lambda r: r.update(loss={"weights": {"initial": 1}}),
            "loss.weights.initial",
            "not a term",
        ),
        (
            lambda r: r.update(training={"phases": [{"steps": 5, "weights": {"data": 1.0}}]}),
            "training.phases.0.weights.data",
            "not a term",
        ),
        (lambda r: r.pop("domain"), "domain", "missing"),
    ],
)
def test_errors_name_the_key(mutate, path, words):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    mutate(raw)
    with pytest.raises(SpecError) as info:
        parse_problem(raw, "f.yaml")
    assert info.value.path == path
    assert words in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"f.yaml: {path}: ")


def test_expression_field_same_in_numpy_and_torch():
    f = parse_field("0.02*exp(-(x**2 + y**2)/1e-3) + where(x > 0, 1, -1)*abs(y)", axes=["x", "y"])
    x = np.linspace(-0.1, 0.1, 7)
    y = np.linspace(-0.05, 0.2, 7)
    ref = 0.02 * np.exp(-(x**2 + y**2) / 1e-3) + np.where(x > 0, 1, -1) * np.abs(y)
    np.testing.assert_allclose(f({"x": x, "y": y}), ref, rtol=1e-14)
    t = f({"x": torch.tensor(x), "y": torch.tensor(y)})
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-14)


def test_constant_expression_folds_and_broadcasts():
    f = parse_field("2*pi")
    assert f.is_constant()
    out = f({"x": np.zeros((3, 4))})
    assert out.shape == (3, 4) and np.allclose(out, 2 * math.pi)


@pytest.mark.parametrize(
    "raw",
    ["__import__('os')", "x.real", "[x]", "lambda: 1", "x if x else 1", "sin(x, y)", "f(x)", "'a'"],
)
def test_disallowed_expressions(raw):
    with pytest.raises(FieldError):
        parse_field(raw, axes=["x", "y"])


def test_shapes():
    disk = parse_field({"disk": {"center": [0, 0], "radius": 0.1}, "inside": 2, "outside": 1})
    box = parse_field(
        {"box": {"lower": [-0.3, -0.3], "upper": [0.3, 0.3]}, "inside": 2, "outside": 1}
    )
    layers = parse_field({"layers": {"axis": "y", "interfaces": [0.0], "values": [1, 3]}})
    pts = {"x": np.array([0.0, 0.05, 0.2, 0.5]), "y": np.array([0.0, 0.05, 0.0, -0.5])}
    np.testing.assert_array_equal(disk(pts), [2, 2, 1, 1])
    np.testing.assert_array_equal(box(pts), [2, 2, 2, 1])
    np.testing.assert_array_equal(layers(pts), [3, 3, 3, 1])
    tpts = {k: torch.tensor(v) for k, v in pts.items()}
    np.testing.assert_array_equal(disk(tpts).numpy(), [2, 2, 1, 1])
    np.testing.assert_array_equal(layers(tpts).numpy(), [3, 3, 3, 1])


def test_gridded_field_interpolates_linearly(tmp_path):
    xs = np.linspace(0, 1, 11)
    ys = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    np.save(tmp_path / "v.npy", 1 + 2 * X - Y)
    f = parse_field({"file": "v.npy", "bounds": {"x": [0, 1], "y": [-1, 1]}}, tmp_path)
    pts = {"x": np.array([0.33, 0.71]), "y": np.array([0.123, -0.9])}
    np.testing.assert_allclose(f(pts), 1 + 2 * pts["x"] - pts["y"], rtol=1e-12)
    with pytest.raises(FieldError, match="not found"):
        parse_field({"file": "missing.npy", "bounds": {"x": [0, 1]}}, tmp_path)
    with pytest.raises(FieldError, match="bounds"):
        parse_field({"file": "v.npy"}, tmp_path)


def test_exponent_without_dot_is_a_number(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\npde: {kind: poisson}\ndomain: {x: [0, 1]}\n"
        "training: {phases: [{optimizer: adam, steps: 10, lr: 1e-4}]}\n"
    )
    assert load_problem(f).training.phases[0].lr == 1e-4
    assert load_problem(f, ["training.phases.0.lr=3e-3"]).training.phases[0].lr == 3e-3


@pytest.mark.parametrize(
    "problem, overrides, path, words",
    [
        (
            "helmholtz_inverse_synthetic.yaml",
            ["pde.formulation=scattered", "pde.background=1.0"],
            "pde.background",
            "pde.velocity.background",
        ),
        (
            "helmholtz_inverse_synthetic.yaml",
            ["pde.formulation=scattered", "boundary.kind=dirichlet"],
            "pde.formulation",
            "needs boundary.kind pml",
        ),
        (
            "helmholtz_inverse_synthetic.yaml",
            ["pde.formulation=incident"],
            "pde.formulation",
            "total",
        ),
    ],
)
def test_scattered_formulation_rules(problem, overrides, path, words):
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / problem, overrides)
    assert info.value.path == path and words in str(info.value)
