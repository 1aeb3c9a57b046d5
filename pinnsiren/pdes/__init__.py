"""PDE families: each module turns its spec into named loss terms; nothing else knows the PDE."""

from __future__ import annotations

import torch

from pinnsiren.pdes.base import CompiledProblem
from pinnsiren.spec import ProblemSpec


def compile_problem(spec: ProblemSpec, gen: torch.Generator) -> CompiledProblem:
    """Loss terms and solution read-out for the problem's family."""
    if spec.kind == "poisson":
        from pinnsiren.pdes.poisson import compile_poisson

        return compile_poisson(spec, gen)
    if spec.kind == "helmholtz":
        if spec.is_inversion:
            from pinnsiren.pdes.inversion import compile_inversion

            return compile_inversion(spec, gen)
        from pinnsiren.pdes.helmholtz import compile_helmholtz

        return compile_helmholtz(spec, gen)
    if spec.kind == "wave":
        from pinnsiren.pdes.wave import compile_wave

        return compile_wave(spec, gen)
    if spec.kind == "fit":
        from pinnsiren.pdes.fit import compile_fit

        return compile_fit(spec, gen)
    raise ValueError(f"unknown PDE kind {spec.kind!r}")
