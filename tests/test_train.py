"""Training: the loss falls, resume after Ctrl-C continues exactly, NaN stops cleanly."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from pinnsiren.engine.terms import Term
from pinnsiren.engine.train import Trainer, TrainingInterrupted
from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import read_grid_data
from pinnsiren.problem import parse_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve
from pinnsiren.schema.groups import PhaseSpec

POISSON_1D = {
    "name": "p1",
    "pde": {"kind": "poisson", "rhs": "pi**2*sin(pi*x)", "exact": "sin(pi*x)"},
    "domain": {"x": [0.0, 1.0]},
    "boundary": {"kind": "dirichlet", "value": 0.0},
    "model": {"kind": "siren", "width": 32, "depth": 2, "omega_0": 3.0},
    "training": {
        "dtype": "float64",
        "checkpoint_every": 10,
        "phases": [{"optimizer": "adam", "steps": 300, "lr": 3e-4}],
    },
    "sampling": {"points": {"residual": 256, "boundary": 16}},
    "evaluation": {"grid": {"x": 65}},
    "output": {"plots": False},
}


def _spec(**overrides):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in POISSON_1D.items()}
    raw.update(overrides)
    return parse_problem(raw)


def _history(run_dir):
    with open(run_dir / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_poisson_1d_trains_and_compares(tmp_path):
    spec = _spec()
    solve(spec, tmp_path, progress=False)
    rows = _history(tmp_path)
    assert len(rows) == 300
    first = np.mean([float(r["total"]) for r in rows[:10]])
    last = np.mean([float(r["total"]) for r in rows[-10:]])
    assert last < 1e-2 * first
    metrics = compare_run(tmp_path, plots=False)
    assert metrics["rel_l2"] < 0.05  # loose: 300 Adam steps
    assert metrics["reference_vs_exact"]["rel_l2"] < 1e-3
    sol = read_grid_data(tmp_path / "solution.h5")
    assert sol.fields["u"].shape == (65,)
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "metrics.json").is_file()


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    spec = _spec(
        training={
            **POISSON_1D["training"],
            "phases": [
                {"optimizer": "adam", "steps": 30, "lr": 1e-3},
                {"optimizer": "lbfgs", "steps": 5},
            ],
        }
    )
    solve(spec, tmp_path / "straight", progress=False)
    straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["state_dict"]

    import pinnsiren.engine.train as train_mod

    original = train_mod.Trainer._sample
    calls = {"n": 0}

    def interrupting(self, step):
        calls["n"] += 1
        if step == 23 and calls["n"] < 100:
            calls["n"] = 100
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(train_mod.Trainer, "_sample", interrupting)
    with pytest.raises(TrainingInterrupted, match="step 23"):
        solve(spec, tmp_path / "cut", progress=False)
    assert len(_history(tmp_path / "cut")) == 23
    solve(spec, tmp_path / "cut", progress=False, resume=True)
    resumed = torch.load(tmp_path / "cut" / "model.pt", weights_only=False)["state_dict"]
    assert len(_history(tmp_path / "cut")) == 35
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    spec = _spec(
        training={
            **POISSON_1D["training"],
            "phases": [{"optimizer": "adam", "steps": 50, "lr": 1e-3}],
        }
    )
    solve(spec, tmp_path, progress=False)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    bad = _spec(
        pde={"kind": "poisson", "rhs": "where(x > 0.5, 1/(x - x), 0)"},
        training=spec.training.model_dump(),
    )
    with pytest.raises(UserError, match="loss became"):
        solve(bad, tmp_path / "other", progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_resume_of_a_finished_run_runs_only_the_appended_phase(tmp_path):
    """Finishing resets the step counter, so --resume with one more phase runs all of it
    (and a resume with the same phases trains nothing more)."""
    one = {"optimizer": "adam", "steps": 20, "lr": 1e-3}
    spec = _spec(training={**POISSON_1D["training"], "phases": [one]})
    solve(spec, tmp_path, progress=False)
    solve(spec, tmp_path, progress=False, resume=True)
    assert len(_history(tmp_path)) == 20
    longer = _spec(
        training={
            **POISSON_1D["training"],
            "phases": [one, {"optimizer": "adam", "steps": 15, "lr": 1e-4}],
        }
    )
    solve(longer, tmp_path, progress=False, resume=True)
    rows = _history(tmp_path)
    assert len(rows) == 35
    assert [float(r["phase"]) for r in rows[20:]] == [1.0] * 15


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        solve(_spec(), tmp_path / "empty", resume=True, progress=False)


def test_param_groups_scale_the_learning_rate_of_the_schedule():
    """A model's param_groups() lr_factor multiplies the phase lr at every step."""
    from pinnsiren.engine.train import Trainer
    from pinnsiren.schema.groups import PhaseSpec

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.ones(1))
            self.b = torch.nn.Parameter(torch.ones(1))

        def param_groups(self):
            return [{"params": [self.a], "lr_factor": 1.0}, {"params": [self.b], "lr_factor": 20.0}]

    class Term:
        name, weight = "t", 1.0

        def sample(self, step):
            return None

        def loss(self, model, batch):
            return (model.a - 3) ** 2 + (model.b - 3) ** 2

    model = Two()
    phase = PhaseSpec(optimizer="adam", steps=5, lr=0.01)
    Trainer(model, [Term()], [phase], progress=False).run()
    # Adam moves each parameter by about its lr per step while the gradient keeps its sign
    assert model.a.item() == pytest.approx(1.05, abs=1e-3)
    assert model.b.item() == pytest.approx(2.0, abs=0.05)  # 20 times further


def test_phase_weights_override_the_loss_weights_while_the_phase_runs():
    """Phase 2 sets w_b = 0 (and w_a = 2): only a keeps moving, and the recorded total is
    2·L_a; a term that follows ``a`` takes a's override unless named itself."""
    from pinnsiren.engine.train import Trainer
    from pinnsiren.schema.groups import PhaseSpec

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.zeros(1))
            self.b = torch.nn.Parameter(torch.zeros(1))

    class Term:
        def __init__(self, name, target, follows=None):
            self.name, self.weight, self.target, self.follows = name, 1.0, target, follows

        def sample(self, step):
            return None

        def loss(self, model, batch):
            return (getattr(model, self.target) - 1) ** 2

    model = Two()
    phases = [
        PhaseSpec(optimizer="adam", steps=3, lr=0.01),
        PhaseSpec(optimizer="adam", steps=4, lr=0.01, weights={"a": 2.0, "b": 0.0}),
    ]
    trainer = Trainer(model, [Term("a", "a"), Term("b", "b")], phases, progress=False)
    trainer.run()
    assert model.a.item() == pytest.approx(0.07, abs=1e-3)  # Adam: ~lr per step, 7 steps
    assert model.b.item() == pytest.approx(0.03, abs=1e-3)  # frozen by w_b = 0 after 3
    last = trainer.state.history[-1]
    assert last["total"] == pytest.approx(2.0 * last["a"], rel=1e-12)
    follower = Term("c", "a", follows="a")
    assert Trainer._weight(follower, phases[1]) == 2.0
    assert Trainer._weight(follower, phases[0]) == 1.0
    named = PhaseSpec(steps=1, weights={"a": 2.0, "c": 5.0})
    assert Trainer._weight(follower, named) == 5.0


def test_clip_grad_norm_rescales_the_adam_gradient_and_logs_its_norm(tmp_path):
    """L = 100 (a − 3)² at a = 1: ‖g‖ = 400 is logged, the stored gradient has norm G; an
    L-BFGS phase first (not clipped, no grad_norm) still writes a consistent history.csv."""
    from pinnsiren.engine.train import Trainer
    from pinnsiren.schema.groups import PhaseSpec

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    class Term:
        name, weight = "t", 1.0

        def sample(self, step):
            return None

        def loss(self, model, batch):
            return 100 * ((model.a - 3) ** 2).sum()

    model = One()
    phases = [PhaseSpec(optimizer="adam", steps=1, lr=1e-3)]
    trainer = Trainer(model, [Term()], phases, clip_grad_norm=0.5, progress=False)
    trainer.run()
    assert trainer.state.history[0]["grad_norm"] == pytest.approx(400.0)
    assert model.a.grad.abs().item() == pytest.approx(0.5)

    model = One()
    phases = [PhaseSpec(optimizer="lbfgs", steps=1), PhaseSpec(optimizer="adam", steps=2, lr=1e-3)]
    trainer = Trainer(model, [Term()], phases, run_dir=tmp_path, clip_grad_norm=0.5, progress=False)
    trainer.run()
    rows = _history(tmp_path)
    assert rows[0]["grad_norm"] == "" and float(rows[1]["grad_norm"]) > 0


def test_lbfgs_reuses_the_accepted_point_without_changing_the_trajectory():
    """An L-BFGS step starts by evaluating the point the last line search accepted; the
    trainer reuses that evaluation: the same iterates as torch's L-BFGS, fewer evaluations."""
    target = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64)

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    x = torch.linspace(0.0, 1.0, 12, dtype=torch.float64)[:, None]
    calls = {"n": 0}

    def residual(model, batch):
        calls["n"] += 1
        return model(batch["x"])[:, 0] - target

    term = Term(name="fit", weight=1.0, sampler=lambda step, n: {"x": x}, points=12, fn=residual)
    term.dtype = torch.float64
    model = fresh_model().double()
    trainer = Trainer(model, [term], [PhaseSpec(optimizer="lbfgs", steps=15)], progress=False)
    result = trainer.run()

    plain = fresh_model().double()
    opt = torch.optim.LBFGS(
        plain.parameters(), max_iter=1, max_eval=25, history_size=50, line_search_fn="strong_wolfe"
    )
    plain_calls = 0

    def closure():
        nonlocal plain_calls
        plain_calls += 1
        opt.zero_grad()
        loss = ((plain(x)[:, 0] - target) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(15):
        opt.step(closure)
    for a, b in zip(model.parameters(), plain.parameters()):
        assert torch.equal(a, b)
    assert result.evaluations == calls["n"] < plain_calls
    assert plain_calls - result.evaluations >= 10  # most steps start at the accepted point


def _fit_term(calls):
    target = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64)
    x = torch.linspace(0.0, 1.0, 12, dtype=torch.float64)[:, None]

    def residual(model, batch):
        calls["n"] += 1
        return model(batch["x"])[:, 0] - target

    term = Term(name="fit", weight=1.0, sampler=lambda step, n: {"x": x}, points=12, fn=residual)
    term.dtype = torch.float64
    return term


def test_lbfgs_reuse_does_not_cross_phases_or_hooks():
    """A new phase (new weights) and a hook that moves the parameters both force a fresh
    evaluation: the recorded total of each step is the current weight times the loss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = model.double()
    calls = {"n": 0}
    phases = [
        PhaseSpec(optimizer="lbfgs", steps=4, weights={"fit": 1.0}),
        PhaseSpec(optimizer="lbfgs", steps=4, weights={"fit": 10.0}),
    ]
    trainer = Trainer(model, [_fit_term(calls)], phases, progress=False)
    trainer.run()
    for row in trainer.state.history:
        weight = 1.0 if row["phase"] == 0 else 10.0
        assert row["total"] == pytest.approx(weight * row["fit"], rel=1e-12)

    class Shrink:
        def pretrain(self, model, trainer): ...
        def before_step(self, model, batches, weights):
            return {}

        def after_step(self, model):
            with torch.no_grad():
                model[2].weight.mul_(0.99)

        def finish(self, model): ...

    calls["n"] = 0
    hooked = Trainer(
        model,
        [_fit_term(calls)],
        [PhaseSpec(optimizer="lbfgs", steps=5)],
        hooks=[Shrink()],
        progress=False,
    )
    result = hooked.run()
    # every step starts away from the accepted point: its first evaluation is a fresh one
    assert result.evaluations == calls["n"] >= 2 * 5
