"""Typed callbacks around training: what a family or a solver adds to the plain loop.

Every method is optional (a no-op here); the trainer calls the hooks in order:

* ``pretrain(model, trainer)`` once before a fresh run (not on ``--resume``);
* ``before_step(model, batches, weights)`` after a step's points are drawn, before its loss is
  evaluated (and before a balancing step measures the terms), with the terms' weights λ_k w_k
  as they stand; it may return residuals that replace ``term.residual(model, batch)`` for this
  step (e.g. those of an output layer solved on exactly these points);
* ``after_step(model)`` after the optimizer step (e.g. to clamp weights);
* ``finish(model)`` once after the last phase (e.g. a final least-squares solve);
* ``report()`` what the hook measured, for ``run.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class StepHooks:
    """No-op base class of training hooks (see module docstring)."""

    def pretrain(self, model: nn.Module, trainer: Any) -> None:
        """Before the first step of a fresh run; ``trainer`` is the run's
        :class:`~pinnsiren.engine.train.Trainer` (its hooks, progress setting, generator)."""

    def before_step(
        self, model: nn.Module, batches: Mapping[str, Any], weights: Mapping[str, float]
    ) -> dict[str, Tensor]:
        """Before the step's loss; returns residual overrides by term name."""
        return {}

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step."""

    def finish(self, model: nn.Module) -> None:
        """After the last phase."""

    def report(self) -> dict[str, Any]:
        """Measurements for ``run.json`` (empty by default)."""
        return {}
