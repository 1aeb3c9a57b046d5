r"""The Helmholtz operator on a network: (Δ + ω²/c(x)²) u = f on a 2-D box, complex u,
time convention e^{+iωt}, as real pairs (Re, Im).

With a PML the coordinates are stretched by e_j(x_j) = 1 − iσ_j(x_j)/ω, using the profile of
:func:`reference_solvers.helmholtz.pml_profile` (the FD reference solves the same equation),
and the residual is written in divergence form

    r = ∂x(A ∂x u) + ∂y(B ∂y u) + C (ω²/c²) u − C f,
    A = e_y/e_x, B = e_x/e_y, C = e_x e_y,

expanded with the product rule: ∂x(A u_x) = A u_xx + A_x u_x with A_x = −e_y e_x'/e_x²,
e_x' = −iσ_x'/ω (and likewise for B). Without a PML, A = B = C = 1. All complex arithmetic is
done on real pairs (..., 2·S), one pair per field; the operator is linear in u and acts on
every pair alike, which makes the output layer solvable by least squares with a real 2N
system (:mod:`pinnsiren.engine.lstsq`, group 2).

Sources are normalised Gaussians a g_σ(x − x_s), g_σ = exp(−|r|²/2σ²)/(2πσ²)
(:func:`reference_solvers.helmholtz.gaussian_density`, the one definition).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.sampling import gaussian_points
from pinnsiren.engine.terms import Batch, LinearTerm, identity_network, plain_coefficients
from pinnsiren.families.helmholtz.schema import ComplexField, Source
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.helmholtz import PML, gaussian_density, pml_profile

#: What the residual needs of u: the gradient and the pure second derivatives.
HELMHOLTZ_REQUEST = DerivativeRequest(gradient=(0, 1), second=(0, 1))
AXES = ("x", "y")


def pml_of(spec: ProblemBase) -> PML | None:
    if spec.boundary.kind != "pml":
        return None
    return PML(width=spec.boundary.width, a0=spec.boundary.strength)


def physical_box(spec: ProblemBase) -> Box:
    """The box inside the PML's inner edge (the whole domain without a PML)."""
    box = Box.from_domain(spec.domain, AXES)
    return box.shrunk(spec.boundary.width) if spec.boundary.kind == "pml" else box


def source_density(x: np.ndarray, y: np.ndarray, sources: Sequence[Source]) -> np.ndarray:
    """f(x, y) = Σ_s a_s g_σ(x − x_s), complex, at points (broadcastable arrays)."""
    f = np.zeros(np.broadcast(x, y).shape, dtype=complex)
    for s in sources:
        f += gaussian_density(x, y, s.position, s.sigma, s.amplitude)
    return f


def source_densities(x: np.ndarray, y: np.ndarray, sources: Sequence[Source]) -> np.ndarray:
    """Each source's own density f_s on the grid x × y: complex (S, nx, ny)."""
    X, Y = np.meshgrid(x, y, indexing="ij")
    return np.stack([source_density(X, Y, [s]) for s in sources])


def complex_field(f: ComplexField | None, coords: dict) -> np.ndarray | complex:
    """A ``{real, imag}`` field at points (0 when absent)."""
    if f is None:
        return 0.0
    return np.asarray(f.real(coords), dtype=float) + 1j * np.asarray(f.imag(coords), dtype=float)


def pml_coefficients(
    x: np.ndarray, y: np.ndarray, spec: ProblemBase, omega: float
) -> dict[str, np.ndarray]:
    """Complex A, A_x, B, B_y, C of the divergence-form operator at points (x, y)."""
    pml = pml_of(spec)
    (xl, xh), (yl, yh) = spec.domain["x"], spec.domain["y"]
    sx, dsx = pml_profile(x, xl, xh, pml, omega)
    sy, dsy = pml_profile(y, yl, yh, pml, omega)
    ex, ey = 1 - 1j * sx / omega, 1 - 1j * sy / omega
    dex, dey = -1j * dsx / omega, -1j * dsy / omega
    return {
        "A": ey / ex,
        "Ax": -ey * dex / ex**2,
        "B": ex / ey,
        "By": -ex * dey / ey**2,
        "C": ex * ey,
    }


def pairs(z: np.ndarray) -> Tensor:
    """Complex array (N,) or (N, S) → real tensor (N, 2) or (N, 2·S) of (Re, Im) pairs."""
    z = np.asarray(z)
    out = torch.as_tensor(np.stack([z.real, z.imag], axis=-1), dtype=torch.float64)
    return out.flatten(1) if z.ndim == 2 else out


def cmul(a: Tensor, u: Tensor) -> Tensor:
    """Product of a complex coefficient (N, 2) with every pair of u (N, 2·S)."""
    ar, ai = a[..., 0:1], a[..., 1:2]
    ur, ui = u[..., 0::2], u[..., 1::2]
    out = torch.stack([ar * ur - ai * ui, ar * ui + ai * ur], dim=-1)
    return out.flatten(-2)


def coefficient_batch(points: Tensor, spec: ProblemBase, omega: float) -> Batch:
    """Points plus the operator's PML coefficients A, A_x, B, B_y, C as pairs (float64, CPU)."""
    co = pml_coefficients(points[:, 0].numpy(), points[:, 1].numpy(), spec, omega)
    return {"x": points, **{k: pairs(v) for k, v in co.items()}}


def helmholtz_operator(j: Jet, b: Batch) -> Tensor:
    """L u = A u_xx + A_x u_x + B u_yy + B_y u_y + (C k²) u on real pairs (N, 2·S).

    ``b["Ck2"]`` is C·ω²/c² as a pair (N, 2) (fixed, or from an inversion's velocity).
    """
    return (
        cmul(b["A"], j.second[0])
        + cmul(b["Ax"], j.gradient[0])
        + cmul(b["B"], j.second[1])
        + cmul(b["By"], j.gradient[1])
        + cmul(b["Ck2"], j.value)
    )


def helmholtz_target(b: Batch) -> Tensor:
    """The right-hand side C f of the residual, real pairs (``b["g"]``)."""
    return b["g"]


def pde_terms(
    spec: ProblemBase,
    gen: torch.Generator,
    batch_at: Callable[[Tensor], Batch],
    sources: Sequence[Source],
    *,
    with_source_term: bool,
    prepare: Callable[[Batch, nn.Module], Batch] = plain_coefficients,
    network: Callable[[nn.Module], nn.Module] = identity_network,
) -> list[LinearTerm]:
    """The PDE terms of a Helmholtz problem, residual r = L u − C f on real pairs:

    * ``residual`` at points uniform over the whole box (PML included);
    * ``interior`` (when ``sampling.points.interior`` > 0) at points uniform inside the PML's
      inner edge, where the solution is wanted (weight: the residual's, unless given);
    * ``source`` (``with_source_term``: the total field) at points drawn from N(x_s, (2σ)²)
      around each source, where f is large.

    ``batch_at(points)`` gives the coefficients at the points; ``prepare``/``network`` are those
    of the :class:`~pinnsiren.engine.terms.LinearTerm` (an inversion's velocity, its wavefield
    network).
    """
    box = Box.from_domain(spec.domain, AXES)
    inner = physical_box(spec)

    def term(name: str, weight: float, sampler, points: int, follows=None) -> LinearTerm:
        return LinearTerm(
            name=name,
            weight=weight,
            sampler=sampler,
            points=points,
            request=HELMHOLTZ_REQUEST,
            operator=helmholtz_operator,
            target=helmholtz_target,
            prepare=prepare,
            network=network,
            follows=follows,
            complex_pairs=True,
        )

    def sample_source(step: int, n: int) -> Batch:
        per = max(1, n // len(sources))
        pts = [gaussian_points(per, s.position, 2 * s.sigma, gen, box) for s in sources]
        return batch_at(torch.cat(pts))

    out = [
        term(
            "residual",
            spec.weight("residual"),
            lambda step, n: batch_at(box.uniform(n, gen)),
            spec.points("residual", 4096),
        )
    ]
    n_interior = spec.points("interior", 0)
    if n_interior > 0:
        out.append(
            term(
                "interior",
                spec.weight("interior", spec.weight("residual")),
                lambda step, n: batch_at(inner.uniform(n, gen)),
                n_interior,
                follows=None if "interior" in spec.loss.weights else "residual",
            )
        )
    if with_source_term:
        out.append(
            term("source", spec.weight("source"), sample_source, spec.points("source", 1024))
        )
    return out
