"""Loss terms: what a family compiles to and what the trainer minimises.

A :class:`Term` pairs a sampler (``sample(step, n)`` → a batch of ``n`` points and the
coefficients at them, float64 on the CPU, then moved to the training device) with a residual
function of the model on that batch; its loss is the mean over points of the squared residual
(summed over components), or the term's own ``reduce``.

A :class:`LinearTerm` has a residual that is affine in the output of one network of the model
(the *field network*, the model itself for a forward problem),

    r(x) = L[u](x) − g(x),

with ``operator`` the linear map L from the jet of u (value and the requested derivatives) to
the residual components, and ``target`` the right-hand side g. Because u = W φ + b is linear
in the field network's output layer (W, b), so is r: :mod:`pinnsiren.engine.lstsq` solves for
that layer by least squares from the same two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, Jet, jet

Batch = dict[str, Tensor]
#: ``sampler(step, n)``: ``n`` fresh points (and coefficients) for training step ``step``.
Sampler = Callable[[int, int], Batch]


def identity_network(model: nn.Module) -> nn.Module:
    """The field network of a forward problem: the model itself."""
    return model


@dataclass(kw_only=True)
class Term:
    """A named loss term: ``weight · mean(residual(model, sample(step))²)``.

    ``fn(model, batch)`` is the residual; ``reduce(r, batch)`` replaces the mean of squares
    (e.g. causal weights, or a prior whose residual is already a penalty). A term whose weight
    defaults to another's ``follows`` it and takes that term's phase override too.
    """

    name: str
    weight: float
    sampler: Sampler
    points: int
    fn: Callable[[nn.Module, Batch], Tensor] | None = None
    reduce: Callable[[Tensor, Batch], Tensor] | None = None
    follows: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def sample(self, step: int, n: int | None = None) -> Batch:
        """A batch of ``n`` points (default: the term's ``points``) on the training device."""
        return {
            k: v.to(device=self.device, dtype=self.dtype)
            if v.is_floating_point()
            else v.to(self.device)
            for k, v in self.sampler(step, self.points if n is None else n).items()
        }

    def residual(self, model: nn.Module, batch: Batch) -> Tensor:
        assert self.fn is not None, f"term {self.name} has no residual"
        return self.fn(model, batch)

    def loss_of(self, r: Tensor, batch: Batch) -> Tensor:
        """The term's loss from its residual ``r`` (points first)."""
        if self.reduce is not None:
            return self.reduce(r, batch)
        return (r**2).sum(dim=-1).mean() if r.dim() > 1 else (r**2).mean()

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.loss_of(self.residual(model, batch), batch)


def plain_coefficients(batch: Batch, model: nn.Module) -> Batch:
    """The coefficients of a linear term whose operator depends on the batch alone."""
    return batch


@dataclass(kw_only=True)
class LinearTerm(Term):
    """A term with residual r = L[u] − g, affine in the field network's output u.

    ``prepare(batch, model)`` gives the coefficients of L and g at the batch's points (the
    batch itself, plus whatever a coefficient network of the model supplies, e.g. an
    inversion's ω²/c(x)²); it is evaluated once per batch. ``operator(jet, coeffs)``: L applied
    to the jet of u, shape (N, m·G) — linear in the jet, acting on the output channels in G
    identical groups of ``group`` channels (group k of the residual depends only on group k of
    u, through the same map), and written with plain tensor operations (the least-squares
    assembly maps it over the features with :func:`torch.func.vmap`). ``target(coeffs)``: g,
    same shape. ``network(model)``: the field network. ``in_fit``: the term's rows enter the
    output-layer solve (false for a term that must not steer the solved layer, such as the
    receiver data of an inversion).
    """

    request: DerivativeRequest
    operator: Callable[[Jet, Batch], Tensor]
    target: Callable[[Batch], Tensor]
    prepare: Callable[[Batch, nn.Module], Batch] = plain_coefficients
    network: Callable[[nn.Module], nn.Module] = identity_network
    in_fit: bool = True
    #: the operator is complex-linear on (Re, Im) pairs, L[i u] = i L[u], and its residual
    #: components are such pairs: the least-squares assembly then evaluates one channel
    complex_pairs: bool = False

    def residual(self, model: nn.Module, batch: Batch) -> Tensor:
        coeffs = self.prepare(batch, model)
        j = jet(self.network(model), batch["x"], self.request)
        r = self.operator(j, coeffs) - self.target(coeffs)
        return r
