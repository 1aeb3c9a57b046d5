"""Coefficient fields: right-hand sides, velocities, initial and boundary values.

A field is a real function of the problem's named axes. In YAML it is one of

* a number: ``2.0``;
* an expression string (see :mod:`pinnsiren.expr`): ``"0.02*exp(-(x**2+y**2)/1e-3)"``;
* a shape with a value inside and outside:
  ``{disk: {center: [0, 0], radius: 0.1}, inside: 2, outside: 1}`` (a ball in 3-D),
  ``{box: {lower: [-0.3, -0.3], upper: [0.3, 0.3]}, inside: 2, outside: 1}``,
  ``{layers: {axis: y, interfaces: [-0.2, 0.3], values: [1.0, 1.5, 2.0]}}``
  (values from the lowest layer up; a point on an interface takes the upper value);
* a gridded array: ``{file: vel.npy, bounds: {x: [-1, 1], y: [-1, 1]}}``, or
  ``{file: model.h5, key: velocity}``; HDF5 files written by pinnsiren carry their grid in
  ``/grid/<axis>`` and need no bounds. Values between nodes are interpolated multilinearly;
  outside the grid the nearest edge value is used.

Shapes use the spatial axes in the order x, y, z (as many as the centre has
coordinates). Every field evaluates with numpy arrays (reference solvers) or torch
tensors (training) from one definition; gridded fields interpolate with scipy and
hand the result back as a tensor on the caller's device (coefficients are never
differentiated with respect to the coordinates).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator

from pinnsiren.schema.expr import Expression, ExpressionError
from pinnsiren.schema.expr import is_torch as _is_torch
from pinnsiren.schema.geometry import Box

SPATIAL_AXES = ("x", "y", "z")


class FieldError(ValueError):
    """A field definition that cannot be used; one-line message."""


def _like(template: Any, values: Any) -> Any:
    """Broadcast ``values`` (number or array) to the shape/backend of ``template``."""
    if _is_torch(template):
        v = torch.as_tensor(values, dtype=template.dtype, device=template.device)
        return v.expand_as(template).clone() if v.shape != template.shape else v
    return np.broadcast_to(np.asarray(values, dtype=float), np.shape(template)).copy()


def _reference(coords: Mapping[str, Any]) -> Any:
    if not coords:
        raise FieldError("a field needs at least one coordinate to evaluate on")
    arrays = list(coords.values())
    if _is_torch(arrays[0]):
        return torch.broadcast_tensors(*arrays)[0]
    return np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in arrays])[0]


class Field(ABC):
    """A real-valued coefficient field of named coordinates."""

    @property
    @abstractmethod
    def names(self) -> set[str]:
        """Axis names the field reads."""

    @abstractmethod
    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        """Values at the points; may return a scalar for constant fields."""

    @abstractmethod
    def to_yaml(self) -> Any:
        """The YAML form of the field (what ``validate`` prints)."""

    def __call__(self, coords: Mapping[str, Any]) -> Any:
        """Evaluate at points given as ``{axis: array}`` (numpy or torch, broadcastable)."""
        missing = sorted(self.names - set(coords))
        if missing:
            raise FieldError(f"field needs axes {missing} that the problem does not have")
        return _like(_reference(coords), self._evaluate(coords))

    def is_constant(self) -> bool:
        return not self.names


@dataclass(frozen=True)
class Constant(Field):
    value: float

    @property
    def names(self) -> set[str]:
        return set()

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        return self.value

    def to_yaml(self) -> Any:
        return self.value


@dataclass(frozen=True)
class ExpressionField(Field):
    text: str
    expression: Expression = field(compare=False, repr=False)

    @property
    def names(self) -> set[str]:
        return set(self.expression.names)

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        return self.expression(coords)

    def to_yaml(self) -> Any:
        return self.text


def _distance_sq(coords: Mapping[str, Any], center: Sequence[float]) -> Any:
    return sum((coords[a] - c) ** 2 for a, c in zip(SPATIAL_AXES, center))


def _select(mask: Any, inside: float, outside: float) -> Any:
    if _is_torch(mask):
        return mask.to(dtype=torch.get_default_dtype()) * (inside - outside) + outside
    return np.where(mask, inside, outside)


@dataclass(frozen=True)
class Disk(Field):
    """``inside`` where |p − center| < radius (a ball in 3-D), ``outside`` elsewhere."""

    center: tuple[float, ...]
    radius: float
    inside: float
    outside: float

    @property
    def names(self) -> set[str]:
        return set(SPATIAL_AXES[: len(self.center)])

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        mask = _distance_sq(coords, self.center) < self.radius**2
        return _select(mask, self.inside, self.outside)

    def to_yaml(self) -> Any:
        return {
            "disk": {"center": list(self.center), "radius": self.radius},
            "inside": self.inside,
            "outside": self.outside,
        }


@dataclass(frozen=True)
class BoxField(Field):
    """``inside`` where lower < p < upper componentwise (the open box), ``outside`` elsewhere."""

    box: Box
    inside: float
    outside: float

    @property
    def names(self) -> set[str]:
        return set(self.box.axes)

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        return _select(self.box.contains(coords, strict=True), self.inside, self.outside)

    def to_yaml(self) -> Any:
        return {
            "box": {"lower": list(self.box.lower), "upper": list(self.box.upper)},
            "inside": self.inside,
            "outside": self.outside,
        }


@dataclass(frozen=True)
class Layers(Field):
    """Piecewise constant along one axis: ``values[k]`` between interfaces k−1 and k."""

    axis: str
    interfaces: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def names(self) -> set[str]:
        return {self.axis}

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        c = coords[self.axis]
        result = _like(c, self.values[0])
        for z, v in zip(self.interfaces, self.values[1:]):
            if _is_torch(c):
                result = torch.where(c >= z, _like(c, v), result)
            else:
                result = np.where(c >= z, v, result)
        return result

    def to_yaml(self) -> Any:
        return {
            "layers": {
                "axis": self.axis,
                "interfaces": list(self.interfaces),
                "values": list(self.values),
            }
        }


@dataclass(frozen=True)
class Gridded(Field):
    """Samples on a regular grid, interpolated multilinearly (nearest value outside)."""

    path: str
    key: str | None
    axes: tuple[str, ...]
    grid: tuple[np.ndarray, ...] = field(compare=False, repr=False)
    values: np.ndarray = field(compare=False, repr=False)

    @property
    def names(self) -> set[str]:
        return set(self.axes)

    def _evaluate(self, coords: Mapping[str, Any]) -> Any:
        interp = RegularGridInterpolator(self.grid, self.values, method="linear")
        ref = _reference(coords)
        if _is_torch(ref):
            pts = [
                torch.broadcast_to(coords[a], ref.shape).detach().cpu().numpy() for a in self.axes
            ]
        else:
            pts = [np.broadcast_to(coords[a], np.shape(ref)) for a in self.axes]
        pts = [np.clip(p, g[0], g[-1]) for p, g in zip(pts, self.grid)]
        out = interp(np.stack([p.ravel() for p in pts], axis=-1)).reshape(np.shape(ref))
        if _is_torch(ref):
            return torch.as_tensor(out, dtype=ref.dtype, device=ref.device)
        return out

    def to_yaml(self) -> Any:
        out: dict[str, Any] = {"file": self.path}
        if self.key:
            out["key"] = self.key
        out["bounds"] = {a: [float(g[0]), float(g[-1])] for a, g in zip(self.axes, self.grid)}
        return out


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise FieldError(f"{what} must be finite, got {value!r}")
    return v


def _vector(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 3:
        raise FieldError(f"{what} must be a list of 1 to 3 numbers, got {value!r}")
    return tuple(_number(v, what) for v in value)


def _keys(raw: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise FieldError(
            f"unknown key {unknown[0]!r} in {what} (allowed: {', '.join(sorted(allowed))})"
        )


def _load_gridded(raw: Mapping[str, Any], base_dir: Path) -> Gridded:
    _keys(raw, {"file", "key", "bounds", "axes"}, "gridded field")
    path = Path(str(raw["file"]))
    full = path if path.is_absolute() else base_dir / path
    if not full.is_file():
        raise FieldError(f"data file {str(full)!r} not found")
    key = raw.get("key")
    suffix = full.suffix.lower()
    grid_from_file: dict[str, np.ndarray] = {}
    try:
        if suffix == ".npy":
            values = np.load(full)
        elif suffix == ".npz":
            with np.load(full) as data:
                if key is None:
                    if len(data.files) != 1:
                        raise FieldError(f"{full}: give 'key' (arrays: {', '.join(data.files)})")
                    key = data.files[0]
                if key not in data.files:
                    raise FieldError(f"{full}: no array {key!r} (arrays: {', '.join(data.files)})")
                values = data[key]
        elif suffix in (".h5", ".hdf5"):
            with h5py.File(full, "r") as h5:
                if key is None:
                    raise FieldError(f"{full}: give 'key', the dataset to read")
                if key not in h5:
                    raise FieldError(f"{full}: no dataset {key!r}")
                values = np.asarray(h5[key])
                if "grid" in h5:
                    grid_from_file = {a: np.asarray(h5["grid"][a]) for a in h5["grid"]}
        else:
            raise FieldError(f"{full}: unsupported file type {suffix!r} (allowed: .npy .npz .h5)")
    except FieldError:
        raise
    except Exception as exc:  # unreadable file: report in one line
        raise FieldError(f"cannot read {full}: {type(exc).__name__}: {exc}") from None
    values = np.asarray(values, dtype=float)
    if values.ndim < 1 or values.ndim > 3:
        raise FieldError(f"{full}: array must be 1-D to 3-D, has shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise FieldError(f"{full}: array contains NaN or inf")
    axes = tuple(raw.get("axes") or SPATIAL_AXES[: values.ndim])
    if len(axes) != values.ndim:
        raise FieldError(f"{full}: 'axes' has {len(axes)} names for a {values.ndim}-D array")
    bounds = raw.get("bounds")
    grid = []
    for i, a in enumerate(axes):
        n = values.shape[i]
        if n < 2:
            raise FieldError(f"{full}: axis {a} needs at least 2 samples")
        if bounds is not None:
            if not isinstance(bounds, Mapping) or a not in bounds:
                raise FieldError(f"bounds must give [low, high] for axis {a}")
            pair = _vector(bounds[a], f"bounds.{a}")
            if len(pair) != 2 or not pair[1] > pair[0]:
                raise FieldError(f"bounds.{a} must be [low, high] with low < high")
            grid.append(np.linspace(pair[0], pair[1], n))
        elif a in grid_from_file and grid_from_file[a].shape == (n,):
            grid.append(grid_from_file[a])
        else:
            raise FieldError(f"{full}: give 'bounds' for axis {a} (the file has no grid for it)")
    return Gridded(str(path), key, axes, tuple(grid), values)


def parse_field(raw: Any, base_dir: Path | str = ".", axes: Sequence[str] | None = None) -> Field:
    """Turn the YAML form of a field into a :class:`Field`.

    ``axes`` (when given) are the names an expression may use; ``base_dir`` resolves
    relative data-file paths (the directory of the YAML file).
    """
    if isinstance(raw, Field):
        return raw
    allowed = set(axes) if axes is not None else None
    if isinstance(raw, bool):
        raise FieldError(f"a field cannot be a boolean ({raw!r})")
    if isinstance(raw, (int, float)):
        return Constant(_number(raw, "value"))
    if isinstance(raw, str):
        try:
            expression = Expression(raw, allowed)
        except ExpressionError as exc:
            raise FieldError(str(exc)) from None
        if not expression.names:
            try:
                return Constant(_number(float(expression({})), "value"))
            except (FieldError, ArithmeticError, ValueError) as exc:
                raise FieldError(f"{raw!r}: {exc}") from None
        return ExpressionField(raw, expression)
    if isinstance(raw, Mapping):
        if "expr" in raw:
            _keys(raw, {"expr"}, "expression field")
            return parse_field(str(raw["expr"]), base_dir, axes)
        if "file" in raw:
            f = _load_gridded(raw, Path(base_dir))
            if allowed is not None and not f.names <= allowed:
                raise FieldError(f"gridded field axes {sorted(f.names)} are not all problem axes")
            return f
        for shape in ("disk", "box"):
            if shape in raw:
                _keys(raw, {shape, "inside", "outside"}, f"{shape} field")
                if "inside" not in raw or "outside" not in raw:
                    raise FieldError(f"{shape} field needs 'inside' and 'outside' values")
                inside = _number(raw["inside"], "inside")
                outside = _number(raw["outside"], "outside")
                geo = raw[shape]
                if not isinstance(geo, Mapping):
                    raise FieldError(f"{shape} must be a mapping")
                if shape == "disk":
                    _keys(geo, {"center", "radius"}, "disk")
                    center = _vector(geo.get("center"), "disk.center")
                    radius = _number(geo.get("radius"), "disk.radius")
                    if radius <= 0:
                        raise FieldError(f"disk.radius must be > 0, got {radius}")
                    out: Field = Disk(center, radius, inside, outside)
                else:
                    _keys(geo, {"lower", "upper"}, "box")
                    lower = _vector(geo.get("lower"), "box.lower")
                    upper = _vector(geo.get("upper"), "box.upper")
                    if len(lower) != len(upper) or any(u <= lo for lo, u in zip(lower, upper)):
                        raise FieldError("box.lower and box.upper must match with lower < upper")
                    out = BoxField(Box(SPATIAL_AXES[: len(lower)], lower, upper), inside, outside)
                if allowed is not None and not out.names <= allowed:
                    raise FieldError(
                        f"{shape} has {len(out.names)} coordinates; the axes are {sorted(allowed)}"
                    )
                return out
        if "layers" in raw:
            _keys(raw, {"layers"}, "layers field")
            geo = raw["layers"]
            if not isinstance(geo, Mapping):
                raise FieldError("layers must be a mapping")
            _keys(geo, {"axis", "interfaces", "values"}, "layers")
            axis = geo.get("axis")
            if allowed is not None and axis not in allowed:
                raise FieldError(
                    f"layers.axis {axis!r} is not an axis ({', '.join(sorted(allowed))})"
                )
            interfaces = tuple(_number(v, "layers.interfaces") for v in geo.get("interfaces", []))
            values = tuple(_number(v, "layers.values") for v in geo.get("values", []))
            if len(values) != len(interfaces) + 1:
                raise FieldError("layers needs one more value than interfaces")
            if list(interfaces) != sorted(interfaces):
                raise FieldError("layers.interfaces must increase")
            return Layers(str(axis), interfaces, values)
        raise FieldError(
            "a field mapping needs one of: expr, disk, box, layers, file "
            f"(got keys {', '.join(map(str, raw)) or 'none'})"
        )
    raise FieldError(
        f"cannot read {raw!r} as a field (allowed: number, expression, disk, box, layers, file)"
    )
