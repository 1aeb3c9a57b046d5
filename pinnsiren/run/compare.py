"""``pinnsiren compare``: a run's errors against its reference, ``metrics.json`` and figures.

The metrics are the family's (:meth:`~pinnsiren.families.base.Family.metrics`): by default the
relative L2 error of u over the metric region (``evaluation.region``; for a Helmholtz problem
with a PML the region inside it), per time snapshot, and against an exact solution when one is
declared; velocity errors and data misfits for an inversion; PSNRs for a fit, which has no
reference.

The reference is read from ``reference_path`` when given, else reused from
``RUN_DIR/reference.h5`` when it was computed for the same resolved problem, else computed now
and saved there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import GridData, read_grid_data, write_grid_data, write_text
from pinnsiren.problem.loading import load_problem
from pinnsiren.problem.spec import ProblemSpec
from pinnsiren.run.reference import compute_reference


def reference_for_run(spec: ProblemSpec, run_dir: Path) -> GridData | None:
    """The run's cached FD reference when it belongs to the same problem, else a new one
    (None for a family without a reference)."""
    if not spec.family.has_reference:
        return None
    cached = run_dir / "reference.h5"
    if cached.is_file():
        data = read_grid_data(cached)
        if data.problem == spec.to_yaml():
            return data
    data = compute_reference(spec)
    write_grid_data(cached, data)
    return data


def compare_run(run_dir: Path, reference_path: Path | None = None, *, plots: bool = True) -> dict:
    """Compare a run's solution with its reference; write metrics.json and comparison.png."""
    run_dir = Path(run_dir)
    if not (run_dir / "solution.h5").is_file():
        raise UserError(f"{run_dir}: no solution.h5 (run pinnsiren solve first)")
    spec = load_problem(run_dir / "problem.yaml")
    family = spec.family
    if reference_path is not None and not family.has_reference:
        raise UserError(
            f"{spec.name}: a {spec.kind} problem has no finite-difference reference; "
            "drop --reference"
        )
    solution = read_grid_data(run_dir / "solution.h5")
    if reference_path is not None:
        reference = read_grid_data(reference_path)
    else:
        reference = reference_for_run(spec, run_dir)
    metrics = family.metrics(spec, solution, reference)
    if reference is not None:
        metrics["reference_seconds"] = reference.attrs.get("seconds")
    write_metrics(run_dir, metrics)
    if plots:
        family.plot_comparison(spec, solution, reference, metrics, run_dir / "comparison.png")
    return metrics


def score_solution(spec: ProblemSpec, solution: GridData, run_dir: Path) -> dict[str, float]:
    """The family's score of a solution against the run's reference (``pinnsiren prune``)."""
    return spec.family.score(spec, solution, reference_for_run(spec, run_dir))


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Add the run's steps and training time (from run.json) and write metrics.json."""
    run_info = run_dir / "run.json"
    if run_info.is_file():
        info = json.loads(run_info.read_text())
        metrics["train_seconds"] = info.get("train_seconds")
        metrics["steps"] = info.get("steps")
        if "least_squares" in info:
            metrics["least_squares_seconds"] = info["least_squares"].get("seconds")
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
