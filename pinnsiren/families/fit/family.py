"""Fit family: a network fitted to a 2-D signal from its values, gradient or Laplacian
(:mod:`.compile`); there is no finite-difference reference, the metrics score the fit against
its signal (:mod:`.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pinnsiren.families.base import CompiledProblem, Family, mesh_of
from pinnsiren.families.fit.compile import compile_fit, load_fit_signal
from pinnsiren.families.fit.metrics import plot_solution, solution_metrics
from pinnsiren.families.fit.schema import FitPDE
from pinnsiren.families.registry import register
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.groups import ProblemBase


class Fit(Family):
    kind = "fit"
    schema = FitPDE
    terms = ("values", "gradient", "laplacian", "tv", "hessian")
    planar = True
    space = (2, 2)
    boundaries = ("none",)
    has_reference = False
    reference_keys = ()
    default_grid = 256

    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        return compile_fit(spec, gen)

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The signal itself, on its pixel grid."""
        signal = load_fit_signal(spec)
        return signal.values, mesh_of(signal.grid)

    def metrics(
        self, spec: ProblemBase, solution: GridData, reference: GridData | None
    ) -> dict[str, Any]:
        return solution_metrics(spec.name, solution)

    def plot_comparison(
        self,
        spec: ProblemBase,
        solution: GridData,
        reference: GridData | None,
        metrics: Mapping[str, Any],
        path: Path,
    ) -> None:
        plot_solution(spec.name, solution, dict(metrics), path)

    def score(self, spec: ProblemBase, solution: GridData, reference: GridData | None) -> dict:
        m = solution_metrics(spec.name, solution)
        return {k: m[k] for k in ("rel_l2", "max_abs_error", "psnr")}


register(Fit())
