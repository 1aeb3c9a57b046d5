"""The training loop: optimizer phases, weighted loss terms, checkpoints, progress, NaN guard.

A problem hands the trainer a list of :class:`LossTerm`. At every step each term draws its
points (``sample(step)``) and returns its mean squared residual (``loss(model, batch)``);
the trainer minimises

    L = Σ_k λ_k w_k L_k  (+ α ‖W‖₁ when ``loss.l1`` = α > 0)

where ``w_k`` is the YAML weight (``loss.weights``, overridden by the running phase's
``weights``) and ``λ_k`` the automatic balance factor (1 unless
``loss.balancing: grad_norm``, the learning-rate annealing of Wang, Teng & Perdikaris 2021:
every ``balancing_every`` steps λ̂_k = max|∇_θ L_ref| / mean|∇_θ (w_k L_k)| with L_ref the
first term, smoothed as λ_k ← 0.9 λ_k + 0.1 λ̂_k).

Phases run in order: Adam (constant, cosine or exponential learning-rate schedule,
fresh points every step; with ``clip_grad_norm`` = G the gradient is rescaled to global
norm ≤ G before the step and its norm before clipping is logged as ``grad_norm``) and
L-BFGS (strong-Wolfe line search, points fixed for the phase since the line search needs a
deterministic objective; a step that starts where the last line search ended reuses that
evaluation instead of repeating it, which halves the cost of an expensive objective such as
a reduced inversion's FD solves). ``state.evaluations`` counts the loss evaluations made.

Hooks (:class:`pinnsiren.engine.hooks.StepHooks`, in order): ``before_step`` runs after a
step's points are drawn and before its loss is evaluated (and before a balancing step
updates λ_k) and may return residuals that replace the terms' own for this step (e.g. those
of an output layer solved on exactly these points); ``after_step`` runs after the optimizer
step (e.g. to clamp weights). ``pretrain`` and ``finish`` are called by the run around
:meth:`Trainer.run`.

Checkpoints (``checkpoint.pt``) hold the model, optimizer, balance factors, history, the
sampler generator and the position (phase, step); ``resume=True`` continues from them.
Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`; a non-finite loss
raises :class:`TrainingDiverged` and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.sparsity import l1_penalty
from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import atomic_path, write_text
from pinnsiren.schema.groups import PhaseSpec

DEFAULT_LR = {"adam": 1e-4, "lbfgs": 1.0}


def phase_lr(phase: PhaseSpec) -> float:
    """The phase's learning rate, or its optimiser's default (``DEFAULT_LR``)."""
    return phase.lr if phase.lr is not None else DEFAULT_LR[phase.optimizer]


def make_lbfgs(params: list[Tensor], phase: PhaseSpec) -> torch.optim.LBFGS:
    """The trainer's L-BFGS: one iteration per ``step`` call (one training step), at most 25
    evaluations in its strong-Wolfe line search, 50 curvature pairs."""
    return torch.optim.LBFGS(
        params,
        lr=phase_lr(phase),
        max_iter=1,
        max_eval=25,
        history_size=50,
        line_search_fn="strong_wolfe",
    )


class LossTerm(Protocol):
    """One named term of the loss: a sampler and a mean squared residual
    (:class:`pinnsiren.engine.terms.Term`; ``loss_of(r, batch)`` is needed only for terms
    whose residual a hook overrides)."""

    name: str
    weight: float

    def sample(self, step: int) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> Tensor: ...


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class _LineSearchFailed(RuntimeError):
    """A non-finite loss at an L-BFGS trial point (parameters already restored)."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training; a checkpoint was saved."""


@dataclass
class _Evaluation:
    """The last loss evaluation of an L-BFGS phase: parameters, gradients, loss, record."""

    params: list[Tensor]
    grads: list[Tensor | None]
    total: Tensor
    record: dict[str, Tensor]

    def matches(self, params: Sequence[Tensor]) -> bool:
        return len(params) == len(self.params) and all(
            torch.equal(p, q) for p, q in zip(params, self.params)
        )


@dataclass
class TrainResult:
    steps: int
    seconds: float
    history: list[dict[str, float]]
    final_losses: dict[str, float]
    evaluations: int = 0


@dataclass
class TrainerState:
    phase: int = 0
    step_in_phase: int = 0
    global_step: int = 0
    balance: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed: float = 0.0
    evaluations: int = 0


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available (use cpu or auto)")
    return torch.device(name)


def _lr_at(phase: PhaseSpec, step: int) -> float:
    lr0 = phase_lr(phase)
    frac = step / max(phase.steps - 1, 1)
    if phase.schedule == "cosine":
        lo = lr0 * phase.final_lr_fraction
        return lo + 0.5 * (lr0 - lo) * (1 + math.cos(math.pi * frac))
    if phase.schedule == "exponential":
        return lr0 * phase.final_lr_fraction**frac
    return lr0


class Trainer:
    """Runs the optimizer phases on a model and a list of loss terms."""

    def __init__(
        self,
        model: nn.Module,
        terms: Sequence[LossTerm],
        phases: Sequence[PhaseSpec],
        *,
        run_dir: Path | None = None,
        checkpoint_every: int = 500,
        generator: torch.Generator | None = None,
        l1: float = 0.0,
        balancing: str = "none",
        balancing_every: int = 100,
        clip_grad_norm: float | None = None,
        hooks: Sequence[StepHooks] = (),
        progress: bool = True,
        description: str = "train",
    ) -> None:
        self.model = model
        self.terms = list(terms)
        self.phases = list(phases)
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.generator = generator
        self.l1 = l1
        self.balancing = balancing
        self.balancing_every = balancing_every
        self.clip_grad_norm = clip_grad_norm
        self.hooks = list(hooks)
        self.progress = progress
        self.description = description
        self.state = TrainerState(balance={t.name: 1.0 for t in self.terms})
        self.optimizer: torch.optim.Optimizer | None = None
        self._last: _Evaluation | None = None

    # ------------------------------------------------------------------ optimizers
    def _params(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _param_groups(self) -> list[dict[str, Any]]:
        """Adam groups: the model's own (``param_groups()``, each with an ``lr_factor``) or one."""
        groups = getattr(self.model, "param_groups", None)
        if groups is None:
            return [{"params": self._params(), "lr_factor": 1.0}]
        return [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups()]

    def _make_optimizer(self, phase: PhaseSpec) -> torch.optim.Optimizer:
        if phase.optimizer == "adam":
            return torch.optim.Adam(self._param_groups(), lr=phase_lr(phase))
        return make_lbfgs(self._params(), phase)

    # ------------------------------------------------------------------ losses
    def _losses(
        self, batches: dict[str, Any], overrides: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Each term's loss; a term with a residual in ``overrides`` is scored on that."""
        out = {}
        for t in self.terms:
            r = overrides.get(t.name) if overrides else None
            batch = batches[t.name]
            out[t.name] = t.loss(self.model, batch) if r is None else t.loss_of(r, batch)
        return out

    @staticmethod
    def _weight(term: LossTerm, phase: PhaseSpec) -> float:
        """w_k for this phase: the phase's override of the term (or of the term it follows)."""
        if term.name in phase.weights:
            return phase.weights[term.name]
        follows = getattr(term, "follows", None)
        if follows is not None and follows in phase.weights:
            return phase.weights[follows]
        return term.weight

    def _weights(self, phase: PhaseSpec) -> dict[str, float]:
        """λ_k w_k of every term, as they stand."""
        return {t.name: self.state.balance[t.name] * self._weight(t, phase) for t in self.terms}

    def _total(self, losses: dict[str, Tensor], phase: PhaseSpec) -> Tensor:
        weights = self._weights(phase)
        total = sum(weights[t.name] * losses[t.name] for t in self.terms)
        if self.l1 > 0:
            total = total + self.l1 * l1_penalty(self.model)
        return total  # type: ignore[return-value]

    def _rebalance(self, losses: dict[str, Tensor], phase: PhaseSpec) -> None:
        params = self._params()
        grads = {}
        for t in self.terms:
            g = torch.autograd.grad(
                self._weight(t, phase) * losses[t.name],
                params,
                retain_graph=True,
                allow_unused=True,
            )
            flat = torch.cat([x.abs().flatten() for x in g if x is not None])
            grads[t.name] = flat
        ref = self.terms[0].name
        top = grads[ref].max().item()
        for t in self.terms[1:]:
            mean = grads[t.name].mean().item()
            if mean > 0 and math.isfinite(top / mean):
                new = top / mean
                self.state.balance[t.name] = 0.9 * self.state.balance[t.name] + 0.1 * new

    def _sample(self, step: int) -> dict[str, Any]:
        return {t.name: t.sample(step) for t in self.terms}

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir else None

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "state": self.state.__dict__,
            "generator": self.generator.get_state() if self.generator is not None else None,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(payload, tmp)
        self.write_history()

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.state = TrainerState(**payload["state"])
        if payload.get("generator") is not None and self.generator is not None:
            self.generator.set_state(payload["generator"])
        self._pending_optimizer = payload.get("optimizer")
        return payload

    def write_history(self) -> None:
        if self.run_dir is None or not self.state.history:
            return
        buf = io.StringIO()
        names = list(dict.fromkeys(k for row in self.state.history for k in row))
        writer = csv.DictWriter(buf, fieldnames=names)
        writer.writeheader()
        writer.writerows(self.state.history)
        write_text(self.run_dir / "history.csv", buf.getvalue())

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        total_steps = sum(p.steps for p in self.phases)
        start = time.perf_counter() - self.state.elapsed
        bar = tqdm(
            total=total_steps,
            initial=self.state.global_step,
            disable=not self.progress or total_steps == 0,
            dynamic_ncols=True,
            desc=self.description,
            unit="step",
        )
        pending = getattr(self, "_pending_optimizer", None)
        last: dict[str, float] = {}
        try:
            for p_index in range(self.state.phase, len(self.phases)):
                phase = self.phases[p_index]
                if p_index != self.state.phase:
                    self.state.phase, self.state.step_in_phase = p_index, 0
                self.optimizer = self._make_optimizer(phase)
                if pending is not None:
                    try:
                        self.optimizer.load_state_dict(pending)
                    except (ValueError, KeyError):
                        pass  # a changed phase layout: start the optimizer afresh
                    pending = None
                fixed = self._sample(self.state.global_step) if phase.optimizer == "lbfgs" else None
                self._last = None
                while self.state.step_in_phase < phase.steps:
                    try:
                        last = self._step(phase, fixed)
                    except _LineSearchFailed:
                        # an L-BFGS trial point overflowed: keep the last good parameters and
                        # end the phase (the loss itself had not diverged)
                        bar.write(
                            f"L-BFGS line search hit a non-finite loss at step "
                            f"{self.state.global_step}; parameters restored, phase ended"
                        )
                        bar.update(phase.steps - self.state.step_in_phase)
                        self.state.step_in_phase = phase.steps
                        break
                    self.state.step_in_phase += 1
                    self.state.global_step += 1
                    self.state.elapsed = time.perf_counter() - start
                    bar.update(1)
                    if self.state.global_step % 10 == 0 or self.state.step_in_phase == phase.steps:
                        bar.set_postfix({k: f"{v:.2e}" for k, v in last.items() if k != "lr"})
                    if self.state.global_step % self.checkpoint_every == 0:
                        self.save_checkpoint()
            # finished: a resume with phases appended starts the first new one at its step 0
            self.state.phase, self.state.step_in_phase = len(self.phases), 0
        except KeyboardInterrupt:
            bar.close()
            self.save_checkpoint()
            raise TrainingInterrupted(
                f"interrupted at step {self.state.global_step}; checkpoint saved"
            ) from None
        bar.close()
        self.save_checkpoint()
        return TrainResult(
            self.state.global_step,
            self.state.elapsed,
            self.state.history,
            last,
            self.state.evaluations,
        )

    def _step(self, phase: PhaseSpec, fixed: dict[str, Any] | None) -> dict[str, float]:
        assert self.optimizer is not None
        step = self.state.global_step
        lr = _lr_at(phase, self.state.step_in_phase)
        if phase.optimizer == "adam":
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_factor", 1.0)
        batches = fixed if fixed is not None else self._sample(step)
        record: dict[str, Tensor] = {}
        overrides: dict[str, Tensor] = {}

        def closure() -> Tensor:
            params = self._params()
            last = self._last
            if fixed is not None and not overrides and last is not None and last.matches(params):
                # L-BFGS re-evaluates, at the start of every step, the point its last line
                # search accepted: the objective is deterministic, so reuse that evaluation
                for p, g in zip(params, last.grads):
                    p.grad = None if g is None else g.clone()
                record.update(last.record)
                return last.total
            self.optimizer.zero_grad(set_to_none=True)
            self.state.evaluations += 1
            losses = self._losses(batches, overrides)
            total = self._total(losses, phase)
            if not torch.isfinite(total):
                bad = [k for k, v in losses.items() if not torch.isfinite(v)]
                raise TrainingDiverged(
                    f"loss became {total.item()} at step {step} (terms: {', '.join(bad) or 'l1'}); "
                    "lower the learning rate or the weights; the last good checkpoint is kept"
                )
            total.backward()
            if self.clip_grad_norm is not None and phase.optimizer == "adam":
                norm = torch.nn.utils.clip_grad_norm_(self._params(), self.clip_grad_norm)
                record["grad_norm"] = norm.detach()
            record.update(losses)
            record["total"] = total.detach()
            if fixed is not None:
                self._last = _Evaluation(
                    [p.detach().clone() for p in params],
                    [None if p.grad is None else p.grad.detach().clone() for p in params],
                    total.detach(),
                    {k: v.detach() for k, v in record.items()},
                )
            return total

        weights = self._weights(phase)
        for hook in self.hooks:
            overrides.update(hook.before_step(self.model, batches, weights))
        if (
            self.balancing == "grad_norm"
            and phase.optimizer == "adam"
            and step % self.balancing_every == 0
            and len(self.terms) > 1
        ):
            self.state.evaluations += 1
            self._rebalance(self._losses(batches, overrides), phase)
        if phase.optimizer == "lbfgs":
            saved = [p.detach().clone() for p in self._params()]
            try:
                self.optimizer.step(closure)
            except TrainingDiverged as exc:
                with torch.no_grad():
                    for p, value in zip(self._params(), saved):
                        p.copy_(value)
                raise _LineSearchFailed(str(exc)) from None
        else:
            self.optimizer.step(closure)
        for hook in self.hooks:
            hook.after_step(self.model)
        row = {"step": float(step), "phase": float(self.state.phase), "lr": lr}
        row.update({k: float(v.detach()) for k, v in record.items()})
        for t in self.terms:
            row[f"balance_{t.name}"] = self.state.balance[t.name]
        self.state.history.append(row)
        return {
            k: v
            for k, v in row.items()
            if k not in ("step", "phase") and not k.startswith("balance")
        }
