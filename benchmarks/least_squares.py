"""Adam-only training against least-squares output layers, per problem, side by side in one
run on one machine:

    python benchmarks/least_squares.py --threads 1
    python benchmarks/least_squares.py poisson_manufactured wave_1d --same-network-steps 300
    python benchmarks/least_squares.py wave_gaussian --skip-earlier --skip-same-network

For every problem three settings, each solved and compared exactly like
``benchmarks/accuracy.py``:

* ``adam, earlier network``: the configuration shipped before least squares (the network,
  formulation and Adam/L-BFGS phases of pinnsiren 0.1 for that problem), Adam only;
* ``adam, same network``: the network shipped now, every layer trained by Adam for
  ``--same-network-steps`` steps (lr 1e-4, cosine; fewer points per step than the solve for
  the largest problems, see ``SAME_POINTS``) — the same architecture, no solve;
* ``least squares``: the problem as shipped now (the output layer solved in float64).

Time is training plus the final solve (wall clock, measured inside the process that runs it: a
fresh one per measurement); the metric is rel L2 against the FD reference (and against the
exact solution where one is declared).
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import torch
from accuracy import measure, result_text

#: --set overrides that turn each shipped file back into its Adam-only configuration of
#: pinnsiren 0.1 (helmholtz_dirichlet and heat_2d are new: a comparable Adam set-up).
EARLIER = {
    "poisson_manufactured": [
        "model={kind: siren, width: 64, depth: 3, omega_0: 3.0}",
        "training={dtype: float64, phases: [{optimizer: adam, steps: 800, lr: 1.0e-3, "
        "schedule: cosine}, {optimizer: lbfgs, steps: 700}]}",
        "loss.weights={residual: 1.0, boundary: 2000.0}",
    ],
    "wave_1d": [
        "model={kind: siren, width: 64, depth: 3, omega_0: 5.0}",
        "training={phases: [{optimizer: adam, steps: 2000, lr: 5.0e-4, schedule: cosine}, "
        "{optimizer: lbfgs, steps: 300}]}",
    ],
    "helmholtz_dirichlet": [
        "model={kind: siren, width: 64, depth: 3, omega_0: 10.0}",
        "training={dtype: float64, phases: [{optimizer: adam, steps: 2000, lr: 1.0e-3, "
        "schedule: cosine}]}",
    ],
    "heat_2d": [
        "model={kind: siren, width: 64, depth: 3, omega_0: 5.0}",
        "training={phases: [{optimizer: adam, steps: 2000, lr: 5.0e-4, schedule: cosine}]}",
    ],
    "helmholtz_uniform": [
        "pde.near_field=null",
        "model={kind: siren, width: 128, depth: 3, omega_0: 30.0}",
        "training={phases: [{optimizer: adam, steps: 3500, lr: 2.0e-4, schedule: cosine}]}",
        "sampling.points={residual: 4096, source: 1024}",
    ],
    "helmholtz_square": [
        "model={kind: siren, width: 128, depth: 3, omega_0: 30.0}",
        "training={phases: [{optimizer: adam, steps: 3500, lr: 1.0e-4, schedule: cosine}]}",
        "sampling.points={residual: 2048, interior: 2048}",
    ],
    "helmholtz_circle": [
        "model={kind: siren, width: 128, depth: 3, omega_0: 30.0}",
        "training={phases: [{optimizer: adam, steps: 3500, lr: 1.0e-4, schedule: cosine}]}",
        "sampling.points={residual: 2048, interior: 2048}",
    ],
    "wave_gaussian": [
        "pde.free_space=false",
        "model={kind: siren, width: 128, depth: 3, omega_0: 30.0}",
        "training={phases: [{optimizer: adam, steps: 4000, lr: 1.0e-4, schedule: cosine}]}",
        "sampling={points: {residual: 4096, initial: 2048}, curriculum: {enabled: true, "
        "ramp_steps: 3000, initial_fraction: 0.1}}",
        "loss.weights={residual: 1.0, initial_value: 1000.0, initial_velocity: 10.0}",
    ],
}


#: points per Adam step for the same-network runs where the shipped solve's are too many
SAME_POINTS = {
    "helmholtz_square": "sampling.points={residual: 2048, interior: 2048, interface: 800}",
    "helmholtz_circle": "sampling.points={residual: 2048, interior: 2048, interface: 800}",
    "helmholtz_uniform": "sampling.points={residual: 4096, interior: 2048}",
    "wave_gaussian": "sampling.points={residual: 4096, initial: 2048}",
}


def same_network(name: str, steps: int) -> list[str]:
    phase = f"{{optimizer: adam, steps: {steps}, lr: 1.0e-4, schedule: cosine}}"
    extra = [SAME_POINTS[name]] if name in SAME_POINTS else []
    return ["training.output_layer=adam", f"training.phases=[{phase}]", *extra]


def measure_alone(name: str, overrides: list[str], out: Path, threads: int | None) -> dict:
    """``measure`` in this (fresh) process with ``threads`` torch threads."""
    if threads:
        torch.set_num_threads(threads)
    return measure(name, overrides, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problems", nargs="*", default=list(EARLIER))
    ap.add_argument("--same-network-steps", type=int, default=500)
    ap.add_argument("--skip-same-network", action="store_true")
    ap.add_argument("--skip-earlier", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="runs/bench_ls")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print("| problem | setting | steps | time (training + solve) | result |")
    print("|---|---|---|---|---|")
    # each measurement in a fresh process: what one problem's solve leaves allocated (a 13 GB
    # QR) must not add to the next one's (one process for all was killed at 23.7 GB)
    spawn = multiprocessing.get_context("spawn")
    for name in args.problems:
        settings = [] if args.skip_earlier else [("adam, earlier network", EARLIER[name])]
        if not args.skip_same_network:
            settings.append(("adam, same network", same_network(name, args.same_network_steps)))
        settings.append(("least squares", []))
        for label, overrides in settings:
            out = Path(args.out) / name / label.replace(", ", "_").replace(" ", "_")
            with spawn.Pool(1) as pool:
                m = pool.apply(measure_alone, (name, overrides, out, args.threads))
            print(
                f"| {name} | {label} | {m['steps']} | {m['seconds']:.3g} s | {result_text(m)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
