"""Helmholtz velocity inversion: an unknown c(x) from receiver data, several sources.

Two networks are trained together (:class:`InversionModel`):

* the wavefield network, built from the problem's ``model`` group like any forward field
  (SIREN, tanh or ReLU + PE, TUNER, ``input_scale``, ``omega_0: auto``), (x, y) →
  (Re u_1, Im u_1, …, Re u_S, Im u_S): a shared trunk with two output channels per source;
* the velocity network, a small SIREN whose output is bounded,
  c = c_min + (c_max − c_min)·sigmoid(φ(x)), and held at the background value inside the
  PML (the layer is not part of the unknown). With ``pde.velocity.model.grid: [n_x, n_y]``
  φ is the SIREN plus a bilinear grid over the region inside the PML
  (:mod:`pinnsiren.engine.bilinear_grid`).

Two formulations (``pde.formulation``):

* ``total``: the network is the field u_s of every source and the residual is the PML
  Helmholtz residual of :mod:`pinnsiren.families.helmholtz.operator`,
  r = L_PML u_s + C (ω²/c²) u_s − C f_s;
* ``scattered``: u_s = u₀_s + v_s with u₀_s the analytic free-space field of source s in the
  background velocity c₀ (:mod:`pinnsiren.families.helmholtz.incident`); the network is the
  scattered field v_s, and subtracting (Δ + ω²/c₀²) u₀_s = f_s from the equation leaves

      r = L_PML v_s + C (ω²/c²) v_s − C ω² (1/c₀² − 1/c²) u₀_s.

  Its right-hand side is smooth and vanishes wherever c = c₀ (in particular inside the PML,
  where the velocity is held at c₀, so u₀ is never needed there); for the initial model c = c₀
  the exact solution is v = 0, which is where the network starts (its last layer is zeroed).

Loss terms (weights from ``loss.weights``):

* ``residual``, ``interior``, ``source`` (``total`` only): the residual r above for every
  source, with ω²/c(x)² from the velocity network (the PDE terms of
  :func:`~pinnsiren.families.helmholtz.operator.pde_terms`);
* ``data``: (u_s(r) − d_{r,s}) / rms(d) at the receivers, rms over all receivers and sources;
  summed over the sources (real and imaginary parts) and averaged over the receivers, the term
  is S·Σ|u − d|²/Σ|d|², S times the squared relative misfit for S sources (with
  ``scattered`` the network predicts d − u₀);
* ``tv`` (optional): mean √(|∇q|² + ε), ε = 1e-8, over the region: total variation of
  q = c, or of the squared slowness q = 1/c² with ``pde.velocity.tv_of: slowness``
  (∇q = −2∇c/c³); the latter is what the classical FWI regularises.

All but ``tv`` are linear in the wavefield. With ``training.output_layer: least_squares`` the
wavefield's output layer is solved for at every step from the PDE terms only (the data term is
outside the fit), differentiated through (:mod:`pinnsiren.engine.lstsq`): the data misfit then
depends on the velocity only through a PDE solution in the features' span, as in adjoint-state
FWI, and the output layer cannot trade a PDE residual for a closer fit of the receivers (the
hidden layers still learn from both). After training the layer is solved once more.

Before the joint training, ``training.pretrain_steps`` Adam steps fit the wavefields to the
PDE with the initial velocity (velocity network frozen), so the inversion starts from
physically consistent fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.engine.bilinear_grid import BilinearGrid
from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.nets import Siren
from pinnsiren.engine.terms import Batch, LinearTerm, Term
from pinnsiren.engine.train import Trainer
from pinnsiren.families.base import CompiledProblem, grid_data, grid_points, mesh_of, predict
from pinnsiren.families.helmholtz.incident import incident_field
from pinnsiren.families.helmholtz.operator import (
    AXES,
    cmul,
    coefficient_batch,
    pairs,
    pde_terms,
    physical_box,
    source_density,
)
from pinnsiren.families.helmholtz.receivers import ReceiverData, enclosed_region, receiver_data
from pinnsiren.output import plots
from pinnsiren.output.gridfile import GridData, write_grid_data
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import PhaseSpec, ProblemBase


class BoundedVelocity(nn.Module):
    """c(x) = c_min + (c_max − c_min)·sigmoid(φ(x)), = background outside ``inner``.

    φ is the SIREN's output, plus the bilinear ``grid``'s value when there is one (a hybrid
    model: the grid starts at zero and picks up fine-scale features the network is slow to learn).
    """

    def __init__(
        self,
        net: Siren,
        bounds: tuple[float, float],
        background: float,
        inner: Box | None,
        grid: BilinearGrid | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.grid = grid
        self.c_min, self.c_max = bounds
        self.background = background
        self.inner = inner

    def set_constant(self, value: float) -> None:
        """Make the network output ``value`` everywhere (clipped 1 % inside the bounds)."""
        frac = (value - self.c_min) / (self.c_max - self.c_min)
        frac = min(max(frac, 0.01), 0.99)
        with torch.no_grad():
            self.net.last.weight.mul_(1e-3)
            self.net.last.bias.fill_(math.log(frac / (1 - frac)))

    def forward(self, x: Tensor) -> Tensor:
        phi = self.net(x) if self.grid is None else self.net(x) + self.grid(x)
        c = self.c_min + (self.c_max - self.c_min) * torch.sigmoid(phi)
        if self.inner is None:
            return c
        inside = self.inner.contains({"x": x[:, 0], "y": x[:, 1]})
        return torch.where(inside[:, None], c, torch.full_like(c, self.background))

    def with_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """c and ∇c (N, 2) at points inside the unknown region."""
        j = jet(self.net, x, DerivativeRequest(gradient=(0, 1)))
        phi, dphi = j.value, torch.cat([j.gradient[0], j.gradient[1]], dim=1)
        if self.grid is not None:
            g, dg = self.grid.with_gradient(x)
            phi, dphi = phi + g, dphi + dg
        s = torch.sigmoid(phi)
        grad = (self.c_max - self.c_min) * s * (1 - s) * dphi
        return self.c_min + (self.c_max - self.c_min) * s, grad


class InversionModel(nn.Module):
    """Wavefield network plus bounded velocity network; ``forward`` gives the wavefields."""

    def __init__(self, wave: nn.Module, velocity: BoundedVelocity, velocity_lr_factor: float = 1.0):
        super().__init__()
        self.wave = wave
        self.velocity = velocity
        self.velocity_lr_factor = velocity_lr_factor

    def param_groups(self) -> list[dict]:
        """Optimizer groups: the velocity network learns ``velocity_lr_factor`` times faster."""
        return [
            {"params": list(self.wave.parameters()), "lr_factor": 1.0},
            {"params": list(self.velocity.parameters()), "lr_factor": self.velocity_lr_factor},
        ]

    def forward(self, x: Tensor) -> Tensor:
        return self.wave(x)


def wavefield(model: nn.Module) -> nn.Module:
    """The field network inside an :class:`InversionModel`."""
    return model.wave


def initial_mean(spec: ProblemBase) -> float:
    """Mean of ``pde.velocity.initial`` on a 64² grid over the domain."""
    mesh = mesh_of({a: np.linspace(*spec.domain[a], 64) for a in AXES})
    return float(np.mean(spec.pde.velocity.initial(mesh)))


def background_of(spec: ProblemBase) -> float:
    return spec.pde.velocity.background or initial_mean(spec)


def true_velocity_on(spec: ProblemBase, grid: dict[str, np.ndarray]) -> np.ndarray | None:
    """The declared true velocity (synthesize.true_velocity or data.true_velocity) on a grid."""
    data = spec.pde.data
    field = data.synthesize.true_velocity if data.synthesize else data.true_velocity
    if field is None:
        return None
    return np.asarray(field(mesh_of({a: grid[a] for a in AXES})), dtype=float)


def with_inversion_report(
    out: GridData, spec: ProblemBase, data: ReceiverData, predicted: np.ndarray, region: Box
) -> GridData:
    """A solution's inversion attributes: the relative data misfit ‖d_pred − d‖/‖d‖ of the
    predicted receiver data (R, S), the declared true velocity and the metric region."""
    misfit = np.linalg.norm(predicted - data.values) / np.linalg.norm(data.values)
    out.attrs["data_misfit"] = float(misfit)
    true = true_velocity_on(spec, out.grid)
    if true is not None:
        out.add("true_velocity", true, AXES)
    out.attrs["region"] = repr(region.as_dict())
    return out


def build_velocity(spec: ProblemBase, background: float) -> BoundedVelocity:
    """The velocity network of ``pde.velocity.model`` (plus its bilinear grid), bounded, held
    at ``background`` inside a PML and starting at the initial field's mean."""
    vm = spec.pde.velocity.model
    vnet = Siren(
        2, 1, width=vm.width, depth=vm.depth, omega_0=vm.omega_0, hidden_omega=vm.hidden_omega
    )
    inner = physical_box(spec)
    grid = None
    if vm.grid is not None:
        grid = BilinearGrid(vm.grid, tuple(zip(inner.lower, inner.upper)))
    pml = spec.boundary.kind == "pml"
    velocity = BoundedVelocity(
        vnet, spec.pde.velocity.bounds, background, inner if pml else None, grid
    )
    velocity.set_constant(initial_mean(spec))
    return velocity


def velocity_tv(of_slowness: bool) -> Callable[[nn.Module, Batch], Tensor]:
    """The TV integrand √(|∇q|² + ε), ε = 1e-8, of the model's velocity network at the batch's
    points (inside the unknown region): q = c, or q = 1/c² with ∇q = −2∇c/c³."""

    def tv(model: nn.Module, batch: Batch) -> Tensor:
        c, grad = model.velocity.with_gradient(batch["x"])
        if of_slowness:
            grad = -2 * grad / c**3
        return torch.sqrt((grad**2).sum(dim=1) + 1e-8)

    return tv


def velocity_writer(spec: ProblemBase, label: str) -> Callable[[Path, nn.Module, GridData], None]:
    """Writes ``velocity.h5`` (recovered and true velocity) and ``velocity.png``."""

    def write(run_dir: Path, model: nn.Module, solution: GridData) -> None:
        vel = GridData(grid=solution.grid, attrs=dict(solution.attrs), problem=solution.problem)
        for name in ("velocity", "true_velocity"):
            if name in solution.fields:
                vel.add(name, solution.fields[name], AXES)
        write_grid_data(run_dir / "velocity.h5", vel)
        if spec.output.plots:
            title = f"{spec.name}: {label}"
            plots.plot_velocity(vel, run_dir / "velocity.png", title=title)

    return write


class InversionPretrain(StepHooks):
    """``training.pretrain_steps`` Adam steps on the PDE terms with the velocity frozen, run by
    a trainer of their own with the run's other hooks (e.g. the least-squares solve)."""

    def __init__(self, terms: list[Term], steps: int, lr: float) -> None:
        self.terms, self.steps, self.lr = terms, steps, lr

    def pretrain(self, model: nn.Module, trainer: Any) -> None:
        if self.steps <= 0:
            return
        model.velocity.requires_grad_(False)
        others = [h for h in trainer.hooks if h is not self]
        Trainer(
            model,
            self.terms,
            [PhaseSpec(optimizer="adam", steps=self.steps, lr=self.lr)],
            generator=trainer.generator,
            hooks=others,
            progress=trainer.progress,
            description="pretrain",
        ).run()
        model.velocity.requires_grad_(True)


class Inversion:
    """The compiled pieces of one inversion problem (see the module docstring)."""

    def __init__(self, spec: ProblemBase, gen: torch.Generator) -> None:
        self.spec, self.gen = spec, gen
        self.pde = pde = spec.pde
        self.data: ReceiverData = receiver_data(spec)
        self.sources = self.data.sources
        self.omega = pde.omega
        self.scattered = pde.formulation == "scattered"
        self.c0 = background_of(spec)
        self.region = enclosed_region(self.data)
        self.rec_incident = self.incident_at(self.data.receivers)

    # ------------------------------------------------------------------ coefficients
    def incident_at(self, points: np.ndarray) -> np.ndarray:
        """u₀ of every source at points (N, 2): complex (N, S); zero for ``total``."""
        if not self.scattered:
            return np.zeros((len(points), len(self.sources)), dtype=complex)
        return incident_field(points[:, 0], points[:, 1], self.sources, self.omega, self.c0).T

    def batch_at(self, points: Tensor) -> Batch:
        """PML coefficients, and C f_s per source (``total``) or u₀_s (``scattered``)."""
        batch = coefficient_batch(points, self.spec, self.omega)
        x, y = points[:, 0].numpy(), points[:, 1].numpy()
        if self.scattered:  # f_s is subtracted with u₀: the forcing comes from c (prepare)
            batch["u0"] = pairs(self.incident_at(points.numpy()))
        else:
            c = batch["C"][:, 0].numpy() + 1j * batch["C"][:, 1].numpy()
            f = np.stack([c * source_density(x, y, [s]) for s in self.sources], axis=1)
            batch["g"] = pairs(f)
        return batch

    def prepare(self, batch: Batch, model: nn.Module) -> Batch:
        """C ω²/c(x)² from the velocity network, and the forcing of the scattered form."""
        c = model.velocity(batch["x"])
        k2 = self.omega**2 / c**2
        out = {**batch, "Ck2": batch["C"] * k2}
        if self.scattered:  # C ω² (1/c₀² − 1/c²) u₀_s
            out["g"] = cmul(batch["C"] * (self.omega**2 / self.c0**2 - k2), batch["u0"])
        return out

    # ------------------------------------------------------------------ terms
    def data_term(self) -> LinearTerm:
        data = self.data
        values = data.values  # (R, S)
        target = values - self.rec_incident
        rec = torch.as_tensor(data.receivers, dtype=torch.float64)
        d_pairs = pairs(target)
        rms = float(np.sqrt(np.mean(np.abs(values) ** 2)))
        return LinearTerm(
            name="data",
            weight=self.spec.weight("data", 1.0),
            sampler=lambda step, n: {"x": rec, "d": d_pairs},
            points=len(rec),
            request=DerivativeRequest(),
            operator=lambda j, b: j.value / rms,
            target=lambda b: b["d"] / rms,
            network=wavefield,
            in_fit=False,
            complex_pairs=True,
        )

    def tv_term(self) -> Term | None:
        weight = self.spec.weight("tv", 0.0)
        if weight <= 0:
            return None
        region = self.region
        return Term(
            name="tv",
            weight=weight,
            sampler=lambda step, n: {"x": region.uniform(n, self.gen)},
            points=self.spec.points("tv", 1024),
            fn=velocity_tv(self.pde.velocity.tv_of == "slowness"),
            reduce=lambda r, b: r.mean(),
        )

    # ------------------------------------------------------------------ model
    def assemble(self, wave: nn.Module) -> InversionModel:
        """The wavefield network plus the velocity network (seeded after the wavefield)."""
        velocity = build_velocity(self.spec, self.c0)
        if self.scattered:
            with torch.no_grad():  # the scattered field of the background model is zero
                wave.last.weight.zero_()
                wave.last.bias.zero_()
        return InversionModel(wave, velocity, self.pde.velocity.model.lr_factor)

    # ------------------------------------------------------------------ read-out
    def evaluate(self, model: nn.Module) -> GridData:
        out = grid_data(self.spec, "pinn")
        shape = tuple(len(v) for v in out.grid.values())
        pts = grid_points(out.grid, AXES)
        u = predict(model.wave, pts)
        u = u[:, 0::2] + 1j * u[:, 1::2] + self.incident_at(pts)
        out.add("u", u.T.reshape((len(self.sources),) + shape), ("source", "x", "y"))
        out.add("velocity", predict(model.velocity, pts)[:, 0].reshape(shape), AXES)
        d_pred = predict(model.wave, self.data.receivers)
        pred = d_pred[:, 0::2] + 1j * d_pred[:, 1::2] + self.rec_incident
        return with_inversion_report(out, self.spec, self.data, pred, self.region)

    def compile(self) -> CompiledProblem:
        spec = self.spec
        terms: list[Term] = list(
            pde_terms(
                spec,
                self.gen,
                self.batch_at,
                self.sources,
                with_source_term=not self.scattered,
                prepare=self.prepare,
                network=wavefield,
            )
        )
        phases = spec.training.phases
        lr = (phases[0].lr if phases else None) or 1e-4
        pretrain = InversionPretrain(list(terms), spec.training.pretrain_steps, lr)
        terms.append(self.data_term())
        tv = self.tv_term()
        if tv is not None:
            terms.append(tv)
        return CompiledProblem(
            spec,
            AXES,
            2 * len(self.sources),
            terms,
            self.evaluate,
            group=2,
            assemble=self.assemble,
            network=wavefield,
            composite=True,
            hooks=[pretrain],
            writers=[velocity_writer(spec, "PINN inversion")],
        )
