"""Error metrics between a solution and a reference on one grid.

For the primary field u (complex for Helmholtz), over the metric region's nodes:

    rel_l2 = ‖u − u_ref‖₂ / ‖u_ref‖₂,   max_abs_error = max |u − u_ref|,

plus the same per time snapshot (time-dependent problems) and, when the problem declares an
exact solution, the errors of both the PINN and the FD reference against it
(``pinn_vs_exact``, ``reference_vs_exact``): where the reference is the less accurate of the
two, the exact errors are the ones to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import GridData


def region_mask(
    grid: Mapping[str, np.ndarray], axes: tuple[str, ...], region: Mapping[str, tuple]
) -> np.ndarray:
    """Boolean mask over a field with dimension names ``axes`` (non-grid axes all True)."""
    masks = []
    for a in axes:
        nodes = grid.get(a)
        if nodes is None or a not in region:
            masks.append(np.ones(1 if nodes is None else len(nodes), dtype=bool))
            continue
        lo, hi = region[a]
        tol = 1e-12 * max(1.0, abs(hi - lo))
        masks.append((nodes >= lo - tol) & (nodes <= hi + tol))
    out = np.ones(tuple(len(m) for m in masks), dtype=bool)
    for k, m in enumerate(masks):
        shape = [1] * len(masks)
        shape[k] = len(m)
        out = out & m.reshape(shape)
    return out


def errors(u: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    m = np.broadcast_to(mask, u.shape)
    diff = (u - ref)[m]
    norm = float(np.linalg.norm(ref[m]))
    return {
        "rel_l2": float(np.linalg.norm(diff) / norm) if norm > 0 else float("nan"),
        "max_abs_error": float(np.max(np.abs(diff))) if diff.size else float("nan"),
        "ref_max_abs": float(np.max(np.abs(ref[m]))) if diff.size else float("nan"),
    }


def field_of(data: GridData, name: str) -> np.ndarray:
    """A field, complex when stored as ``<name>_real`` / ``<name>_imag``."""
    return data.complex(name) if f"{name}_real" in data.fields else data.fields[name]


def axes_of(data: GridData, name: str) -> tuple[str, ...]:
    return data.axes[f"{name}_real"] if f"{name}_real" in data.fields else data.axes[name]


def check_same_grid(solution: GridData, reference: GridData) -> None:
    for axis, nodes in solution.grid.items():
        ref_nodes = reference.grid.get(axis)
        if ref_nodes is None or ref_nodes.shape != nodes.shape or not np.allclose(ref_nodes, nodes):
            raise UserError(f"solution and reference grids differ on axis {axis}")


def compare_fields(
    name: str, solution: GridData, reference: GridData, region: Mapping[str, tuple]
) -> dict[str, Any]:
    """Metrics of the solution's ``u`` against the reference's ``u`` (and ``exact``)."""
    check_same_grid(solution, reference)
    u, ref = field_of(solution, "u"), field_of(reference, "u")
    axes = axes_of(solution, "u")
    if u.shape != ref.shape:
        raise UserError(f"solution u has shape {u.shape}, reference {ref.shape}")
    mask = region_mask(solution.grid, axes, region)
    out: dict[str, Any] = {"problem": name, "region": {a: list(v) for a, v in region.items()}}
    out.update(errors(u, ref, mask))
    out["fields"] = {"u": errors(u, ref, mask)}
    if "t" in axes:
        k = axes.index("t")
        out["per_time"] = [
            {
                "t": float(t),
                **errors(np.take(u, i, axis=k), np.take(ref, i, axis=k), np.take(mask, i, axis=k)),
            }
            for i, t in enumerate(solution.grid["t"])
        ]
    if reference.has("exact"):
        exact = field_of(reference, "exact")
        out["pinn_vs_exact"] = errors(u, exact, mask)
        out["reference_vs_exact"] = errors(ref, exact, mask)
    return out
