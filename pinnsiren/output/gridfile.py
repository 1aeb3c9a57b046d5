"""The HDF5 layout shared by PINN solutions and finite-difference references.

One file holds fields sampled on one tensor grid::

    /                     attrs: format = "pinnsiren-grid/1", problem, kind, origin
                          ("pinn" | "fd" | "fwi" | "data"), pinnsiren_version, created
    /grid/<axis>          1-D node coordinates (float64), one dataset per axis
    /fields/<name>        float64 array; attr "axes" = comma-separated axis names of its
                          dimensions, e.g. "x,y" or "t,x,y" or "source,x,y"
    /problem              the resolved problem YAML (string), when known

Time-dependent fields put ``t`` first (``u[k]`` is the snapshot at ``grid/t[k]``).
Complex fields (Helmholtz) are stored as two real fields ``<name>_real`` and
``<name>_imag``. Files appear atomically: they are written under a temporary name in
the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pinnsiren import __version__
from pinnsiren.errors import UserError

FORMAT = "pinnsiren-grid/1"


@dataclass
class GridData:
    """Fields on a named tensor grid (see the module docstring for the file layout)."""

    grid: dict[str, np.ndarray]
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def add(self, name: str, values: np.ndarray, axes: tuple[str, ...]) -> None:
        values = np.asarray(values)
        expected = tuple(len(self.grid[a]) for a in axes if a in self.grid)
        shape = tuple(s for a, s in zip(axes, values.shape) if a in self.grid)
        if values.ndim != len(axes) or shape != expected:
            raise ValueError(f"field {name}: shape {values.shape} does not fit axes {axes}")
        if np.iscomplexobj(values):
            self.fields[f"{name}_real"] = values.real.astype(np.float64)
            self.fields[f"{name}_imag"] = values.imag.astype(np.float64)
            self.axes[f"{name}_real"] = self.axes[f"{name}_imag"] = axes
        else:
            self.fields[name] = values.astype(np.float64)
            self.axes[name] = axes

    def complex(self, name: str) -> np.ndarray:
        """``<name>_real + i <name>_imag``."""
        return self.fields[f"{name}_real"] + 1j * self.fields[f"{name}_imag"]

    def has(self, name: str) -> bool:
        return name in self.fields or f"{name}_real" in self.fields


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_grid_data(path: str | Path, data: GridData) -> None:
    """Write ``data`` to ``path`` atomically in the layout above."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["pinnsiren_version"] = __version__
        h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for k, v in data.attrs.items():
            h5.attrs[k] = v
        g = h5.create_group("grid")
        for axis, nodes in data.grid.items():
            g.create_dataset(axis, data=np.asarray(nodes, dtype=np.float64))
        f = h5.create_group("fields")
        for name, values in data.fields.items():
            ds = f.create_dataset(name, data=values, compression="gzip", compression_opts=4)
            ds.attrs["axes"] = ",".join(data.axes[name])
        if data.problem is not None:
            h5.create_dataset("problem", data=data.problem)


def read_grid_data(path: str | Path) -> GridData:
    """Read a file written by :func:`write_grid_data`; a bad file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise UserError(f"{path}: not a pinnsiren grid file (format {FORMAT} expected)")
            grid = {a: np.asarray(h5["grid"][a]) for a in h5["grid"]}
            fields = {n: np.asarray(h5["fields"][n]) for n in h5["fields"]}
            axes = {n: tuple(str(h5["fields"][n].attrs["axes"]).split(",")) for n in h5["fields"]}
            attrs = {k: _plain(v) for k, v in h5.attrs.items()}
            problem = h5["problem"][()].decode() if "problem" in h5 else None
    except OSError as exc:
        raise UserError(f"{path}: cannot read HDF5 ({exc})") from None
    return GridData(grid, fields, axes, attrs, problem)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def ordered_grid(grid: Mapping[str, np.ndarray], axes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Grid in array order: ``t`` first, then the spatial axes in the given order."""
    order = (("t",) if "t" in axes else ()) + tuple(a for a in axes if a != "t")
    return {a: np.asarray(grid[a], dtype=np.float64) for a in order}
