r"""Reduced-space Helmholtz inversion: a SIREN velocity, exact FD wavefields
(``pde.velocity.method: reduced``).

The unknown is the velocity network alone (:func:`~.inversion.build_velocity`: a bounded
SIREN, held at the background c₀ in the PML). For its velocity c_θ the wavefields are not
learned but solved: the five-point stretched Helmholtz operator on the evaluation grid
(:class:`reference_solvers.fwi.ForwardModel`, the forward model and grid of the classical FWI
reference, e^{+iωt}, the same PML),

    A(m) u_s = b_s,   m = 1/c_θ² at the free nodes (inside the PML's inner edge),
                      m = 1/c₀² elsewhere,

and the receivers sample them bilinearly, d_s(θ) = P u_s. Loss terms (``loss.weights``):

* ``data``: (d_s(θ) − d_obs,s)/rms(d_obs) at every receiver, real and imaginary parts; its mean
  over the receivers, summed over the sources, is S·‖d(θ) − d_obs‖²/‖d_obs‖², S times the
  squared relative misfit — the joint method's data term;
* ``tv`` (optional): the mean over the free nodes of √(|∇q|² + ε), q = c or 1/c²
  (``pde.velocity.tv_of``), from the network's exact gradient
  (:func:`~.inversion.velocity_tv`).

The data term's gradient with respect to m is the adjoint-state gradient: one more solve with
the forward factors (:meth:`reference_solvers.fwi.ForwardModel.gradient`), wrapped as a torch
autograd function (:class:`FDData`) so that autograd carries it into the network's
parameters. The objective is a deterministic function of θ (fixed nodes), so L-BFGS phases
apply; every evaluation costs one sparse factorisation and 2·S triangular solves. This is an
FWI whose model is a SIREN (an "implicit" FWI): the PDE holds exactly at every step, which the
joint method only approaches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pinnsiren.engine.terms import Batch, Term
from pinnsiren.families.base import CompiledProblem, eval_grid, grid_data, grid_points
from pinnsiren.families.helmholtz.inversion import (
    BoundedVelocity,
    background_of,
    build_velocity,
    velocity_tv,
    velocity_writer,
    with_inversion_report,
)
from pinnsiren.families.helmholtz.operator import AXES, pairs, pml_of, source_densities
from pinnsiren.families.helmholtz.receivers import ReceiverData, enclosed_region, receiver_data
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.fwi import ForwardModel, Wavefields, physical_mask


class VelocityModel(nn.Module):
    """The trained model of a reduced inversion: the velocity network only; ``forward`` is c(x).

    ``param_groups`` gives Adam the velocity's ``lr_factor`` (``pde.velocity.model``)."""

    def __init__(self, velocity: BoundedVelocity, lr_factor: float = 1.0) -> None:
        super().__init__()
        self.velocity = velocity
        self.lr_factor = lr_factor

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.velocity.parameters()), "lr_factor": self.lr_factor}]

    def forward(self, x: Tensor) -> Tensor:
        return self.velocity(x)


class FDWavefields:
    """The FD forward model of one problem: the free nodes, where the network sets m, and the
    background squared slowness everywhere else."""

    def __init__(self, spec: ProblemBase, data: ReceiverData, background: float) -> None:
        grid = eval_grid(spec)
        x, y = grid["x"], grid["y"]
        pml = pml_of(spec)
        self.model = ForwardModel(
            x, y, spec.pde.omega, source_densities(x, y, data.sources), data.receivers, pml
        )
        self.shape = self.model.shape
        self.free = np.flatnonzero(physical_mask(x, y, pml).ravel())
        self.points = grid_points(grid, AXES)[self.free]
        self.m_background = 1.0 / background**2

    def slowness(self, m_free: np.ndarray) -> np.ndarray:
        """The full nodal m (flat): ``m_free`` at the free nodes, 1/c₀² elsewhere."""
        m = np.full(self.shape[0] * self.shape[1], self.m_background)
        m[self.free] = m_free
        return m

    def solve(self, m_free: np.ndarray) -> Wavefields:
        return self.model.solve(self.slowness(m_free))


class FDData(torch.autograd.Function):
    """d(m): the receiver data of the FD wavefields as real pairs (R, 2·S), (Re, Im) per
    source, a function of m at the free nodes; backward is the adjoint-state gradient.
    A non-finite m gives NaN data (and gradient), which the trainer reports as divergence."""

    @staticmethod
    def forward(ctx: Any, m_free: Tensor, wavefields: FDWavefields) -> Tensor:
        m = m_free.detach().cpu().double().numpy()
        ctx.wavefields, ctx.fields = wavefields, None
        if not np.all(np.isfinite(m)):
            rows, sources = wavefields.model.P.shape[0], wavefields.model.nsrc
            return torch.full((rows, 2 * sources), float("nan")).to(m_free)
        ctx.fields = wavefields.solve(m)
        return pairs(ctx.fields.data).to(m_free)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        wavefields: FDWavefields = ctx.wavefields
        if ctx.fields is None:
            return torch.full((len(wavefields.free),), float("nan")).to(grad), None
        if getattr(ctx, "released", False):
            raise RuntimeError("FDData supports one backward pass per forward solve")
        g = grad.detach().cpu().double().numpy()
        dm = wavefields.model.gradient(ctx.fields, g[:, 0::2] + 1j * g[:, 1::2])
        ctx.fields.release()
        ctx.released = True
        return torch.as_tensor(dm[wavefields.free]).to(grad), None


class ReducedInversion:
    """The compiled pieces of a reduced-space inversion (see the module docstring)."""

    def __init__(self, spec: ProblemBase) -> None:
        self.spec = spec
        self.data = receiver_data(spec)
        self.c0 = background_of(spec)
        self.wavefields = FDWavefields(spec, self.data, self.c0)
        self.region = enclosed_region(self.data)
        values = self.data.values
        self.observed = pairs(values)
        self.rms = float(np.sqrt(np.mean(np.abs(values) ** 2)))

    def predicted(self, model: nn.Module, points: Tensor) -> Tensor:
        """The receiver data (R, 2·S) of the model's velocity at the free nodes ``points``."""
        c = model.velocity(points)[:, 0]
        return FDData.apply(1.0 / c**2, self.wavefields)

    def data_term(self) -> Term:
        free = torch.as_tensor(self.wavefields.points, dtype=torch.float64)

        def residual(model: nn.Module, batch: Batch) -> Tensor:
            pred = self.predicted(model, batch["x"])
            return (pred - self.observed.to(pred)) / self.rms

        return Term(
            name="data",
            weight=self.spec.weight("data", 1.0),
            sampler=lambda step, n: {"x": free},
            points=len(free),
            fn=residual,
        )

    def tv_term(self) -> Term | None:
        weight = self.spec.weight("tv", 0.0)
        if weight <= 0:
            return None
        free = torch.as_tensor(self.wavefields.points, dtype=torch.float64)
        return Term(
            name="tv",
            weight=weight,
            sampler=lambda step, n: {"x": free},
            points=len(free),
            fn=velocity_tv(self.spec.pde.velocity.tv_of == "slowness"),
            reduce=lambda r, b: r.mean(),
        )

    def assemble(self, field: nn.Module) -> VelocityModel:
        """The velocity network alone (the ``model`` group's field network is not used)."""
        velocity = build_velocity(self.spec, self.c0)
        return VelocityModel(velocity, self.spec.pde.velocity.model.lr_factor)

    def evaluate(self, model: nn.Module) -> GridData:
        """The velocity on the evaluation grid, the FD wavefields it gives and their misfit."""
        out = grid_data(self.spec, "pinn")
        shape = self.wavefields.shape
        param = next(model.parameters())
        with torch.no_grad():
            nodes = torch.as_tensor(grid_points(out.grid, AXES), dtype=param.dtype)
            c = model.velocity(nodes.to(param.device))[:, 0].double().cpu().numpy()
        m = self.wavefields.slowness(1.0 / c[self.wavefields.free] ** 2)
        fields = self.wavefields.model.solve(m)
        fields.release()
        out.add("u", fields.u.T.reshape((-1,) + shape), ("source", "x", "y"))
        out.add("velocity", (1.0 / np.sqrt(m)).reshape(shape), AXES)
        out.attrs["method"] = "reduced"
        return with_inversion_report(out, self.spec, self.data, fields.data, self.region)

    def compile(self) -> CompiledProblem:
        terms: list[Term] = [self.data_term()]
        tv = self.tv_term()
        if tv is not None:
            terms.append(tv)
        return CompiledProblem(
            self.spec,
            AXES,
            2 * len(self.data.sources),
            terms,
            self.evaluate,
            group=2,
            assemble=self.assemble,
            composite=True,
            writers=[velocity_writer(self.spec, "reduced-space inversion (FD wavefields)")],
        )
