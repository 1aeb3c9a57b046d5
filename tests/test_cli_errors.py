"""The error contract: every user error is one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinnsiren.run.cli import main
from tests.conftest import PROBLEMS

FILES = sorted(PROBLEMS.glob("*.yaml"))
RAW = {p.name: yaml.safe_load(p.read_text()) for p in FILES}
for _raw in RAW.values():  # keep relative data paths valid when the file moves to tmp
    _data = _raw["pde"].get("data") or {}
    if isinstance(_data.get("file"), str):
        _data["file"] = str((PROBLEMS / _data["file"]).resolve())


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def test_misspelt_top_level_key_names_it(tmp_path):
    raw = copy.deepcopy(RAW["poisson_manufactured.yaml"])
    raw["modle"] = raw.pop("model")
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, "modle", str(f))


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("width", 0, "pde.velocity.model.width"),
        ("grid", [1, 5], "pde.velocity.model.grid.0"),
        ("zz", 1, "pde.velocity.model.zz"),
    ],
)
def test_inversion_velocity_errors_name_the_whole_path(tmp_path, key, value, path):
    raw = copy.deepcopy(RAW["helmholtz_inverse_synthetic.yaml"])
    raw["pde"]["velocity"].setdefault("model", {})[key] = value
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, f"{path}:")


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("model", "depth"), -1, "model.depth:"),
        (("training", "output_layer"), "adam", "training.phases: at least one phase"),
        (("reference", "cfl"), 0.3, "reference.cfl: not used by the poisson reference"),
        (("training", "least_squares", "points", "initial_value"), 10, "not a term of poisson"),
    ],
)
def test_model_training_and_reference_keys_a_problem_cannot_use_are_refused(
    tmp_path, path, value, words
):
    """A negative depth, no phases without least squares, a wave-only reference key or a
    least-squares point count for a term the family has not: one line, exit 2."""
    raw = copy.deepcopy(RAW["poisson_manufactured.yaml"])
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, words)


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("optimizer", "lbfgs", "training.phases.0.optimizer"),
        ("weights", {"residual": 0.0}, "training.phases.0.weights.residual"),
    ],
)
def test_least_squares_output_layer_needs_adam_and_a_residual(tmp_path, key, value, path):
    raw = copy.deepcopy(RAW["helmholtz_inverse_synthetic.yaml"])
    raw["training"]["output_layer"] = "least_squares"
    raw["training"]["phases"][0][key] = value
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, f"{path}:", "least_squares")


def test_validate_prints_resolved_problem():
    code, out, err = run_cli(["validate", str(PROBLEMS / "wave_gaussian.yaml")])
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["pde"]["kind"] == "wave"
    # defaults printed: float64 comes with the least-squares output layer
    assert resolved["training"]["dtype"] == "float64"
    assert resolved["training"]["least_squares"]["rows_per_column"] == 2.0
    assert resolved["initial"]["value"].startswith("0.02*exp")


def test_console_script_exit_status_and_no_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: a\npde: {kind: poisson}\ndomain: {x: [0, 1]}\nmodle: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pinnsiren", "validate", str(f)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "modle" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_and_bad_yaml(tmp_path):
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")])
    assert_user_error(code, err, "not found")
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    code, _, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, "broken.yaml")


# ---------------------------------------------------------------- mutation fuzzing
def _paths(node, prefix=()):
    """All (path, value) pairs of mappings in the raw problem."""
    if isinstance(node, dict):
        yield prefix, node
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(raw, path):
    for p in path:
        raw = raw[p]
    return raw


FIELD_KEYS = {"rhs", "speed", "value", "velocity", "exact"}
POSITIVE = [
    ("model", "width"),
    ("training", "phases", 0, "steps"),
    ("training", "phases", 0, "lr"),
    ("training", "checkpoint_every"),
]


def _parent(raw, path):
    """The mapping (or list) holding ``path[-1]``, created on the way (an empty phase list
    gets one phase)."""
    parent = raw
    for p in path[:-1]:
        if isinstance(parent, dict):
            parent = parent.setdefault(p, [] if p == "phases" else {})
        else:
            while len(parent) <= p:
                parent.append({})
            parent = parent[p]
    return parent


@st.composite
def mutated_problem(draw):
    name = draw(st.sampled_from(sorted(RAW)))
    raw = copy.deepcopy(RAW[name])
    kind = draw(
        st.sampled_from(
            [
                "unknown_key",
                "missing",
                "bad_number",
                "wrong_type",
                "bad_expr",
                "not_axis",
                "no_file",
            ]
        )
    )
    if kind == "unknown_key":
        maps = [p for p, v in _paths(raw) if isinstance(v, dict)]
        path = draw(st.sampled_from(maps))
        _get(raw, path)["zz_" + draw(st.text("abcdefgh", min_size=1, max_size=5))] = 1
    elif kind == "missing":
        key = draw(st.sampled_from(["name", "pde", "domain", "pde.kind"]))
        if key == "pde.kind":
            del raw["pde"]["kind"]
        else:
            del raw[key]
    elif kind == "bad_number":
        path = draw(st.sampled_from(POSITIVE))
        value = draw(st.sampled_from([0, -1, -0.5, math.nan, -math.inf]))
        _parent(raw, path)[path[-1]] = value
    elif kind == "wrong_type":
        path = draw(st.sampled_from(POSITIVE + [("domain",), ("pde", "kind")]))
        value = draw(st.sampled_from(["abc", [1, 2, 3], {"q": 1}, True]))
        _parent(raw, path)[path[-1]] = value
    else:
        holders = [
            (p, k)
            for p, v in _paths(raw)
            if isinstance(v, dict)
            for k in v
            if k in FIELD_KEYS and (p and p[0] in ("pde", "initial", "boundary"))
        ]
        if not holders:  # nothing field-valued: a bad type in the pde section instead
            holders = [(("pde",), "kind")]
        path, key = draw(st.sampled_from(holders))
        value = {
            "bad_expr": draw(st.sampled_from(["sin(x", "x +* 2", "__import__('os')", "x.y", "1/"])),
            "not_axis": "sin(q) + w",
            "no_file": {"file": "definitely_missing.npy", "bounds": {"x": [0, 1]}},
        }[kind]
        _get(raw, path)[key] = value
    return raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_problem())
def test_mutated_problems_fail_cleanly(tmp_path_factory, raw):
    f = tmp_path_factory.mktemp("m") / "problem.yaml"
    f.write_text(yaml.safe_dump(raw))
    code, out, err = run_cli(["validate", str(f)])
    assert_user_error(code, err, str(f))
    assert out == ""
