"""Command-line front end: parse arguments, call the library, map user errors to exit 2.

Every error a user can cause (bad YAML, missing file, impossible grid, unstable step)
is printed as one line on stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pinnsiren import __version__
from pinnsiren.errors import UserError
from pinnsiren.spec import SpecError, load_problem


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
