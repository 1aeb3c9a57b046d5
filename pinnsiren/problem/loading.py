"""Loading a problem file: YAML, ``--set`` overrides, defaults, validation, family checks.

    YAML text ─▶ dict ─▶ ``--set`` overrides ─▶ family defaults ─▶ pydantic ─▶ semantic checks

Any failure is a :class:`~pinnsiren.schema.types.SpecError` whose ``str`` is the one-line
message ``FILE: key.path: what is wrong (what is allowed)`` that the CLI prints with exit
status 2. The checks here hold for every family and are driven by the family's declarations
(axes, walls, terms, reference keys); the family's ``check`` adds its own rules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pinnsiren.families import FAMILIES, Family
from pinnsiren.problem.spec import ProblemSpec
from pinnsiren.schema import fields as fieldlib
from pinnsiren.schema.types import SpecError


# --------------------------------------------------------------------------- defaults
def _fill_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults that depend on the family (boundary kind, initial group, evaluation grid) and
    on other keys (float64 for a least-squares output layer)."""
    pde = raw.get("pde")
    domain = raw.get("domain")
    kind = pde.get("kind") if isinstance(pde, Mapping) else None
    if not isinstance(kind, str) or kind not in FAMILIES or not isinstance(domain, Mapping):
        return raw
    family = FAMILIES[kind]
    raw = dict(raw)
    boundary = raw.get("boundary")
    if boundary is None or (isinstance(boundary, Mapping) and "kind" not in boundary):
        raw["boundary"] = {"kind": family.boundaries[0], **(boundary or {})}
    if family.time_dependent and raw.get("initial") is None:
        raw["initial"] = {}
    training = raw.get("training")
    if isinstance(training, Mapping) and training.get("output_layer") == "least_squares":
        raw["training"] = {"dtype": "float64", **training}
    ev = raw.get("evaluation")
    if ev is None or isinstance(ev, Mapping):
        ev = dict(ev or {})
        grid = ev.get("grid")
        if grid is None or isinstance(grid, Mapping):
            grid = dict(grid or {})
            for axis in domain:
                grid.setdefault(axis, 5 if axis == "t" else family.default_grid)
            ev["grid"] = grid
        raw["evaluation"] = ev
    return family.fill_defaults(raw)


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-4`` as a number (YAML 1.2; PyYAML wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# --------------------------------------------------------------------------- overrides
def apply_overrides(raw: Any, overrides: Sequence[str], file: str = "--set") -> Any:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a raw problem dict."""
    data = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SpecError(file, "--set", f"{item!r} is not key.path=value")
        path, text = item.split("=", 1)
        keys = [k for k in path.strip().split(".")]
        if not all(keys):
            raise SpecError(file, "--set", f"{path!r} is not a dotted key path")
        try:
            value = read_yaml(text)
        except yaml.YAMLError:
            value = text
        node = data
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise SpecError(file, ".".join(keys[: i + 1]), "no such list index")
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    if not isinstance(node.get(key), (dict, list)):
                        node[key] = {}
                    node = node[key]
            else:
                raise SpecError(
                    file, ".".join(keys[:i]), "is not a mapping; cannot set a key in it"
                )
    return data


# --------------------------------------------------------------------------- errors
_TAGS = ("function-", "tagged-union", "union[") + tuple(
    tag for f in FAMILIES.values() for tag in f.schema_tags
)


def _error_path(raw: Any, loc: Sequence[Any]) -> list[str]:
    """Dotted key path of a pydantic error location, dropping union tags."""
    out: list[str] = []
    node = raw
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            out.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(str(part))
            node = node[part]
        elif (
            isinstance(node, Mapping)
            and isinstance(part, str)
            and not part.startswith(_TAGS)
            and part not in FAMILIES
            and not re.match(r"^(float|int|str|bool|list|dict|tuple|literal|.*\[.*\])", part)
        ):
            out.append(part)  # a missing key
            node = None
        # else: a union member tag; skip it
    return out


def _format_validation(file: str, raw: Any, exc: ValidationError) -> SpecError:
    err = exc.errors(include_url=False)[0]
    path = _error_path(raw, err["loc"])
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "unknown_key":
        path.append(ctx["key"])
        return SpecError(file, ".".join(path), f"unknown key (allowed: {ctx['allowed']})")
    if kind == "missing":
        return SpecError(file, ".".join(path), "required key is missing")
    msg = err["msg"]
    if kind in ("field", "complex", "bounds", "data", "data_file"):
        pass
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        msg = f"kind must be one of {', '.join(FAMILIES)}"
        if not path or path[-1] != "kind":
            path.append("kind")
    elif kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg}, got {err['input']!r}"
    return SpecError(file, ".".join(path), msg)


# --------------------------------------------------------------------------- semantics
def _walk_fields(obj: Any, path: str) -> Iterator[tuple[str, fieldlib.Field]]:
    if isinstance(obj, fieldlib.Field):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_fields(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _walk_fields(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk_fields(v, f"{path}.{i}")


def _check_axes(spec: ProblemSpec, family: Family, fail) -> None:
    axes, space, kind = spec.axes, spec.space_axes, family.kind
    lo, hi = family.space
    if not lo <= len(space) <= hi or (family.planar and space != ("x", "y")):
        allowed = "x, y" if family.planar else f"{lo} to {hi} of x, y, z"
        fail("domain", f"{kind} needs spatial axes {allowed} (got {', '.join(space) or 'none'})")
    if family.time_dependent and "t" not in axes:
        fail("domain", f"{kind} needs a time axis t")
    if not family.time_dependent and "t" in axes:
        fail("domain.t", f"{kind} is not time-dependent; remove t")
    for axis, (a, b) in spec.domain.items():
        if not a < b:
            fail(f"domain.{axis}", f"must be [low, high] with low < high, got [{a}, {b}]")
    # fields may only read the axes they are evaluated on (an exact solution: all of them)
    timed = ("pde.exact",) + tuple(f"pde.{key}" for key in family.time_fields)
    for path, f in _walk_fields(spec, ""):
        allowed_names = set(axes) if path.startswith(timed) else set(space)
        bad = sorted(f.names - allowed_names)
        if bad:
            fail(
                path,
                f"uses {', '.join(bad)}, not an axis here "
                f"(axes: {', '.join(sorted(allowed_names))})",
            )


def _check_conditions(spec: ProblemSpec, family: Family, fail) -> None:
    kind, b = family.kind, spec.boundary.kind
    if b not in family.boundaries:
        allowed = ", ".join(family.boundaries)
        fail("boundary.kind", f"{b!r} is not allowed for {kind} (allowed: {allowed})")
    for face in spec.boundary.faces:
        if face[0] not in spec.space_axes:
            fail(f"boundary.faces.{face}", f"no axis {face[0]} in this problem")
    if spec.boundary.faces and not family.faces:
        fail("boundary.faces", f"{kind} has no per-face conditions")
    if spec.boundary.faces and b not in ("dirichlet", "neumann"):
        fail("boundary.faces", "per-face conditions need boundary.kind dirichlet or neumann")
    if family.time_dependent and spec.initial is None:
        fail("initial", f"{kind} needs initial conditions")
    if not family.time_dependent and spec.initial is not None:
        fail("initial", f"{kind} has no initial conditions; remove this key")
    if spec.initial is not None:
        for key in _changed(spec.initial) - set(family.initial_keys):
            fail(
                f"initial.{key}", f"not used by {kind} (allowed: {', '.join(family.initial_keys)})"
            )
    for key in _changed(spec.reference) - set(family.reference_keys):
        allowed = ", ".join(family.reference_keys) or "none"
        fail(f"reference.{key}", f"not used by the {kind} reference (allowed: {allowed})")


def _changed(group: BaseModel) -> set[str]:
    """Keys of a group whose value is not the default (a resolved file lists every key)."""
    default = type(group)()
    return {k for k in type(group).model_fields if getattr(group, k) != getattr(default, k)}


def _check_terms(spec: ProblemSpec, family: Family, fail) -> None:
    groups = [("loss.weights", spec.loss.weights), ("sampling.points", spec.sampling.points)]
    groups += [
        (f"training.phases.{i}.weights", p.weights) for i, p in enumerate(spec.training.phases)
    ]
    ls = spec.training.least_squares
    groups.append(("training.least_squares.points", ls.points))
    for group, keys in groups:
        allowed = family.terms + (family.point_keys if group.endswith("points") else ())
        for key in keys:
            if key not in allowed:
                fail(
                    f"{group}.{key}", f"not a term of {family.kind} (allowed: {', '.join(allowed)})"
                )


def _check_grid(spec: ProblemSpec, fail) -> None:
    axes, grid = spec.axes, spec.evaluation.grid
    for axis in grid:
        if axis not in axes:
            fail(f"evaluation.grid.{axis}", f"no axis {axis} in the domain")
        g = grid[axis]
        if isinstance(g, list) and (len(g) < 1 or sorted(g) != g):
            fail(f"evaluation.grid.{axis}", "a list of nodes must be non-empty and increasing")
    for axis in axes:
        if axis not in grid:
            fail("evaluation.grid", f"missing axis {axis}")
    for axis in spec.model.input_scale:
        if axis not in axes:
            fail(f"model.input_scale.{axis}", f"no axis {axis} in the domain")
    for axis, (a, b) in (spec.evaluation.region or {}).items():
        if axis not in axes:
            fail(f"evaluation.region.{axis}", f"no axis {axis} in the domain")
        if not a < b:
            fail(f"evaluation.region.{axis}", "must be [low, high] with low < high")


def _check_training(spec: ProblemSpec, family: Family, fail) -> None:
    training = spec.training
    if not training.phases and training.output_layer != "least_squares":
        fail("training.phases", "at least one phase is needed (none only with least_squares)")
    if training.output_layer == "least_squares":
        residual = "residual" in family.terms
        if residual and spec.loss.weights.get("residual", 1.0) <= 0:
            fail("loss.weights.residual", "output_layer least_squares needs a residual weight > 0")
        for i, phase in enumerate(training.phases):
            if training.least_squares.every_step and phase.optimizer != "adam":
                fail(
                    f"training.phases.{i}.optimizer",
                    "output_layer least_squares solved every step needs adam "
                    "(or least_squares.every_step: false)",
                )
            if residual and phase.weights.get("residual", 1.0) <= 0:
                fail(
                    f"training.phases.{i}.weights.residual",
                    "output_layer least_squares needs a residual weight > 0",
                )
    if spec.model.init not in family.model_inits:
        allowed = ", ".join(family.model_inits)
        fail("model.init", f"{spec.model.init!r} is not available for {family.kind} ({allowed})")
    if spec.model.inclusion is not None and not family.inclusion_features:
        fail("model.inclusion", f"{family.kind} has no inclusion features")
    if spec.model.init != "siren" and spec.model.kind != "siren":
        fail("model.init", f"{spec.model.init} initialisation needs model.kind siren")


def _check(spec: ProblemSpec, file: str) -> None:
    """The rules every family shares, then the family's own."""

    def fail(path: str, msg: str) -> None:
        raise SpecError(file, path, msg)

    family = spec.family
    _check_axes(spec, family, fail)
    _check_conditions(spec, family, fail)
    _check_terms(spec, family, fail)
    _check_grid(spec, fail)
    _check_training(spec, family, fail)
    family.check(spec, fail)


# --------------------------------------------------------------------------- loading
def parse_problem(raw: Any, file: str = "<problem>", base_dir: Path | str = ".") -> ProblemSpec:
    """Validate a raw (already YAML-parsed) problem into a :class:`ProblemSpec`."""
    if not isinstance(raw, Mapping):
        raise SpecError(file, "", "the file must hold a mapping of keys (name, pde, domain, ...)")
    raw = _fill_defaults(dict(raw))
    try:
        spec = ProblemSpec.model_validate(raw, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise _format_validation(file, raw, exc) from None
    _check(spec, file)
    return spec


def load_problem(path: str | Path, overrides: Sequence[str] = ()) -> ProblemSpec:
    """Read, override and validate a problem file; raises :class:`SpecError`."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(file, "", "file not found") from None
    except OSError as exc:
        raise SpecError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(file, "", f"{where}{problem}") from None
    raw = apply_overrides(raw, overrides, file) if overrides else raw
    return parse_problem(raw, file, path.parent)
