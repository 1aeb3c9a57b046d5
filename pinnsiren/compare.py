"""Error metrics between a solution and a reference on one grid.

The metric region is ``evaluation.region`` when given; for a Helmholtz problem with a PML
it defaults to the physical region (the box minus the layer), elsewhere to the whole grid.
For the primary field u (complex for Helmholtz):

    rel_l2 = ‖u − u_ref‖₂ / ‖u_ref‖₂,   max_abs_error = max |u − u_ref|

over the region's nodes, plus the same per time snapshot (wave) and, when the problem
declares an exact solution, the errors of both the PINN and the FD reference against it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pinnsiren.errors import UserError
from pinnsiren.io import GridData
from pinnsiren.spec import ProblemSpec


def metric_region(spec: ProblemSpec) -> dict[str, tuple[float, float]]:
    if spec.evaluation.region:
        return dict(spec.evaluation.region)
    if spec.kind == "helmholtz" and spec.boundary.kind == "pml":
        w = spec.boundary.width
        return {a: (spec.domain[a][0] + w, spec.domain[a][1] - w) for a in ("x", "y")}
    return {}


def region_mask(grid: dict[str, np.ndarray], axes: tuple[str, ...], region) -> np.ndarray:
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


def _field(data: GridData, name: str) -> np.ndarray:
    return data.complex(name) if f"{name}_real" in data.fields else data.fields[name]


def _axes(data: GridData, name: str) -> tuple[str, ...]:
    return data.axes[f"{name}_real"] if f"{name}_real" in data.fields else data.axes[name]


def compare_fields(spec: ProblemSpec, solution: GridData, reference: GridData) -> dict[str, Any]:
    """Metrics of the solution's ``u`` against the reference's ``u`` (and ``exact``)."""
    for axis, nodes in solution.grid.items():
        ref_nodes = reference.grid.get(axis)
        if ref_nodes is None or ref_nodes.shape != nodes.shape or not np.allclose(ref_nodes, nodes):
            raise UserError(f"solution and reference grids differ on axis {axis}")
    region = metric_region(spec)
    u, ref = _field(solution, "u"), _field(reference, "u")
    axes = _axes(solution, "u")
    if u.shape != ref.shape:
        raise UserError(f"solution u has shape {u.shape}, reference {ref.shape}")
    mask = region_mask(solution.grid, axes, region)
    out: dict[str, Any] = {"problem": spec.name, "region": {a: list(v) for a, v in region.items()}}
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
        exact = _field(reference, "exact")
        out["pinn_vs_exact"] = errors(u, exact, mask)
        out["reference_vs_exact"] = errors(ref, exact, mask)
    return out


def compare_run(run_dir: Path, reference_path: Path | None = None, *, plots: bool = True) -> dict:
    """Compare a run's solution with an FD reference; write metrics.json and figures.

    A fit run (``pde.kind: fit``) has no reference: its metrics (PSNR of the reconstruction
    after gauge fixing, of its gradient and Laplacian, held-out PSNR for inpainting) come from
    :func:`pinnsiren.fit_metrics.compare_fit_run`, with ``comparison.png`` = target |
    reconstruction | error.

    The reference is read from ``reference_path`` when given, else reused from
    ``RUN_DIR/reference.h5`` when it was computed for the same resolved problem, else
    computed now and saved there.
    """
    from pinnsiren.io import read_grid_data
    from pinnsiren.spec import load_problem

    run_dir = Path(run_dir)
    if not (run_dir / "solution.h5").is_file():
        raise UserError(f"{run_dir}: no solution.h5 (run pinnsiren solve first)")
    spec = load_problem(run_dir / "problem.yaml")
    if spec.kind == "fit":  # no FD reference: score the fit against its signal
        from pinnsiren.fit_metrics import compare_fit_run

        return compare_fit_run(run_dir, spec, reference_path, plots=plots)
    solution = read_grid_data(run_dir / "solution.h5")
    if reference_path is not None:
        reference = read_grid_data(reference_path)
    else:
        reference = reference_for_run(spec, run_dir)
    if spec.is_inversion:
        from pinnsiren.inverse_reference import inversion_metrics

        metrics = inversion_metrics(spec, solution, reference)
    else:
        metrics = compare_fields(spec, solution, reference)
    metrics["reference_seconds"] = reference.attrs.get("seconds")
    write_metrics(run_dir, metrics)
    if plots and spec.is_inversion:
        from pinnsiren import plots as figures

        both = GridData(grid=solution.grid)
        for name, src in (("true_velocity", solution), ("velocity", solution)):
            if name in src.fields:
                both.add(name, src.fields[name], ("x", "y"))
        both.add("fwi_velocity", reference.fields["velocity"], ("x", "y"))
        figures.plot_velocity(
            both,
            run_dir / "comparison.png",
            title=f"{spec.name}: PINN vs classical FWI",
            columns=(("velocity", "PINN"), ("fwi_velocity", "FWI")),
        )
    elif plots:
        from pinnsiren import plots as figures

        figures.plot_comparison(
            solution,
            reference,
            run_dir / "comparison.png",
            title=f"{spec.name}: rel L2 = {metrics['rel_l2']:.3g}",
        )
    return metrics


def reference_for_run(spec: ProblemSpec, run_dir: Path) -> GridData:
    """The run's cached FD reference when it belongs to the same problem, else a new one."""
    from pinnsiren.io import read_grid_data, write_grid_data
    from pinnsiren.reference import compute_reference

    cached = run_dir / "reference.h5"
    if cached.is_file():
        data = read_grid_data(cached)
        if data.problem == spec.to_yaml():
            return data
    start = time.perf_counter()
    data = compute_reference(spec)
    data.attrs["seconds"] = time.perf_counter() - start
    write_grid_data(cached, data)
    return data


def score_solution(spec: ProblemSpec, solution: GridData, run_dir: Path) -> dict[str, float]:
    """rel_l2 and max_abs_error of a solution against the run's reference.

    A fit solution is scored against its own ``target`` instead (after the gauge fix of
    :mod:`pinnsiren.fit_metrics`), and ``psnr`` is added.
    """
    if spec.kind == "fit":
        from pinnsiren.fit_metrics import fit_metrics

        f, mask = solution.fields, None
        if "mask" in f:
            mask = f["mask"] > 0.5
        gauge = str(solution.attrs.get("gauge") or "none")
        x, y = solution.grid["x"], solution.grid["y"]
        fm = fit_metrics(f["u"], f["target"], x, y, gauge=gauge, mask=mask)
        return {k: fm[k] for k in ("rel_l2", "max_abs_error", "psnr")}
    metrics = compare_fields(spec, solution, reference_for_run(spec, run_dir))
    return {k: metrics[k] for k in ("rel_l2", "max_abs_error")}


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Add the run's steps and training time (from run.json) and write metrics.json."""
    from pinnsiren.io import write_text

    run_info = run_dir / "run.json"
    if run_info.is_file():
        info = json.loads(run_info.read_text())
        metrics["train_seconds"] = info.get("train_seconds")
        metrics["steps"] = info.get("steps")
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
