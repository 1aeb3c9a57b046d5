r"""Networks with features switched on in one region: piecewise features for a coefficient with
a jump (an inclusion).

A smooth network cannot follow a field whose second derivatives jump across an interface Γ
(the Helmholtz field of a medium with a piecewise constant velocity is C¹, not C²): the least
squares spread the misfit of the jump over the whole domain. :class:`RegionSum` adds a second
set of features that exist only inside the region Ω,

    u(x) = W [φ(x); 1_Ω(x) ψ(x)] + b,

so u may bend differently on both sides; continuity of u and of ∂ₙu across Γ is then imposed
by rows on Γ, which only involve the inner features: [u] = W_ψ ψ(x_Γ), [∂ₙu] = W_ψ ∂ₙψ(x_Γ).
:meth:`RegionSum.jump` is the network of that jump (the outer features zeroed), so a linear
term on Γ evaluates it with the ordinary jet machinery. Ω is a :class:`Disk` or
:class:`BoxRegion` (closed: Γ belongs to the inside).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, Jet, jet
from pinnsiren.engine.nets import Siren


class Disk(nn.Module):
    """1 on the closed disk |x − center| ≤ radius, 0 outside."""

    def __init__(self, center: tuple[float, ...], radius: float) -> None:
        super().__init__()
        self.register_buffer("center", torch.tensor(center, dtype=torch.float64))
        self.radius = float(radius)

    def forward(self, x: Tensor) -> Tensor:
        d2 = ((x - self.center.to(x.dtype)) ** 2).sum(dim=1)
        return (d2 <= self.radius**2).to(x.dtype)


class BoxRegion(nn.Module):
    """1 on the closed box lower ≤ x ≤ upper, 0 outside."""

    def __init__(self, lower: tuple[float, ...], upper: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("lower", torch.tensor(lower, dtype=torch.float64))
        self.register_buffer("upper", torch.tensor(upper, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        inside = (x >= self.lower.to(x.dtype)) & (x <= self.upper.to(x.dtype))
        return inside.all(dim=1).to(x.dtype)


def _masked(j: Jet, mask: Tensor) -> Jet:
    m = mask[:, None]
    return Jet(
        value=j.value * m,
        gradient={a: t * m for a, t in j.gradient.items()},
        second={a: t * m for a, t in j.second.items()},
        laplacian=None if j.laplacian is None else j.laplacian * m,
    )


def _joined(a: Jet, b: Jet) -> Jet:
    return Jet(
        value=torch.cat([a.value, b.value], dim=1),
        gradient={k: torch.cat([a.gradient[k], b.gradient[k]], dim=1) for k in a.gradient},
        second={k: torch.cat([a.second[k], b.second[k]], dim=1) for k in a.second},
        laplacian=None if a.laplacian is None else torch.cat([a.laplacian, b.laplacian], dim=1),
    )


def _zeros(j: Jet) -> Jet:
    return _masked(j, torch.zeros_like(j.value[:, 0]))


class RegionSum(nn.Module):
    """u = W [φ; 1_Ω ψ] + b (module docstring): ``outer`` and ``inner`` are SIRENs whose last
    hidden layers give φ and ψ (their own output layers are not used); ``last`` is the shared
    affine output layer. Derivatives of the mask vanish (it is piecewise constant)."""

    def __init__(self, outer: Siren, inner: Siren, region: nn.Module, out_features: int) -> None:
        super().__init__()
        self.outer, self.inner, self.region = outer, inner, region
        self.in_features = outer.in_features
        self.last = nn.Linear(outer.last.in_features + inner.last.in_features, out_features)

    def feature_jet(self, x: Tensor, request: DerivativeRequest) -> Jet:
        outer = jet(self.outer, x, request, features=True)
        inner = _masked(jet(self.inner, x, request, features=True), self.region(x))
        return _joined(outer, inner)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(self.feature_jet(x, DerivativeRequest()).value)

    def jump(self) -> RegionJump:
        """The network of the jump across Γ: u from inside minus u from outside."""
        return RegionJump(self)


class RegionJump(nn.Module):
    """W_ψ ψ(x): the inner features alone, with the region's output layer (the constant
    feature, the bias, does not jump: ``feature_constant`` 0)."""

    feature_constant = 0.0

    def __init__(self, net: RegionSum) -> None:
        super().__init__()
        self.net = net
        self.last = net.last
        self.in_features = net.in_features

    def feature_jet(self, x: Tensor, request: DerivativeRequest) -> Jet:
        outer = jet(self.net.outer, x, request, features=True)
        return _joined(_zeros(outer), jet(self.net.inner, x, request, features=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_jet(x, DerivativeRequest()).value @ self.last.weight.T
