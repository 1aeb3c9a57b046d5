"""``pinnsiren solve``: compile a problem, build the network, train it, write the run directory.

One path for every family: the family compiles the loss terms (and optional hooks, a composite
model, extra writers); the field network comes from the ``model`` group; the output layer is
solved by least squares when ``training.output_layer: least_squares``; the trainer runs the
phases; the family reads the solution off the trained model.

Run directory layout::

    problem.yaml     the resolved problem (all defaults)
    checkpoint.pt    trainer checkpoint (model, optimizer, position, history, RNG)
    model.pt         final network (see :mod:`pinnsiren.engine.models`)
    solution.h5      the fields on the evaluation grid (layout: pinnsiren.output.gridfile)
    history.csv      loss per term per step
    run.json         steps, loss evaluations, wall time, device, dtype, chosen ω₀, final
                     losses, the final least-squares solve (rows, columns, rank, residuals)
    *.png            solution maps, loss curves (and comparison figures after ``compare``)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.lstsq import OutputLayerSolve
from pinnsiren.engine.models import make_model, save_model
from pinnsiren.engine.sampling import FINAL_STEP, make_generator
from pinnsiren.engine.train import Trainer, TrainingDiverged, TrainResult, resolve_device
from pinnsiren.engine.tuner import TunerClamp
from pinnsiren.errors import UserError
from pinnsiren.families.base import CompiledProblem
from pinnsiren.output import plots
from pinnsiren.output.gridfile import write_grid_data, write_text
from pinnsiren.problem.spec import ProblemSpec
from pinnsiren.run.tune import fresh_for_problem

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_run_dir(spec: ProblemSpec) -> Path:
    return Path(spec.output.dir) if spec.output.dir else Path("runs") / spec.name


def resolve_omega_0(spec: ProblemSpec, in_axes: tuple[str, ...], out: int) -> tuple[float, Any]:
    """The configured ω₀, or the FreSh choice for ``omega_0: auto`` (with its table)."""
    if spec.model.omega_0 != "auto":
        return float(spec.model.omega_0), None
    if spec.model.kind != "siren":
        raise UserError(f"{spec.name}: model.omega_0: auto needs model.kind siren")
    result, seconds = fresh_for_problem(spec, in_axes, out)
    return float(result.omega_0), {**result.as_dict(), "seconds": seconds}


def build_model_for(
    spec: ProblemSpec, compiled: CompiledProblem, omega_0: float | None = None
) -> nn.Module:
    """The trained model of a compiled problem: the ``model`` group's field network in the
    training precision (so that a family's own initialisation is exact in it), wrapped by the
    family (e.g. with an inversion's velocity network)."""
    w0 = omega_0 if omega_0 is not None else float(spec.model.omega_0)
    try:
        field = make_model(
            spec.model, compiled.in_axes, compiled.out_features, w0, spec.training.seed, spec.domain
        )
    except UserError as exc:
        raise UserError(f"{spec.name}: {exc}") from None
    return compiled.assemble(field.to(dtype=DTYPES[spec.training.dtype]))


def least_squares_hook(
    spec: ProblemSpec, compiled: CompiledProblem, progress: bool
) -> OutputLayerSolve | None:
    """The output-layer solve of ``training.output_layer: least_squares``."""
    if spec.training.output_layer != "least_squares":
        return None
    ls = spec.training.least_squares
    return OutputLayerSolve(
        compiled.linear_terms,
        compiled.network,
        compiled.group,
        every_step=ls.every_step,
        final_step=FINAL_STEP,
        points=ls.points,
        rows_per_column=ls.rows_per_column,
        ridge=ls.ridge,
        solver=ls.solver,
        memory_gb=ls.memory_gb,
        tie=compiled.tie,
        progress=tqdm.write if progress else None,
    )


def hooks_for(
    spec: ProblemSpec, compiled: CompiledProblem, model: nn.Module, progress: bool
) -> list[StepHooks]:
    """The run's hooks in order: the least-squares solve, the family's, the TUNER clamp."""
    hooks: list[StepHooks] = []
    solver = least_squares_hook(spec, compiled, progress)
    if solver is not None:
        solver.freeze(model)
        hooks.append(solver)
    hooks += compiled.hooks
    if spec.model.init == "tuner":
        hooks.append(TunerClamp(spec.model.tuner.bound, compiled.network))
    return hooks


@dataclass
class SolveResult:
    run_dir: Path
    spec: ProblemSpec
    train: TrainResult
    omega_0: float
    seconds: float
    info: dict[str, Any]


def solve(
    spec: ProblemSpec,
    run_dir: Path | None = None,
    *,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> SolveResult:
    """Train the problem's network and write the run directory (see module docstring)."""
    start = time.perf_counter()
    run_dir = Path(run_dir) if run_dir else default_run_dir(spec)
    ckpt = run_dir / "checkpoint.pt"
    if resume and not ckpt.is_file():
        raise UserError(f"{run_dir}: no checkpoint.pt to resume from")
    dev = resolve_device(device or spec.training.device)
    dtype = DTYPES[spec.training.dtype]
    gen = make_generator(spec.training.seed)
    compiled = spec.family.compile(spec, gen).to(dev, dtype)
    omega_0, fresh = resolve_omega_0(spec, compiled.in_axes, compiled.out_features)
    model = build_model_for(spec, compiled, omega_0).to(device=dev, dtype=dtype)
    hooks = hooks_for(spec, compiled, model, progress)
    # the run directory appears only once the problem compiled (nothing half-written)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "problem.yaml", spec.to_yaml())
    if fresh is not None:
        write_text(run_dir / "fresh.json", json.dumps(fresh, indent=2))
    trainer = Trainer(
        model,
        compiled.terms,
        spec.training.phases,
        run_dir=run_dir,
        checkpoint_every=spec.training.checkpoint_every,
        generator=gen,
        l1=spec.loss.l1,
        balancing=spec.loss.balancing,
        balancing_every=spec.loss.balancing_every,
        clip_grad_norm=spec.training.clip_grad_norm,
        hooks=hooks,
        progress=progress,
    )
    if resume:
        trainer.load_checkpoint(ckpt)
    else:
        for hook in hooks:
            hook.pretrain(model, trainer)
    try:
        result = trainer.run()
    except TrainingDiverged as exc:
        raise UserError(f"{spec.name}: {exc}") from None
    for hook in hooks:
        hook.finish(model)
    model.eval()
    data = compiled.evaluate(model)
    write_grid_data(run_dir / "solution.h5", data)
    for writer in compiled.writers:
        writer(run_dir, model, data)
    save_model(
        run_dir / "model.pt",
        model,
        spec.model,
        compiled.in_axes,
        compiled.out_features,
        omega_0,
        compiled.composite,
    )
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {
        "problem": spec.name,
        "steps": result.steps,
        "loss_evaluations": result.evaluations,
        "train_seconds": round(result.seconds, 3),
        "total_seconds": round(seconds, 3),
        "device": str(dev),
        "dtype": spec.training.dtype,
        "omega_0": omega_0,
        "fresh_seconds": fresh["seconds"] if fresh else None,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "final_losses": result.final_losses,
    }
    for hook in hooks:
        info.update(hook.report())
    write_text(run_dir / "run.json", json.dumps(info, indent=2))
    if spec.output.plots:
        plots.plot_field(data, "u", run_dir / "solution.png", title=f"{spec.name}: PINN")
        if (run_dir / "history.csv").is_file():
            plots.plot_history(run_dir / "history.csv", run_dir / "loss.png")
    return SolveResult(run_dir, spec, result, omega_0, seconds, info)
