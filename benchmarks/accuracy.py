"""The README results table: solve and compare shipped problems, print one row each.

    python benchmarks/accuracy.py poisson_manufactured helmholtz_uniform --threads 1
    python benchmarks/accuracy.py wave_gaussian --set model.width=6000

Each problem runs exactly as shipped (plus any ``--set`` overrides) into ``runs/bench/NAME``;
the row gives the steps, the time of training plus the final least-squares solve, the metric
the issue targets (rel L2 against the FD reference, and against the exact solution where one is
declared; PSNR for fits; velocity_rel_l2 for inversions) and the FD reference's own error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from pinnsiren.families.helmholtz import is_inversion
from pinnsiren.problem import load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve

ROOT = Path(__file__).resolve().parent.parent


def measure(name: str, overrides: list[str], out: Path) -> dict[str, Any]:
    """Solve and compare one problem; its metrics plus ``steps`` and ``seconds`` (training and
    the final least-squares solve, wall clock, this process)."""
    spec = load_problem(ROOT / "problems" / f"{name}.yaml", overrides)
    start = time.perf_counter()
    result = solve(spec, out, progress=False)
    solved = time.perf_counter() - start
    metrics = compare_run(out)
    info = json.loads((out / "run.json").read_text())
    ls = info.get("least_squares", {}).get("seconds", 0.0)
    metrics["steps"] = result.train.steps + spec.training.pretrain_steps
    metrics["seconds"] = result.train.seconds + ls
    metrics["solve_wall_seconds"] = solved
    metrics["inversion"] = spec.kind == "helmholtz" and is_inversion(spec)
    (out / "bench.json").write_text(json.dumps({"overrides": overrides, "seconds": solved}))
    return metrics


def result_text(metrics: dict[str, Any]) -> str:
    """The metric of the row, with the reference's own error where there is an exact one."""
    if metrics.get("kind") == "fit":
        text = f"psnr {metrics['psnr']:.2f} dB"
        if "psnr_heldout" in metrics:
            text += f", held-out {metrics['psnr_heldout']:.2f} dB"
        return text
    if metrics["inversion"]:
        return (
            f"velocity_rel_l2 {metrics.get('velocity_rel_l2', float('nan')):.4f} "
            f"(c at anomaly centre {metrics.get('velocity_at_anomaly_center', float('nan')):.3f}); "
            f"classical FWI {metrics.get('fwi_velocity_rel_l2', float('nan')):.4f} "
            f"(c {metrics.get('fwi_velocity_at_anomaly_center', float('nan')):.3f}, "
            f"{metrics.get('fwi_seconds') or 0:.0f} s)"
        )
    text = f"rel L2 {metrics['rel_l2']:.2e}"
    if "pinn_vs_exact" in metrics:
        text += (
            f"; vs exact {metrics['pinn_vs_exact']['rel_l2']:.1e} "
            f"(FD vs exact {metrics['reference_vs_exact']['rel_l2']:.1e})"
        )
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problems", nargs="+")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print("| problem | steps | time (training + solve) | result |\n|---|---|---|---|")
    for name in args.problems:
        m = measure(name, args.overrides, Path(args.out) / name)
        print(f"| {name} | {m['steps']} | {m['seconds']:.1f} s | {result_text(m)} |", flush=True)


if __name__ == "__main__":
    main()
