"""The README results table: solve and compare shipped problems, print one row each.

    python benchmarks/accuracy.py poisson_manufactured helmholtz_uniform --threads 2
    python benchmarks/accuracy.py wave_gaussian --set training.phases.0.steps=500

Each problem runs exactly as shipped (plus any ``--set`` overrides) into ``runs/bench/NAME``;
the row gives the steps, the training wall time, the metric the issue targets (rel L2 against
the FD reference, PSNR for fits, velocity_rel_l2 for inversions) and the FD time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pinnsiren.problem import load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve

ROOT = Path(__file__).resolve().parent.parent


def row(name: str, overrides: list[str], out_root: Path) -> str:
    spec = load_problem(ROOT / "problems" / f"{name}.yaml", overrides)
    out = out_root / name
    start = time.perf_counter()
    result = solve(spec, out, progress=False)
    metrics = compare_run(out)
    total = time.perf_counter() - start
    (out / "bench.json").write_text(json.dumps({"overrides": overrides, "total_s": total}))
    steps = result.train.steps + spec.training.pretrain_steps
    train = f"{result.train.seconds:.0f} s"
    if spec.kind == "fit":
        extra = f"psnr {metrics['psnr']:.2f} dB"
        if "psnr_heldout" in metrics:
            extra += f", held-out {metrics['psnr_heldout']:.2f} dB"
    elif spec.is_inversion:
        extra = (
            f"velocity_rel_l2 {metrics.get('velocity_rel_l2', float('nan')):.4f} "
            f"(c at anomaly centre {metrics.get('velocity_at_anomaly_center', float('nan')):.3f}); "
            f"classical FWI {metrics.get('fwi_velocity_rel_l2', float('nan')):.4f} "
            f"(c {metrics.get('fwi_velocity_at_anomaly_center', float('nan')):.3f}, "
            f"{metrics.get('fwi_seconds') or 0:.0f} s)"
        )
    else:
        extra = f"rel L2 {metrics['rel_l2']:.3e}"
        if "pinn_vs_exact" in metrics:
            extra += f" (FD vs exact {metrics['reference_vs_exact']['rel_l2']:.1e})"
    return f"| {name} | {steps} | {train} | {extra} |"


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
    print("| problem | steps | training time | result |\n|---|---|---|---|")
    for name in args.problems:
        print(row(name, args.overrides, Path(args.out)), flush=True)


if __name__ == "__main__":
    main()
