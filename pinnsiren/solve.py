"""``pinnsiren solve``: compile a problem, build the network, train it, write the run directory.

Run directory layout::

    problem.yaml     the resolved problem (all defaults)
    checkpoint.pt    trainer checkpoint (model, optimizer, position, history, RNG)
    model.pt         final network: {"kind", "in_axes", "out_features", "options", "state_dict"}
    solution.h5      the fields on the evaluation grid (layout: pinnsiren.io)
    history.csv      loss per term per step
    run.json         steps, wall time, device, dtype, chosen ω₀, final losses
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

from pinnsiren.errors import UserError
from pinnsiren.geometry import make_generator
from pinnsiren.io import write_grid_data, write_text
from pinnsiren.nets import build_model
from pinnsiren.pdes import compile_problem
from pinnsiren.pdes.base import CompiledProblem
from pinnsiren.spec import ModelSpec, ProblemSpec
from pinnsiren.train import Trainer, TrainingDiverged, TrainResult, resolve_device

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_run_dir(spec: ProblemSpec) -> Path:
    return Path(spec.output.dir) if spec.output.dir else Path("runs") / spec.name


def model_options(model: ModelSpec, in_axes: tuple[str, ...], omega_0: float) -> dict[str, Any]:
    """Constructor keywords of the network for the YAML ``model`` section."""
    options: dict[str, Any] = {"width": model.width, "depth": model.depth}
    if model.input_scale:
        options["input_scale"] = [float(model.input_scale.get(a, 1.0)) for a in in_axes]
    if model.kind == "siren":
        options.update(omega_0=float(omega_0), hidden_omega=model.hidden_omega)
    elif model.kind == "relu_pe":
        options["num_frequencies"] = model.num_frequencies
    return options


def make_model(
    spec: ProblemSpec, in_axes: tuple[str, ...], out_features: int, omega_0: float, seed: int
) -> nn.Module:
    """The network of the YAML ``model`` section, seeded, with TUNER init when asked."""
    torch.manual_seed(seed)
    model = build_model(
        spec.model.kind, len(in_axes), out_features, **model_options(spec.model, in_axes, omega_0)
    )
    if spec.model.init == "tuner":
        from pinnsiren.tuner import tuner_init_

        bounds = [tuple(spec.domain[a]) for a in in_axes]
        t = spec.model.tuner
        low = t.low_band
        if low == "auto":  # the largest lattice band filling at most half the width
            d = len(in_axes)
            low = 1
            while ((2 * low + 3) ** d - 1) // 2 <= spec.model.width // 2:
                low += 1
        try:
            tuner_init_(
                model, bounds, low, max(t.band_limit, low), seed, period_factor=t.period_factor
            )
        except ValueError as exc:
            raise UserError(f"{spec.name}: model.tuner: {exc}") from None
    return model


def resolve_omega_0(spec: ProblemSpec, in_axes: tuple[str, ...], out: int) -> tuple[float, Any]:
    """The configured ω₀, or the FreSh choice for ``omega_0: auto`` (with its table)."""
    if spec.model.omega_0 != "auto":
        return float(spec.model.omega_0), None
    if spec.model.kind != "siren":
        raise UserError(f"{spec.name}: model.omega_0: auto needs model.kind siren")
    from pinnsiren.autofreq import fresh_for_problem

    result, seconds = fresh_for_problem(spec, in_axes, out)
    return float(result.omega_0), {**result.as_dict(), "seconds": seconds}


@dataclass
class SolveResult:
    run_dir: Path
    spec: ProblemSpec
    train: TrainResult
    omega_0: float
    seconds: float


def save_model(
    path: Path, model: nn.Module, spec: ProblemSpec, compiled: CompiledProblem, omega_0: float
) -> None:
    from pinnsiren.io import atomic_path

    if "model" in compiled.extras:  # a composite network (inversion): keep the whole module
        with atomic_path(path) as tmp:
            torch.save({"module": model.cpu()}, tmp)
        return
    payload = {
        "kind": spec.model.kind,
        "in_axes": list(compiled.in_axes),
        "out_features": compiled.out_features,
        "options": model_options(spec.model, compiled.in_axes, omega_0),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path) -> nn.Module:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if "module" in payload:
        return payload["module"]
    model = build_model(
        payload["kind"], len(payload["in_axes"]), payload["out_features"], **payload["options"]
    )
    model.load_state_dict(payload["state_dict"])
    return model


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
    seed = spec.training.seed
    gen = make_generator(seed)
    compiled = compile_problem(spec, gen).to(dev, dtype)
    omega_0, fresh = resolve_omega_0(spec, compiled.in_axes, compiled.out_features)
    # the run directory appears only once the problem compiled (nothing half-written)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "problem.yaml", spec.to_yaml())
    if fresh is not None:
        write_text(run_dir / "fresh.json", json.dumps(fresh, indent=2))
    model = compiled.extras.get("model") or make_model(
        spec, compiled.in_axes, compiled.out_features, omega_0, seed
    )
    model = model.to(device=dev, dtype=dtype)
    after_step = None
    if spec.model.init == "tuner":
        from pinnsiren.tuner import TunerClamp

        after_step = TunerClamp(spec.model.tuner.bound)
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
        after_step=after_step,
        before_step=compiled.extras.get("before_step"),
        progress=progress,
    )
    if resume:
        trainer.load_checkpoint(ckpt)
    elif "pretrain" in compiled.extras:
        compiled.extras["pretrain"](model, trainer)
    try:
        result = trainer.run()
    except TrainingDiverged as exc:
        raise UserError(f"{spec.name}: {exc}") from None
    if compiled.extras.get("finish") is not None:
        compiled.extras["finish"](model)
    model.eval()
    data = compiled.evaluate(model)
    write_grid_data(run_dir / "solution.h5", data)
    save_model(run_dir / "model.pt", model, spec, compiled, omega_0)
    for writer in compiled.extras.get("writers", {}).values():
        writer(run_dir, model)
    seconds = time.perf_counter() - start
    info = {
        "problem": spec.name,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 3),
        "total_seconds": round(seconds, 3),
        "device": str(dev),
        "dtype": spec.training.dtype,
        "omega_0": omega_0,
        "fresh_seconds": fresh["seconds"] if fresh else None,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "final_losses": result.final_losses,
    }
    write_text(run_dir / "run.json", json.dumps(info, indent=2))
    if spec.output.plots:
        from pinnsiren import plots

        plots.plot_field(data, "u", run_dir / "solution.png", title=f"{spec.name}: PINN")
        if (run_dir / "history.csv").is_file():
            plots.plot_history(run_dir / "history.csv", run_dir / "loss.png")
    return SolveResult(run_dir, spec, result, omega_0, seconds)
