"""Command-line front end: parse arguments, call the library, map user errors to exit 2.

Every error a user can cause (bad YAML, missing file, impossible grid, unstable step)
is printed as one line on stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pinnsiren import __version__
from pinnsiren.engine.sampling import make_generator
from pinnsiren.engine.train import TrainingInterrupted
from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import write_grid_data
from pinnsiren.problem.loading import load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.prune import prune_run
from pinnsiren.run.reference import compute_reference
from pinnsiren.run.solve import default_run_dir, solve
from pinnsiren.run.tune import fresh_for_problem
from pinnsiren.schema.types import SpecError


def _add_problem(p: argparse.ArgumentParser) -> None:
    p.add_argument("problem", help="problem YAML file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of the problem (repeatable), e.g. --set training.phases.0.steps=100",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem, args.overrides)
    sys.stdout.write(f"# {args.problem}: valid {spec.kind} problem, axes {', '.join(spec.axes)}\n")
    sys.stdout.write(spec.to_yaml())
    return 0


def _print_metrics(metrics: dict) -> None:
    keys = (
        "rel_l2",
        "max_abs_error",
        "psnr",
        "psnr_heldout",
        "velocity_rel_l2",
        "fwi_velocity_rel_l2",
        "data_misfit",
    )
    parts = [f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), float)]
    if "pinn_vs_exact" in metrics:
        parts.append(f"pinn_vs_exact_rel_l2={metrics['pinn_vs_exact']['rel_l2']:.4g}")
        parts.append(f"fd_vs_exact_rel_l2={metrics['reference_vs_exact']['rel_l2']:.4g}")
    print("metrics: " + " ".join(parts))


def cmd_solve(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem, args.overrides)
    try:
        result = solve(
            spec, args.output, device=args.device, resume=args.resume, progress=not args.quiet
        )
    except TrainingInterrupted as exc:
        print(f"pinnsiren: {exc}; continue with --resume", file=sys.stderr)
        return 130
    solved = "least_squares" in result.info
    extra = (
        f" + least-squares solve {result.info['least_squares']['seconds']:.1f} s" if solved else ""
    )
    print(
        f"solved {spec.name}: {result.train.steps} steps in {result.train.seconds:.1f} s{extra} "
        f"-> {result.run_dir}"
    )
    if args.compare:
        metrics = compare_run(result.run_dir)
        _print_metrics(metrics)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem, args.overrides)
    out = Path(args.output) if args.output else default_run_dir(spec) / "reference.h5"
    data = compute_reference(spec)
    write_grid_data(out, data)
    print(f"reference for {spec.name} in {data.attrs['seconds']:.1f} s -> {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    metrics = compare_run(Path(args.run_dir), Path(args.reference) if args.reference else None)
    _print_metrics(metrics)
    print(f"wrote {Path(args.run_dir) / 'metrics.json'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem, args.overrides)
    if spec.model.kind != "siren":
        raise SpecError(args.problem, "model.kind", "tune needs a siren model")
    compiled = spec.family.compile(spec, make_generator(spec.training.seed))
    result, seconds = fresh_for_problem(spec, compiled.in_axes, compiled.out_features)
    print(
        f"FreSh for {spec.name}: spectrum size {result.size}, "
        f"{spec.model.fresh.inits} initialisations per candidate, {seconds:.1f} s"
    )
    print(result.format_table())
    print(f"chosen omega_0 = {result.omega_0:g}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    report = prune_run(Path(args.run_dir), args.threshold)
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinnsiren",
        description="Physics-informed PDE solving with SIREN networks, checked against "
        "finite-difference references.",
    )
    parser.add_argument("--version", action="version", version=f"pinnsiren {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a problem file and print it with all defaults")
    _add_problem(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "solve", aliases=["invert"], help="train a SIREN on the problem and write the run directory"
    )
    _add_problem(p)
    p.add_argument("-o", "--output", help="run directory (default: output.dir or runs/NAME)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="training device (default: training.device, auto = CUDA if available)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--compare", action="store_true", help="then compare with the FD reference")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("reference", help="solve the problem by finite differences")
    _add_problem(p)
    p.add_argument("-o", "--output", help="HDF5 file (default: RUN_DIR/reference.h5)")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("compare", help="errors of a run against the FD reference")
    p.add_argument("run_dir", help="run directory written by solve")
    p.add_argument("--reference", help="reference HDF5 (default: computed or reused)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tune", help="choose omega_0 by FreSh and print the table")
    _add_problem(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("prune", help="remove near-zero neurons of a trained run")
    p.add_argument("run_dir", help="run directory written by solve")
    p.add_argument("--threshold", type=float, required=True, help="weight magnitude tau")
    p.set_defaults(func=cmd_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SpecError, UserError) as exc:
        print(f"pinnsiren: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pinnsiren: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
