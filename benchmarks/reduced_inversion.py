"""A reduced-space inversion's velocity error against time, and what reusing L-BFGS's accepted
point saves, side by side in one run:

    python benchmarks/reduced_inversion.py --threads 1
    python benchmarks/reduced_inversion.py --steps 60 --every 10 --set training.seed=1

1. The shipped problem (default: the cylinder) is trained by the pinnsiren trainer for
   ``--steps`` L-BFGS steps; every ``--every`` steps it prints the elapsed time, the loss
   evaluations so far (each one FD factorisation and 2·S solves) and velocity_rel_l2 over the
   region enclosed by the sources and receivers (the metric of ``pinnsiren compare``).
2. Unless ``--skip-plain``, the same objective from the same initial network is minimised by a
   plain ``torch.optim.LBFGS`` loop with the trainer's settings (one iteration per ``step``
   call, strong-Wolfe line search), which evaluates again at the start of every step the point
   the last line search accepted; it prints the same columns, and the ratio of the two runs'
   evaluations and seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.sampling import make_generator
from pinnsiren.engine.train import Trainer, make_lbfgs
from pinnsiren.families.base import eval_grid, grid_points
from pinnsiren.families.helmholtz.fwi import velocity_scores
from pinnsiren.families.helmholtz.inversion import true_velocity_on
from pinnsiren.families.helmholtz.receivers import enclosed_region, receiver_data
from pinnsiren.families.metrics import region_mask
from pinnsiren.problem import load_problem
from pinnsiren.run.solve import build_model_for

ROOT = Path(__file__).resolve().parent.parent


class VelocityError:
    """velocity_rel_l2 of a model over the enclosed region of the evaluation grid."""

    def __init__(self, spec) -> None:
        grid = eval_grid(spec)
        self.nodes = torch.as_tensor(grid_points(grid, ("x", "y")), dtype=torch.float64)
        self.true = true_velocity_on(spec, grid)
        region = enclosed_region(receiver_data(spec)).as_dict()
        self.mask = region_mask(grid, ("x", "y"), region)

    def __call__(self, model: torch.nn.Module) -> float:
        with torch.no_grad():
            c = model.velocity(self.nodes)[:, 0].numpy().reshape(self.true.shape)
        return velocity_scores(c, self.true, self.mask, None)["velocity_rel_l2"]


def setup(spec):
    gen = make_generator(spec.training.seed)
    compiled = spec.family.compile(spec, gen).to(torch.device("cpu"), torch.float64)
    return compiled, build_model_for(spec, compiled).double(), gen


def trained(spec, steps: int, every: int, error: VelocityError) -> tuple[int, float]:
    compiled, model, gen = setup(spec)
    start = time.perf_counter()

    class Report(StepHooks):
        step = 0

        def after_step(self, m: torch.nn.Module) -> None:
            self.step += 1
            if self.step % every == 0:
                seconds = time.perf_counter() - start
                print(
                    f"| trainer | {self.step} | {seconds:.1f} s | {trainer.state.evaluations} | "
                    f"{error(m):.4f} |",
                    flush=True,
                )

    phase = spec.training.phases[0].model_copy(update={"steps": steps})
    trainer = Trainer(
        model, compiled.terms, [phase], generator=gen, hooks=[Report()], progress=False
    )
    trainer.run()
    return trainer.state.evaluations, time.perf_counter() - start


def plain(spec, steps: int, every: int, error: VelocityError) -> tuple[int, float]:
    compiled, model, _ = setup(spec)
    batches = {t.name: t.sample(0) for t in compiled.terms}
    opt = make_lbfgs([p for p in model.parameters() if p.requires_grad], spec.training.phases[0])
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        opt.zero_grad()
        total = sum(t.weight * t.loss(model, batches[t.name]) for t in compiled.terms)
        total.backward()
        return total

    start = time.perf_counter()
    for step in range(1, steps + 1):
        opt.step(closure)
        if step % every == 0:
            seconds = time.perf_counter() - start
            print(
                f"| plain L-BFGS | {step} | {seconds:.1f} s | {evaluations} | {error(model):.4f} |",
                flush=True,
            )
    return evaluations, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="helmholtz_inverse_cylinder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_problem(ROOT / "problems" / f"{args.problem}.yaml", args.overrides)
    error = VelocityError(spec)
    print(f"{args.problem}, torch threads: {torch.get_num_threads()}")
    print("| loop | step | time | loss evaluations | velocity_rel_l2 |\n|---|---|---|---|---|")
    evals, seconds = trained(spec, args.steps, args.every, error)
    if args.skip_plain:
        return
    plain_evals, plain_seconds = plain(spec, args.steps, args.every, error)
    print(
        f"plain / trainer: {plain_evals / evals:.2f}x the evaluations, "
        f"{plain_seconds / seconds:.2f}x the time"
    )


if __name__ == "__main__":
    main()
