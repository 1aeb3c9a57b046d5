"""Receiver data for Helmholtz inversion: loading, synthesis and the HDF5 layout.

Receiver data file layout (HDF5)::

    /sources      (S, 2) float64   source positions (x, y)
    /receivers    (R, 2) float64   receiver positions (x, y)
    /data_real    (R, S) float64   Re u_s(receiver r)
    /data_imag    (R, S) float64   Im u_s(receiver r)
    attrs: omega (optional, checked against the problem when present)

The MATLAB file of the SIREN paper's FWI experiment (``data_cylinder_5.mat``) is read too:
keys ``source`` (S, 2), ``receivers`` (R, 2) and ``rec_val`` (R, S) complex.

Synthetic data come from the FD reference solver with a declared true velocity on the
evaluation grid (refined by ``reference.refine``), sampled at the receivers by bilinear
interpolation, plus relative complex Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.io import loadmat

from pinnsiren.errors import UserError
from pinnsiren.families.helmholtz.operator import pml_of, source_densities
from pinnsiren.families.helmholtz.schema import Source
from pinnsiren.output.gridfile import atomic_path
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.fwi import sample_operator
from reference_solvers.helmholtz import solve_helmholtz


@dataclass(frozen=True)
class ReceiverData:
    sources: tuple[Source, ...]
    receivers: np.ndarray  # (R, 2)
    values: np.ndarray  # (R, S) complex

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.values))


def read_data_file(path: Path, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sources (S, 2), receivers (R, 2), values (R, S) complex) from an .h5 or .mat file."""
    if fmt == "auto":
        fmt = "mat" if path.suffix.lower() == ".mat" else "h5"
    try:
        if fmt == "mat":
            raw = loadmat(path)
            missing = [k for k in ("source", "receivers", "rec_val") if k not in raw]
            if missing:
                raise UserError(f"{path}: MATLAB file lacks {', '.join(missing)}")
            src, rec, val = raw["source"], raw["receivers"], raw["rec_val"]
        else:
            with h5py.File(path, "r") as h5:
                missing = [
                    k for k in ("sources", "receivers", "data_real", "data_imag") if k not in h5
                ]
                if missing:
                    raise UserError(f"{path}: receiver data file lacks {', '.join(missing)}")
                src, rec = np.asarray(h5["sources"]), np.asarray(h5["receivers"])
                val = np.asarray(h5["data_real"]) + 1j * np.asarray(h5["data_imag"])
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{path}: cannot read receiver data ({type(exc).__name__}: {exc})"
        ) from None
    src = np.asarray(src, dtype=float).reshape(-1, 2)
    rec = np.asarray(rec, dtype=float).reshape(-1, 2)
    val = np.asarray(val, dtype=complex)
    if val.shape != (len(rec), len(src)):
        raise UserError(f"{path}: values have shape {val.shape}, expected {(len(rec), len(src))}")
    if not np.all(np.isfinite(val)):
        raise UserError(f"{path}: receiver values contain NaN or inf")
    return src, rec, val


def write_data_file(path: Path, data: ReceiverData, omega: float | None = None) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["sources"] = np.array([s.position for s in data.sources], dtype=float)
        h5["receivers"] = data.receivers
        h5["data_real"] = data.values.real
        h5["data_imag"] = data.values.imag
        if omega is not None:
            h5.attrs["omega"] = omega


def synthesize(spec: ProblemBase) -> ReceiverData:
    """FD data for the declared true velocity (see module docstring)."""
    pde = spec.pde
    syn = pde.data.synthesize
    r = spec.reference.refine
    x = np.linspace(*spec.domain["x"], (len(spec.grid_axis("x")) - 1) * r + 1)
    y = np.linspace(*spec.domain["y"], (len(spec.grid_axis("y")) - 1) * r + 1)
    X, Y = np.meshgrid(x, y, indexing="ij")
    c = np.asarray(syn.true_velocity({"x": X, "y": Y}), dtype=float)
    rhs = source_densities(x, y, pde.sources)
    u = solve_helmholtz(x, y, pde.omega, c, rhs, pml_of(spec))
    receivers = np.asarray(pde.receivers, dtype=float)
    values = sample_operator(x, y, receivers) @ u.reshape(len(u), -1).T  # (R, S)
    if syn.noise > 0:
        rng = np.random.default_rng(syn.seed)
        rms = np.sqrt(np.mean(np.abs(values) ** 2))
        noise = rng.standard_normal(values.shape) + 1j * rng.standard_normal(values.shape)
        values = values + syn.noise * rms * noise / np.sqrt(2)
    return ReceiverData(tuple(pde.sources), receivers, values)


def receiver_data(spec: ProblemBase) -> ReceiverData:
    """The problem's receiver data (from its file, or synthesized), positions checked."""
    pde = spec.pde
    if pde.data.synthesize is not None:
        if not pde.receivers:
            raise UserError(f"{spec.name}: pde.receivers: synthetic data need receiver positions")
        return synthesize(spec)
    path = Path(pde.data.file)
    src, rec, val = read_data_file(path, pde.data.format)
    if pde.sources:
        given = np.array([s.position for s in pde.sources])
        if given.shape != src.shape or not np.allclose(given, src, atol=1e-6):
            raise UserError(f"{spec.name}: pde.sources do not match the {len(src)} in {path.name}")
        sources = tuple(pde.sources)
    else:
        sources = tuple(
            Source(
                position=(float(p[0]), float(p[1])),
                amplitude=pde.data.source_amplitude,
                sigma=pde.data.source_sigma,
            )
            for p in src
        )
    if pde.receivers:
        given = np.asarray(pde.receivers, dtype=float)
        if given.shape != rec.shape or not np.allclose(given, rec, atol=1e-6):
            raise UserError(
                f"{spec.name}: pde.receivers do not match the {len(rec)} in {path.name}"
            )
    for name, pts in (("source", np.array([s.position for s in sources])), ("receiver", rec)):
        for axis, k in (("x", 0), ("y", 1)):
            lo, hi = spec.domain[axis]
            if np.any(pts[:, k] <= lo) or np.any(pts[:, k] >= hi):
                raise UserError(f"{spec.name}: a {name} lies outside the domain along {axis}")
    return ReceiverData(sources, rec, val)


def enclosed_region(data: ReceiverData) -> Box:
    """Bounding box of all sources and receivers: where the velocity error is measured."""
    pts = np.vstack([np.array([s.position for s in data.sources]), data.receivers])
    return Box(("x", "y"), tuple(pts.min(axis=0).tolist()), tuple(pts.max(axis=0).tolist()))
