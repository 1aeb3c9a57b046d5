"""``pinnsiren prune``: drop near-zero neurons of a trained run and measure what it costs.

Loads ``RUN_DIR/model.pt``, removes every hidden neuron whose incoming and outgoing weights
all lie below τ in magnitude (:func:`pinnsiren.sparsity.prune_neurons`), evaluates both
networks on the evaluation grid, compares each with the FD reference (or the fit target)
and writes the smaller network to ``RUN_DIR/model_pruned.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pinnsiren.errors import UserError
from pinnsiren.geometry import make_generator
from pinnsiren.io import atomic_path
from pinnsiren.pdes import compile_problem
from pinnsiren.solve import load_model
from pinnsiren.sparsity import prune_neurons
from pinnsiren.spec import load_problem


def prune_run(run_dir: Path, threshold: float) -> dict[str, Any]:
    if not threshold >= 0:
        raise UserError(f"--threshold must be >= 0, got {threshold}")
    if not (run_dir / "model.pt").is_file():
        raise UserError(f"{run_dir}: no model.pt (run pinnsiren solve first)")
    spec = load_problem(run_dir / "problem.yaml")
    compiled = compile_problem(spec, make_generator(spec.training.seed))
    model = load_model(run_dir / "model.pt").double()
    pruned, report = prune_neurons(model, threshold)
    from pinnsiren.compare import score_solution

    report["error_before"] = score_solution(spec, compiled.evaluate(model), run_dir)
    report["error_after"] = score_solution(spec, compiled.evaluate(pruned), run_dir)
    with atomic_path(run_dir / "model_pruned.pt") as tmp:
        torch.save(pruned, tmp)
    return report
