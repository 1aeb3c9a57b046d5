"""Helmholtz velocity inversion: an unknown c(x) from receiver data, several sources.

Two networks are trained together:

* the wavefield network, a SIREN (x, y) → (Re u_1, Im u_1, …, Re u_S, Im u_S): a shared
  trunk with two output channels per source;
* the velocity network, a small SIREN whose output is bounded,
  c = c_min + (c_max − c_min)·sigmoid(φ(x)), and held at the background value inside the
  PML (the layer is not part of the unknown). With ``pde.velocity.model.grid: [n_x, n_y]``
  φ is the SIREN plus a bilinear grid over the region inside the PML
  (:mod:`pinnsiren.bilinear_grid`).

Two formulations (``pde.formulation``):

* ``total``: the network is the field u_s of every source and the residual is the PML
  Helmholtz residual of :mod:`pinnsiren.pdes.helmholtz`,
  r = L_PML u_s + C (ω²/c²) u_s − C f_s;
* ``scattered``: u_s = u₀_s + v_s with u₀_s the analytic free-space field of source s in the
  background velocity c₀ (:mod:`pinnsiren.incident`); the network is the scattered field v_s,
  and subtracting (Δ + ω²/c₀²) u₀_s = f_s from the equation leaves

      r = L_PML v_s + C (ω²/c²) v_s − C ω² (1/c₀² − 1/c²) u₀_s.

  Its right-hand side is smooth and vanishes wherever c = c₀ (in particular inside the PML,
  where the velocity is held at c₀, so u₀ is never needed there); for the initial model c = c₀
  the exact solution is v = 0, which is where the network starts (its last layer is zeroed).

Loss terms (weights from ``loss.weights``):

* ``residual``: the residual r above for every source, with ω²/c(x)² taken from the
  velocity network, at points uniform over the box (PML included);
* ``interior`` (when ``sampling.points.interior`` > 0): the same residual at points uniform
  in the physical region inside the PML, where the velocity is unknown;
* ``source`` (``total`` only): the same residual at points drawn around the sources, where f
  is large;
* ``data``: (u_s(r) − d_{r,s}) / rms(d) at the receivers, rms over all receivers and sources;
  summed over the sources (real and imaginary parts) and averaged over the receivers, the term
  is S·Σ|u − d|²/Σ|d|², S times the squared relative misfit for S sources (with
  ``scattered`` the network predicts d − u₀);
* ``tv`` (optional): mean √(|∇q|² + ε), ε = 1e-8, over the region: total variation of
  q = c, or of the squared slowness q = 1/c² with ``pde.velocity.tv_of: slowness``
  (∇q = −2∇c/c³); the latter is what the classical FWI regularises.

With ``training.output_layer: least_squares`` the wavefield network's output layer is not
trained but solved for at every step: the least-squares solution of the step's PDE terms in
the span of the network's last hidden features, differentiated through, so that the data
misfit depends on the velocity only through a PDE solution (as in adjoint-state FWI) and the
output layer cannot trade a PDE residual for a closer fit of the receivers (the hidden
layers still learn from both); see ``project_output_layer`` in :func:`compile_inversion`.
After training the layer is solved once more for the final hidden layers and velocity.

Before the joint training, ``training.pretrain_steps`` Adam steps fit the wavefields to the
PDE with the initial velocity (velocity network frozen), so the inversion starts from
physically consistent fields.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pinnsiren.bilinear_grid import BilinearGrid
from pinnsiren.geometry import Box, gaussian_points
from pinnsiren.incident import incident_field
from pinnsiren.io import GridData
from pinnsiren.jets import DerivativeRequest, jet
from pinnsiren.nets import Siren
from pinnsiren.pdes.base import (
    Batch,
    CompiledProblem,
    Term,
    grid_data,
    grid_points,
    predict,
)
from pinnsiren.pdes.helmholtz import (
    HELMHOLTZ_REQUEST,
    apply_operator,
    cmul,
    helmholtz_batch,
    helmholtz_residual,
    interior_terms,
    pairs,
    physical_box,
)
from pinnsiren.receivers import ReceiverData, enclosed_region, receiver_data
from pinnsiren.spec import HelmholtzPDE, ProblemSpec, UnknownVelocity


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
        inner: tuple[tuple[float, float], tuple[float, float]] | None,
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

    def _mask(self, x: Tensor) -> Tensor | None:
        if self.inner is None:
            return None
        (xl, xh), (yl, yh) = self.inner
        return (x[:, 0] >= xl) & (x[:, 0] <= xh) & (x[:, 1] >= yl) & (x[:, 1] <= yh)

    def forward(self, x: Tensor) -> Tensor:
        phi = self.net(x) if self.grid is None else self.net(x) + self.grid(x)
        c = self.c_min + (self.c_max - self.c_min) * torch.sigmoid(phi)
        mask = self._mask(x)
        if mask is None:
            return c
        return torch.where(mask[:, None], c, torch.full_like(c, self.background))

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
    """Wavefield SIREN plus bounded velocity SIREN; ``forward`` gives the wavefields."""

    def __init__(self, wave: Siren, velocity: BoundedVelocity, velocity_lr_factor: float = 1.0):
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


def _inner_box(spec: ProblemSpec) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if spec.boundary.kind != "pml":
        return None
    inner = physical_box(spec)
    return (inner.lower[0], inner.upper[0]), (inner.lower[1], inner.upper[1])


def build_inversion_model(spec: ProblemSpec, n_sources: int, seed: int) -> InversionModel:
    vel = spec.pde.velocity
    assert isinstance(vel, UnknownVelocity)
    torch.manual_seed(seed)
    m = spec.model
    wave = Siren(
        2,
        2 * n_sources,
        width=m.width,
        depth=m.depth,
        omega_0=float(m.omega_0) if m.omega_0 != "auto" else 30.0,
        hidden_omega=m.hidden_omega,
    )
    vm = vel.model
    vnet = Siren(
        2, 1, width=vm.width, depth=vm.depth, omega_0=vm.omega_0, hidden_omega=vm.hidden_omega
    )
    background = vel.background or initial_mean(spec)
    grid = None
    if vm.grid is not None:
        box = physical_box(spec)  # the whole domain without a PML
        grid = BilinearGrid(vm.grid, tuple(zip(box.lower, box.upper)))
    velocity = BoundedVelocity(vnet, vel.bounds, background, _inner_box(spec), grid)
    velocity.set_constant(initial_mean(spec))
    if spec.pde.formulation == "scattered":
        with torch.no_grad():  # the scattered field of the background model is zero
            wave.last.weight.zero_()
            wave.last.bias.zero_()
    return InversionModel(wave, velocity, vm.lr_factor)


def initial_mean(spec: ProblemSpec) -> float:
    vel = spec.pde.velocity
    x = np.linspace(*spec.domain["x"], 64)
    X, Y = np.meshgrid(x, np.linspace(*spec.domain["y"], 64), indexing="ij")
    return float(np.mean(vel.initial({"x": X, "y": Y})))


def compile_inversion(spec: ProblemSpec, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    assert isinstance(pde, HelmholtzPDE)
    data: ReceiverData = receiver_data(spec)
    sources = data.sources
    n_src = len(sources)
    omega = pde.omega
    box = Box.from_domain(spec.domain, ("x", "y"))
    region = enclosed_region(data)
    n_res = spec.points("residual", 4096)
    n_near = spec.points("source", 1024)
    n_tv = spec.points("tv", 1024)
    model = build_inversion_model(spec, n_src, spec.training.seed)
    scattered = pde.formulation == "scattered"
    c0 = model.velocity.background

    def incident_at(points: np.ndarray) -> np.ndarray:
        """u₀ of every source at points (N, 2): complex (N, S); zero for ``total``."""
        if not scattered:
            return np.zeros((len(points), n_src), dtype=complex)
        return incident_field(points[:, 0], points[:, 1], sources, omega, c0).T

    def batch_at(points: Tensor) -> Batch:
        if not scattered:
            return helmholtz_batch(points, spec, omega, None, sources, separate=True)
        u0 = incident_at(points.numpy())  # f_s is subtracted with u₀: no source density left
        batch = helmholtz_batch(points, spec, omega, None, sources, rhs=np.zeros_like(u0))
        batch["u0"] = pairs(u0).flatten(1)
        return batch

    def sample_residual(step: int) -> Batch:
        return batch_at(box.uniform(n_res, gen))

    def sample_source(step: int) -> Batch:
        per = max(1, n_near // n_src)
        pts = [gaussian_points(per, s.position, 2 * s.sigma, gen, box) for s in sources]
        return batch_at(torch.cat(pts))

    def scattering_source(batch: Batch, c: Tensor) -> Tensor:
        """C ω² (1/c₀² − 1/c²) u₀_s of the scattered formulation, real pairs (N, 2·S)."""
        return cmul(batch["C"] * (omega**2 * (1 / c0**2 - 1 / c**2)), batch["u0"])

    def forcing(batch: Batch, c: Tensor) -> Tensor:
        """g in r = L_PML v + C (ω²/c²) v − g, real pairs (N, 2·S): C f_s, plus the
        scattering source with ``scattered``."""
        g = batch["Cf"]
        return g + scattering_source(batch, c) if scattered else g

    def pde_residual(wave: nn.Module, batch: Batch, c: Tensor) -> Tensor:
        """The residual r of the module docstring, real pairs (N, 2·S)."""
        r = helmholtz_residual(wave, batch, omega**2 / c**2)
        return r - scattering_source(batch, c) if scattered else r

    def residual(net: nn.Module, batch: Batch) -> Tensor:
        projected = projected_residual(batch)
        if projected is not None:
            return projected
        return pde_residual(net.wave, batch, net.velocity(batch["x"]))

    rec = torch.as_tensor(data.receivers, dtype=torch.float64)
    values = data.values  # (R, S)
    rec_incident = incident_at(data.receivers)
    target = values - rec_incident
    d_pairs = torch.as_tensor(
        np.stack([target.real, target.imag], axis=-1).reshape(len(rec), 2 * n_src),
        dtype=torch.float64,
    )
    rms = float(np.sqrt(np.mean(np.abs(values) ** 2)))

    def sample_data(step: int) -> Batch:
        return {"x": rec, "d": d_pairs}

    def data_residual(net: nn.Module, batch: Batch) -> Tensor:
        if "coef" not in projection:
            return (net.wave(batch["x"]) - batch["d"]) / rms
        phi = _feature_net(net.wave, feature_cache)(batch["x"])
        phi = torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1).to(torch.complex128)
        pred = _real_pairs(phi @ projection["coef"]).to(batch["d"].dtype)
        return (pred - batch["d"]) / rms

    pde_terms = [Term("residual", spec.weight("residual"), sample_residual, residual)]
    pde_terms += interior_terms(spec, gen, batch_at, residual)
    if not scattered:
        pde_terms.append(Term("source", spec.weight("source"), sample_source, residual))
    terms = [*pde_terms, Term("data", spec.weight("data", 1.0), sample_data, data_residual)]
    tv_weight = spec.weight("tv", 0.0)
    if tv_weight > 0:
        tv_of_slowness = pde.velocity.tv_of == "slowness"
        lo = torch.tensor([region["x"][0], region["y"][0]], dtype=torch.float64)
        hi = torch.tensor([region["x"][1], region["y"][1]], dtype=torch.float64)

        def sample_tv(step: int) -> Batch:
            return {"x": lo + (hi - lo) * torch.rand(n_tv, 2, generator=gen, dtype=torch.float64)}

        def tv(net: nn.Module, batch: Batch) -> Tensor:
            c, grad = net.velocity.with_gradient(batch["x"])
            if tv_of_slowness:  # ∇(1/c²) = −2∇c/c³
                grad = -2 * grad / c**3
            return torch.sqrt((grad**2).sum(dim=1) + 1e-8)

        terms.append(Term("tv", tv_weight, sample_tv, tv, reduce=lambda r, b: r.mean()))

    def evaluate(net: nn.Module) -> GridData:
        out = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in out.grid.values())
        pts = grid_points(out.grid, ("x", "y"))
        u = predict(net.wave, pts)
        u = u[:, 0::2] + 1j * u[:, 1::2] + incident_at(pts)
        out.add("u", u.T.reshape((n_src,) + shape), ("source", "x", "y"))
        c = predict(net.velocity, pts)[:, 0].reshape(shape)
        out.add("velocity", c, ("x", "y"))
        d_pred = predict(net.wave, data.receivers)
        pred = d_pred[:, 0::2] + 1j * d_pred[:, 1::2] + rec_incident
        out.attrs["data_misfit"] = float(np.linalg.norm(pred - values) / np.linalg.norm(values))
        true = true_velocity_on(spec, out.grid)
        if true is not None:
            out.add("true_velocity", true, ("x", "y"))
        out.attrs["region"] = repr(region)
        return out

    least_squares = spec.training.output_layer == "least_squares"
    if least_squares:
        model.wave.last.requires_grad_(False)  # solved for, not trained
    feature_cache: dict[int, Siren] = {}
    projection: dict[str, object] = {}

    def project_output_layer(
        net: InversionModel, batches: dict[str, Batch], weights: dict[str, float]
    ) -> None:
        """Solve the PDE for the wavefield network's output layer (differentiably).

        With hidden features φ_k(x) (k = 1…K, plus the constant φ_0 = 1) the field of source s
        is v_s = Σ_k a_sk φ_k, complex a_sk = W[2s, k] + i W[2s+1, k] (bias for k = 0), and its
        residual L v_s − g_s = Σ_k a_sk L φ_k − g_s is affine in a. ``a`` is set to the
        minimiser of the step's weighted PDE terms, Σ_t w_t/N_t Σ_i Σ_s |r_its|² + λ‖a‖²
        (λ = 1e-10 · mean diagonal of the normal matrix), from the normal equations with
        :func:`torch.linalg.solve`, which autograd differentiates through. The receivers do
        not enter this fit: the predicted data Σ_k a_sk(c, φ) φ_k(x_r) are those of the best
        PDE solution the features can express, so the data term reaches the velocity only
        through a(c, φ), as in adjoint-state FWI, and the output layer cannot trade a PDE
        residual for a closer fit of the receivers (the hidden layers learn from both).
        """
        feat = _feature_net(net.wave, feature_cache)
        parts: dict[int, tuple[Batch, Tensor, Tensor]] = {}
        rows, rhs = [], []
        for t in pde_terms:
            b = batches[t.name]
            c = net.velocity(b["x"])
            j = jet(feat, b["x"], HELMHOLTZ_REQUEST)
            ck2 = b["C"] * (omega**2 / c**2)
            derivs = (j.value, j.gradient[0], j.gradient[1], j.second[0], j.second[1])
            lphi = apply_operator(b, *(_as_real_pairs(d) for d in derivs), ck2)
            m = torch.cat([_complex(lphi), _complex(ck2)], dim=1)  # L φ_k, L 1 = C k²
            g = _complex(forcing(b, c))
            parts[id(b)] = (b, m, g)
            w = weights.get(t.name, 0.0)
            if w > 0:
                scale = math.sqrt(w / len(b["x"]))
                rows.append(scale * m)
                rhs.append(scale * g)
        a_mat, b_mat = torch.cat(rows), torch.cat(rhs)
        normal = a_mat.mH @ a_mat
        ridge = 1e-10 * normal.diagonal().real.mean().detach()
        eye = torch.eye(normal.shape[0], dtype=normal.dtype, device=normal.device)
        coef = torch.linalg.solve(normal + ridge * eye, a_mat.mH @ b_mat)  # (K + 1, S)
        projection.update(coef=coef, parts=parts)
        wave = net.wave
        k = wave.last.in_features
        with torch.no_grad():  # the plain network now predicts the projected fields
            dtype = wave.last.weight.dtype
            wave.last.weight[0::2] = coef[:k].real.T.to(dtype)
            wave.last.weight[1::2] = coef[:k].imag.T.to(dtype)
            wave.last.bias[0::2] = coef[k].real.to(dtype)
            wave.last.bias[1::2] = coef[k].imag.to(dtype)

    def projected_residual(batch: Batch) -> Tensor | None:
        """The residual of ``batch`` with this step's projected output layer, if there is one."""
        part = projection.get("parts", {}).get(id(batch))
        if part is None or part[0] is not batch:
            return None
        _, m, g = part
        return _real_pairs(m @ projection["coef"] - g)

    def pretrain(net: InversionModel, trainer) -> None:
        steps = spec.training.pretrain_steps
        if steps <= 0:
            return
        lr = spec.training.phases[0].lr or 1e-4
        opt = torch.optim.Adam(net.wave.parameters(), lr=lr)
        bar = tqdm(range(steps), desc="pretrain", disable=not trainer.progress, unit="step")
        for step in bar:
            batches = [t.sample(step) for t in pde_terms]
            opt.zero_grad(set_to_none=True)
            if least_squares:  # the output layer is the PDE solution in the features' span
                named = {t.name: b for t, b in zip(pde_terms, batches)}
                net.velocity.requires_grad_(False)
                project_output_layer(net, named, {t.name: t.weight for t in pde_terms})
                loss = sum(t.weight * t.loss(net, b) for t, b in zip(pde_terms, batches))
                net.velocity.requires_grad_(True)
            else:
                with torch.no_grad():
                    cs = [net.velocity(b["x"]) for b in batches]
                loss = sum(
                    t.weight * (pde_residual(net.wave, b, c) ** 2).sum(dim=-1).mean()
                    for t, b, c in zip(pde_terms, batches, cs)
                )
            loss.backward()
            opt.step()
            if step % 10 == 0:
                bar.set_postfix(pde=f"{loss.item():.2e}")
        projection.clear()

    def finish(net: InversionModel) -> None:
        """Solve the output layer once more for the trained hidden layers and velocity (the
        last training step's solve preceded that step's update), on fresh points."""
        with torch.no_grad():
            batches = {t.name: t.sample(0) for t in pde_terms}
            project_output_layer(net, batches, {t.name: t.weight for t in pde_terms})
        projection.clear()

    def write_velocity(run_dir, net: nn.Module) -> None:
        from pinnsiren.io import write_grid_data

        sol = evaluate(net)
        vel = GridData(grid=sol.grid, attrs=dict(sol.attrs), problem=sol.problem)
        for name in ("velocity", "true_velocity"):
            if name in sol.fields:
                vel.add(name, sol.fields[name], ("x", "y"))
        write_grid_data(run_dir / "velocity.h5", vel)
        if spec.output.plots:
            from pinnsiren.plots import plot_velocity

            plot_velocity(vel, run_dir / "velocity.png", title=f"{spec.name}: PINN inversion")

    return CompiledProblem(
        spec,
        ("x", "y"),
        2 * n_src,
        terms,
        evaluate,
        {
            "model": model,
            "pretrain": pretrain,
            "before_step": project_output_layer if least_squares else None,
            "finish": finish if least_squares else None,
            "writers": {"velocity": write_velocity},
            "receiver_data": data,
            "region": region,
        },
    )


def _feature_net(wave: Siren, cache: dict[int, Siren]) -> Siren:
    """A SIREN sharing ``wave``'s input and hidden layers whose outputs are its last hidden
    features φ_k (identity output layer), built once per network."""
    feat = cache.get(id(wave))
    if feat is None or feat.input_scale is not wave.input_scale:  # new, or moved by .to()
        k = wave.last.in_features
        with torch.random.fork_rng(devices=[]):  # its own initial weights are thrown away
            feat = Siren(
                wave.first.in_features,
                k,
                width=k,
                depth=len(wave.hidden),
                omega_0=wave.omega_0,
                hidden_omega=wave.hidden_omega,
            ).to(device=wave.last.weight.device, dtype=wave.last.weight.dtype)
        feat.first, feat.hidden, feat.input_scale = wave.first, wave.hidden, wave.input_scale
        with torch.no_grad():
            feat.last.weight.copy_(torch.eye(k))
            feat.last.bias.zero_()
        feat.last.requires_grad_(False)
        cache[id(wave)] = feat
    return feat


def _as_real_pairs(h: Tensor) -> Tensor:
    """Real features (N, K) → complex pairs (N, 2K) with zero imaginary parts."""
    return torch.stack([h, torch.zeros_like(h)], dim=-1).flatten(1)


def _real_pairs(z: Tensor) -> Tensor:
    """Complex (N, S) → real pairs (N, 2·S)."""
    return torch.stack([z.real, z.imag], dim=-1).flatten(1)


def _complex(pairs_: Tensor) -> Tensor:
    """Real pairs (N, 2·S) → complex (N, S)."""
    return torch.complex(pairs_[:, 0::2].double(), pairs_[:, 1::2].double())


def true_velocity_on(spec: ProblemSpec, grid: dict[str, np.ndarray]) -> np.ndarray | None:
    """The declared true velocity (synthesize.true_velocity or data.true_velocity) on a grid."""
    data = spec.pde.data
    field = data.synthesize.true_velocity if data.synthesize else data.true_velocity
    if field is None:
        return None
    X, Y = np.meshgrid(grid["x"], grid["y"], indexing="ij")
    return np.asarray(field({"x": X, "y": Y}), dtype=float)
