r"""Benchmark: Poisson image reconstruction, the SIREN paper's table on our data.

Usage::

    python benchmarks/fit.py                          # 128^2, 1000 steps, all 6 cases
    python benchmarks/fit.py --steps 20 --size 32     # smoke test
    python benchmarks/fit.py --derivatives spectral   # exact FFT targets instead of Sobel/5-point
    python benchmarks/fit.py --models siren tanh --supervision gradient --json out.json

For every model kind (``siren``, ``tanh``, ``relu_pe``) and every supervision (``gradient``:
:math:`\nabla u = G_h s`, ``laplacian``: :math:`\Delta u = \Delta_h s`) one network is trained on
Grace Hopper (``problems/poisson_image_gradient.yaml`` with overrides) for the same step budget
and scored by :mod:`pinnsiren.fit_metrics`:

* ``PSNR u``: the image, after the gauge fix (a constant for gradient supervision, harmonic
  polynomials of degree :math:`\le 2` for the Laplacian);
* ``PSNR grad``/``PSNR lap``: Sobel gradient / five-point Laplacian of the reconstruction
  against those of the image (same operator both sides).

(Sitzmann et al. 2020, Sec. 3.1: SIREN, tanh and ReLU P.E. MLPs, each fitted from the gradient
and from the Laplacian of an image, 10k steps at 256^2 in the paper.)  Every case uses the same
width, depth, learning rate, batch and seed; the cases run one after another in this process,
so wall times are comparable within one run only (the machine may be shared).

With the default Sobel/five-point targets the image PSNR is capped by the targets' own low-pass
(a smooth network matching them exactly: about 27 dB from the gradient and 34 dB from the
Laplacian for Grace Hopper at 128^2, 29.5 / 36.4 dB at 256^2); ``--derivatives spectral``
removes that cap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pinnsiren.engine.sampling import make_generator
from pinnsiren.engine.train import Trainer
from pinnsiren.families.fit.compile import DEFAULT_BATCH, gauge_of
from pinnsiren.families.fit.metrics import fit_metrics
from pinnsiren.problem import load_problem
from pinnsiren.run.solve import build_model_for

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "problems" / "poisson_image_gradient.yaml"
MODELS = ("siren", "tanh", "relu_pe")
SUPERVISIONS = ("gradient", "laplacian")


def run_case(model: str, supervision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (model, supervision) case and return its metrics."""
    batch = args.batch or min(DEFAULT_BATCH, args.size * args.size)
    overrides = [
        f"pde.supervision={supervision}",
        f"pde.derivatives={args.derivatives}",
        f"pde.signal.size={args.size}",
        f"evaluation.grid.x={args.size}",
        f"evaluation.grid.y={args.size}",
        f"model.kind={model}",
        f"model.width={args.width}",
        f"model.depth={args.depth}",
        f"model.omega_0={args.omega_0}",
        f"training.seed={args.seed}",
        f"training.phases.0.steps={args.steps}",
        f"training.phases.0.lr={args.lr}",
        f"sampling.points={{{supervision}: {batch}}}",
        f"loss.weights={{{supervision}: 1.0}}",
    ]
    spec = load_problem(PROBLEM, overrides)
    gen = make_generator(args.seed)
    compiled = spec.family.compile(spec, gen)
    net = build_model_for(spec, compiled, float(args.omega_0))
    trainer = Trainer(net, compiled.terms, spec.training.phases, generator=gen, progress=False)
    start = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - start
    net.eval()
    data = compiled.evaluate(net)
    f = data.fields
    network = {k: f[k] for k in ("u_x", "u_y", "lap_u")}
    metrics = fit_metrics(
        f["u"],
        f["target"],
        data.grid["x"],
        data.grid["y"],
        gauge=gauge_of(spec),
        network=network,
    )
    return {
        "model": model,
        "supervision": supervision,
        "steps": result.steps,
        "seconds": seconds,
        "final_loss": result.final_losses.get(supervision),
        **{k: v for k, v in metrics.items() if k.startswith("psnr") or k == "gauge"},
    }


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.2f}"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"Poisson image reconstruction, Grace Hopper {args.size}x{args.size}, {args.steps} Adam "
        f"steps (lr {args.lr}), width {args.width}, depth {args.depth}, omega_0 {args.omega_0} "
        f"(siren), {args.derivatives} targets, PSNR in dB\n\n"
        "| model | supervised on | gauge | PSNR u | PSNR grad | PSNR lap | final loss | s |\n"
        "|---|---|---|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['supervision']} | {r['gauge']} | {_fmt(r['psnr'])} | "
        f"{_fmt(r['psnr_gradient'])} | {_fmt(r['psnr_laplacian'])} | "
        f"{r['final_loss']:.3g} | {r['seconds']:.1f} |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="Adam steps per case")
    p.add_argument("--size", type=int, default=128, help="image size n (n x n pixels)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--supervision", nargs="+", choices=SUPERVISIONS, default=list(SUPERVISIONS))
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3, help="hidden layers")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--omega-0", dest="omega_0", type=float, default=30.0)
    p.add_argument("--batch", type=int, default=0, help="pixels per step (0: min(16384, n^2))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--derivatives",
        choices=("sobel", "spectral"),
        default="sobel",
        help="gradient/Laplacian targets: Sobel + 5-point (the paper's) or exact FFT",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.size < 4 or args.steps < 1:
        p.error("--size must be >= 4 and --steps >= 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# load average at start: {os.getloadavg()[0]:.2f}, torch threads "
        f"{torch.get_num_threads()}",
        file=sys.stderr,
    )
    rows = []
    for model in args.models:
        for sup in args.supervision:
            row = run_case(model, sup, args)
            print(
                f"# {model:8s} {sup:9s} psnr={_fmt(row['psnr'])} dB in {row['seconds']:.1f} s",
                file=sys.stderr,
            )
            rows.append(row)
    print(markdown(rows, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
