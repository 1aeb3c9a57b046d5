"""Cost of one inversion step with ``training.output_layer: least_squares`` against Adam's.

    python benchmarks/output_layer_cost.py --steps 50 --threads 2
    python benchmarks/output_layer_cost.py --problem helmholtz_inverse_synthetic

Trains a shipped joint inversion (default: the cylinder's joint PINN) for
``--steps`` Adam steps with each setting, alternating the two settings in rounds so that both
see the same machine load, and prints the seconds per step of each and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pinnsiren.engine.sampling import make_generator
from pinnsiren.engine.train import Trainer
from pinnsiren.problem import load_problem
from pinnsiren.run.solve import build_model_for, hooks_for

ROOT = Path(__file__).resolve().parent.parent


def seconds_per_step(problem: str, output_layer: str, steps: int) -> float:
    spec = load_problem(
        ROOT / "problems" / f"{problem}.yaml",
        [f"training.output_layer={output_layer}", f"training.phases.0.steps={steps}"],
    )
    dtype = getattr(torch, spec.training.dtype)
    gen = make_generator(spec.training.seed)
    compiled = spec.family.compile(spec, gen).to(torch.device("cpu"), dtype)
    model = build_model_for(spec, compiled).to(dtype=dtype)
    hooks = hooks_for(spec, compiled, model, progress=False)
    trainer = Trainer(
        model, compiled.terms, spec.training.phases, generator=gen, hooks=hooks, progress=False
    )
    start = time.perf_counter()
    trainer.run()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="helmholtz_inverse_cylinder_joint")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {"adam": [], "least_squares": []}
    for _ in range(args.rounds):
        for setting in times:
            times[setting].append(seconds_per_step(args.problem, setting, args.steps))
    adam, lsq = min(times["adam"]), min(times["least_squares"])
    print(f"{args.problem}: {args.steps} steps x {args.rounds} rounds, best of each")
    print(f"  adam output layer          {adam:.3f} s/step")
    print(f"  least-squares output layer {lsq:.3f} s/step")
    print(f"  ratio                      {lsq / adam:.2f}x")


if __name__ == "__main__":
    main()
