"""Does frequency control pay off? ω₀ = 30 vs FreSh vs TUNER vs a small ω₀ grid search.

For each problem the same network and step budget is trained with
  * ω₀ = 30 (the SIREN default),
  * ω₀ chosen by FreSh (``pinnsiren tune``; selection time reported as a fraction of training),
  * TUNER initialisation (frozen lattice first layer, clamped hidden weights),
  * each ω₀ of a small grid (the anchor FreSh claims to match at a fraction of the cost),
and the error against the reference (rel L2; PSNR for a fitting problem) is printed as a
markdown table, all measured in one run.

    python benchmarks/frequency.py --steps 300 --width 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pinnsiren.engine.sampling import make_generator
from pinnsiren.problem import load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve
from pinnsiren.run.tune import fresh_for_problem

ROOT = Path(__file__).resolve().parent.parent
#: Adam-trained 3-hidden-layer SIRENs: the shipped PDE files solve a one-layer output by least
#: squares instead, so these overrides restore the set-up the frequency comparison is about.
ADAM = ["training.output_layer=adam", "model.depth=3", "model.init=siren"]
PROBLEMS = {
    "wave_gaussian": [
        *ADAM,
        "pde.free_space=false",
        "evaluation.grid.x=96",
        "evaluation.grid.y=96",
        "reference.refine=1",
    ],
    "helmholtz_uniform": [
        *ADAM,
        "pde.near_field=null",
        "evaluation.grid.x=128",
        "evaluation.grid.y=128",
    ],
    "fit_image": [],
}


def run(name: str, extra: list[str], base: list[str], workdir: Path) -> tuple[float, float, str]:
    spec = load_problem(ROOT / "problems" / f"{name}.yaml", base + extra)
    out = workdir / f"{name}-{abs(hash(tuple(extra)))}"
    result = solve(spec, out, progress=False)
    metrics = compare_run(out, plots=False)
    if spec.kind == "fit":
        return metrics["psnr"], result.train.seconds, "PSNR dB (higher is better)"
    return metrics["rel_l2"], result.train.seconds, "rel L2 (lower is better)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--grid", type=float, nargs="+", default=[10, 30, 60, 90])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = [
        f"training.phases=[{{optimizer: adam, steps: {args.steps}, lr: 1.0e-4}}]",
        f"model.width={args.width}",
        "output.plots=false",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.problems:
            extra = PROBLEMS[name]
            spec = load_problem(ROOT / "problems" / f"{name}.yaml", base + extra)
            compiled = spec.family.compile(spec, make_generator(0))
            start = time.perf_counter()
            fresh, _ = fresh_for_problem(spec, compiled.in_axes, compiled.out_features)
            select_s = time.perf_counter() - start
            err30, t30, unit = run(name, extra, base, work)
            errf, tf, _ = run(name, extra + [f"model.omega_0={fresh.omega_0}"], base, work)
            errt, tt, _ = run(name, extra + ["model.init=tuner"], base, work)
            grid = {}
            grid_s = 0.0
            for w in args.grid:
                e, s, _ = run(name, extra + [f"model.omega_0={w}"], base, work)
                grid[w] = e
                grid_s += s
            better = max if unit.startswith("PSNR") else min
            best_w = better(grid, key=grid.get)
            rows.append(
                (
                    name,
                    unit,
                    err30,
                    fresh.omega_0,
                    errf,
                    select_s / tf,
                    errt,
                    best_w,
                    grid[best_w],
                    grid_s / tf,
                )
            )
            print(f"{name}: done", flush=True)
    print(f"\nstep budget {args.steps}, width {args.width}, grid search over {args.grid}\n")
    print(
        "| problem | metric | ω₀=30 | FreSh ω₀ | FreSh | FreSh selection / training | "
        "TUNER | grid-search best ω₀ | grid search | grid search cost / training |"
    )
    print("|" + "---|" * 10)
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.4g} | {r[3]:g} | {r[4]:.4g} | {100 * r[5]:.1f} % | "
            f"{r[6]:.4g} | {r[7]:g} | {r[8]:.4g} | {r[9]:.1f}x |"
        )


if __name__ == "__main__":
    main()
