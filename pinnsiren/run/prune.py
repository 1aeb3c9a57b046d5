"""``pinnsiren prune``: drop near-zero neurons of a trained run and measure what it costs.

Loads ``RUN_DIR/model.pt``, removes every hidden neuron whose incoming and outgoing weights
all lie below τ in magnitude (:func:`pinnsiren.engine.sparsity.prune_neurons`), evaluates both
networks on the evaluation grid, scores each with the family's metric (against the FD
reference, or the fit target) and writes the smaller network to ``RUN_DIR/model_pruned.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pinnsiren.engine.models import load_model
from pinnsiren.engine.sampling import make_generator
from pinnsiren.engine.sparsity import prune_neurons
from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import atomic_path
from pinnsiren.problem.loading import load_problem
from pinnsiren.run.compare import score_solution


def prune_run(run_dir: Path, threshold: float) -> dict[str, Any]:
    if not threshold >= 0:
        raise UserError(f"--threshold must be >= 0, got {threshold}")
    if not (run_dir / "model.pt").is_file():
        raise UserError(f"{run_dir}: no model.pt (run pinnsiren solve first)")
    spec = load_problem(run_dir / "problem.yaml")
    compiled = spec.family.compile(spec, make_generator(spec.training.seed))
    if compiled.composite:
        raise UserError(f"{run_dir}: prune works on a single network, not an inversion's model")
    model = load_model(run_dir / "model.pt").double()
    pruned, report = prune_neurons(model, threshold)
    report["error_before"] = score_solution(spec, compiled.evaluate(model), run_dir)
    report["error_after"] = score_solution(spec, compiled.evaluate(pruned), run_dir)
    with atomic_path(run_dir / "model_pruned.pt") as tmp:
        torch.save(pruned, tmp)
    return report
