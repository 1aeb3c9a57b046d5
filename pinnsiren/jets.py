r"""Forward-mode derivative jets: value, gradient, pure second derivatives and a Laplacian
of a coordinate network in **one** forward pass.

Maths (collapsed Taylor mode / "forward Laplacian", Li et al. 2023)
--------------------------------------------------------------------
For a layer :math:`z = W h + b`, :math:`h' = \sigma(z)` and an input axis :math:`i`,

.. math::
    \partial_i h' &= \sigma'(z)\odot (W\,\partial_i h),\\
    \partial_i^2 h' &= \sigma'(z)\odot (W\,\partial_i^2 h) + \sigma''(z)\odot (W\,\partial_i h)^2 .

A weighted Laplacian :math:`\Delta_w = \sum_{i\in L} w_i\,\partial_i^2` is propagated as *one*
summed row instead of :math:`|L|` separate ones, because the recursion is linear in the
second-order rows:

.. math::
    \Delta_w h' = \sigma'(z)\odot (W\,\Delta_w h) + \sigma''(z)\odot\sum_{i\in L} w_i (W\,\partial_i h)^2 .

So a request needs :math:`R = 1 + k_1 + k_2` rows per point: the value, one first-derivative
row for every axis that appears anywhere in the request (:math:`k_1`), one row per requested pure
second derivative and at most one summed Laplacian row (:math:`k_2`).  Laplacian axes that are
also requested as pure second derivatives are not carried twice: their weighted pure rows are
added at the end.  E.g. the wave operator :math:`u_{tt} - c^2(u_{xx}+u_{yy})` on ``(x, y, t)``
is ``laplacian=(0, 1, 2), laplacian_weights=(-c², -c², 1)``: 5 rows, i.e. :math:`d+2`.

Engineering
-----------
* All rows of a layer are stacked as ``(R, N, width)`` and go through **one** matmul
  (``R·N`` rows); the bias is added to the value rows only.
* First layer (affine input map :math:`x\mapsto x\odot s`): the pre-activation Jacobian is the
  constant :math:`W_0\operatorname{diag}(s)`, so its derivative rows are broadcast columns of
  :math:`W_0` (no matmul) and its second-order pre-activation rows are zero.
* Activation steps are custom :class:`torch.autograd.Function` s: the forward writes all rows
  into one pre-allocated tensor, computes :math:`\sin` and :math:`\cos` once, and saves only the
  layer's pre-activation rows; the backward recomputes :math:`\sigma',\sigma'',\sigma'''` from
  them and applies the closed-form adjoint

  .. math::
      \bar q_r &= \sigma'\,\bar o_r,\qquad
      \bar g_i = \sigma'\,\bar o_{g_i} + 2\sigma''\,g_i T_i,\qquad
      T_i = \bar o_{s_i} + w_i\,\bar o_{\Delta},\\
      \bar p &= \sigma'\,\bar o_0 + \sigma''\Bigl(\sum_{r\ge1} a_r\,\bar o_r\Bigr)
              + \sigma'''\sum_i g_i^2 T_i ,

  where :math:`a_r` are the stacked pre-activation rows (:math:`g_i` first-order, :math:`q_r`
  second-order) and :math:`\bar o` the incoming gradient.  The backward is
  ``once_differentiable``: losses built on a jet can be differentiated once w.r.t. parameters
  (and inputs), which is what training needs.
* Large batches are processed in chunks so that a stacked ``(R, n, width)`` tensor stays below
  :data:`DEFAULT_CHUNK_BYTES` (big short-lived CPU buffers are page-faulted on every step).

Supported models: :class:`~pinnsiren.nets.Siren`, :class:`~pinnsiren.nets.TanhMLP`,
:class:`~pinnsiren.nets.ReluPE` (closed-form encoding derivatives).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from pinnsiren.nets import ReluPE, Siren, TanhMLP

__all__ = ["DEFAULT_CHUNK_BYTES", "DerivativeRequest", "Jet", "jet"]

#: Upper bound (bytes) of one stacked ``(R, n, width)`` activation tensor; the batch is split
#: into chunks to respect it.  ``None``/``0`` passed as ``chunk_bytes`` disables chunking.
DEFAULT_CHUNK_BYTES = 24 * 2**20


# --------------------------------------------------------------------------------------------
# Request and result
# --------------------------------------------------------------------------------------------


def _axes(name: str, value: Iterable[int]) -> tuple[int, ...]:
    """Validate a tuple of axis indices (non-negative integers)."""
    if isinstance(value, (int, str, bytes)):
        raise ValueError(f"DerivativeRequest.{name} must be a tuple of axis indices, got {value!r}")
    out = []
    for a in value:
        if isinstance(a, bool):
            raise ValueError(f"DerivativeRequest.{name}: axis {a!r} is not an integer")
        try:
            idx = operator.index(a)
        except TypeError:
            raise ValueError(f"DerivativeRequest.{name}: axis {a!r} is not an integer") from None
        if idx < 0:
            raise ValueError(f"DerivativeRequest.{name}: axis {idx} is negative")
        out.append(idx)
    return tuple(out)


@dataclass(frozen=True)
class DerivativeRequest:
    r"""Which derivatives of the network output a loss term needs.

    Attributes:
        gradient: input axes :math:`i` whose first derivative :math:`\partial_i u` is wanted.
        second: input axes whose pure second derivative :math:`\partial_i^2 u` is wanted.
        laplacian: axes summed in the (weighted) Laplacian :math:`\sum_i w_i\partial_i^2 u`.
        laplacian_weights: constant weight per ``laplacian`` axis (same order); ``None``
            means all ones.

    ``gradient`` and ``second`` are normalised to sorted tuples without repeats; a repeated
    Laplacian axis, a weight count that does not match, or weights without axes raise
    :class:`ValueError`.  Axes are checked against the model in :func:`jet`.
    """

    gradient: tuple[int, ...] = ()
    second: tuple[int, ...] = ()
    laplacian: tuple[int, ...] = ()
    laplacian_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        grad = tuple(sorted(set(_axes("gradient", self.gradient))))
        second = tuple(sorted(set(_axes("second", self.second))))
        lap = _axes("laplacian", self.laplacian)
        if len(set(lap)) != len(lap):
            raise ValueError(f"DerivativeRequest.laplacian repeats an axis: {lap}")
        weights = self.laplacian_weights
        if weights is not None:
            if isinstance(weights, (int, float, str, bytes)):
                raise ValueError(
                    f"DerivativeRequest.laplacian_weights must be a tuple, got {weights!r}"
                )
            try:
                weights = tuple(float(w) for w in weights)
            except (TypeError, ValueError):
                raise ValueError(
                    f"DerivativeRequest.laplacian_weights must be numbers, got {weights!r}"
                ) from None
            if not lap:
                raise ValueError("DerivativeRequest.laplacian_weights given without laplacian axes")
            if len(weights) != len(lap):
                raise ValueError(
                    f"DerivativeRequest.laplacian_weights has {len(weights)} entries for "
                    f"{len(lap)} laplacian axes"
                )
            if not all(math.isfinite(w) for w in weights):
                raise ValueError("DerivativeRequest.laplacian_weights must be finite")
        object.__setattr__(self, "gradient", grad)
        object.__setattr__(self, "second", second)
        object.__setattr__(self, "laplacian", lap)
        object.__setattr__(self, "laplacian_weights", weights)

    @property
    def weights(self) -> dict[int, float]:
        """Laplacian weight per axis (``{}`` when no Laplacian is requested)."""
        w = self.laplacian_weights or (1.0,) * len(self.laplacian)
        return dict(zip(self.laplacian, w))

    @property
    def axes(self) -> tuple[int, ...]:
        """Every axis whose first derivative has to be carried (sorted)."""
        return tuple(sorted({*self.gradient, *self.second, *self.laplacian}))

    @property
    def is_empty(self) -> bool:
        """True when only the value is requested."""
        return not self.axes

    def rows(self) -> int:
        """Number of stacked rows per point the jet carries (value included)."""
        extra = set(self.laplacian) - set(self.second)
        return 1 + len(self.axes) + len(self.second) + (1 if extra else 0)

    def merge(self, other: DerivativeRequest) -> DerivativeRequest:
        """Union of two requests (e.g. of several loss terms evaluated on the same points).

        Raises:
            ValueError: both carry a Laplacian and they differ (axes or weights).
        """
        if self.laplacian and other.laplacian and self.weights != other.weights:
            raise ValueError(
                "cannot merge two different Laplacians "
                f"{self.weights} and {other.weights}; request pure second derivatives instead"
            )
        lap_src = self if self.laplacian else other
        return DerivativeRequest(
            gradient=(*self.gradient, *other.gradient),
            second=(*self.second, *other.second),
            laplacian=lap_src.laplacian,
            laplacian_weights=lap_src.laplacian_weights,
        )


@dataclass
class Jet:
    """Result of :func:`jet`; every tensor has shape ``(N, out_features)``.

    Attributes:
        value: the network output :math:`u`.
        gradient: ``axis -> ∂u/∂x_axis`` for the requested ``gradient`` axes.
        second: ``axis -> ∂²u/∂x_axis²`` for the requested ``second`` axes.
        laplacian: the weighted Laplacian, or ``None`` if not requested.
    """

    value: Tensor
    gradient: dict[int, Tensor] = field(default_factory=dict)
    second: dict[int, Tensor] = field(default_factory=dict)
    laplacian: Tensor | None = None


# --------------------------------------------------------------------------------------------
# Row plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Row layout ``[value | ∂_a for a in axes | ∂²_a for a in second | Δ_w over lap]``.

    ``second_pos``/``lap_pos`` index into ``axes``; the carried Laplacian row covers only the
    Laplacian axes that are not also pure-second rows.
    """

    axes: tuple[int, ...]
    second: tuple[int, ...]
    second_pos: tuple[int, ...]
    lap_pos: tuple[int, ...]
    lap_w: tuple[float, ...]

    @property
    def k(self) -> int:
        return len(self.axes)

    @property
    def has_lap(self) -> bool:
        return bool(self.lap_pos)

    @property
    def rows(self) -> int:
        return 1 + self.k + len(self.second_pos) + int(self.has_lap)

    def coupling(self) -> list[tuple[int, int | None, float | None]]:
        """For each carried axis position ``i``: (i, its pure-second row or None, lap weight)."""
        k = self.k
        out: list[tuple[int, int | None, float | None]] = []
        lap = dict(zip(self.lap_pos, self.lap_w))
        for i in range(k):
            srow = 1 + k + self.second_pos.index(i) if i in self.second_pos else None
            out.append((i, srow, lap.get(i)))
        return out

    @staticmethod
    def from_request(req: DerivativeRequest) -> _Plan:
        axes = req.axes
        pos = {a: i for i, a in enumerate(axes)}
        w = req.weights
        lap_axes = [a for a in axes if a in w and a not in req.second]
        return _Plan(
            axes=axes,
            second=req.second,
            second_pos=tuple(pos[a] for a in req.second),
            lap_pos=tuple(pos[a] for a in lap_axes),
            lap_w=tuple(w[a] for a in lap_axes),
        )


# --------------------------------------------------------------------------------------------
# Activations: σ and its derivatives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Act:
    r"""Pointwise activation of the pre-activation :math:`p`.

    ``sine``: :math:`\sigma = \sin\omega p,\ \sigma' = \omega\cos\omega p,\
    \sigma'' = -\omega^2\sin\omega p,\ \sigma''' = -\omega^3\cos\omega p`;
    ``tanh``: :math:`t,\ 1-t^2,\ -2t(1-t^2),\ (1-t^2)(6t^2-2)`;
    ``relu``: :math:`\max(p,0),\ [p>0],\ 0,\ 0` (what nested autograd gives a.e.).
    """

    kind: str
    omega: float = 1.0

    def forward(self, p: Tensor, out0: Tensor) -> tuple[Tensor, Tensor | None]:
        """Write :math:`\\sigma(p)` into ``out0``; return :math:`(\\sigma', \\sigma'')`."""
        if self.kind == "sine":
            wp = p * self.omega
            torch.sin(wp, out=out0)
            d1 = torch.cos(wp, out=wp).mul_(self.omega)
            return d1, out0 * (-self.omega * self.omega)
        if self.kind == "tanh":
            torch.tanh(p, out=out0)
            d1 = torch.mul(out0, out0).neg_().add_(1.0)
            return d1, torch.mul(out0, d1).mul_(-2.0)
        torch.clamp_min(p, 0.0, out=out0)
        return (p > 0).to(p.dtype), None

    def derivatives(self, p: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Return :math:`(\\sigma', \\sigma'', \\sigma''')` at ``p``."""
        w = self.omega
        if self.kind == "sine":
            wp = p * w
            d2 = torch.sin(wp).mul_(-w * w)
            c = torch.cos(wp, out=wp)
            d1 = c * w
            return d1, d2, c.mul_(-w * w * w)
        if self.kind == "tanh":
            t = torch.tanh(p)
            t2 = t * t
            d1 = torch.neg(t2).add_(1.0)
            d2 = torch.mul(t, d1).mul_(-2.0)
            d3 = t2.mul_(6.0).sub_(2.0).mul_(d1)
            return d1, d2, d3
        return (p > 0).to(p.dtype), None, None


# --------------------------------------------------------------------------------------------
# Autograd functions for one activation step on stacked rows
# --------------------------------------------------------------------------------------------


def _fill_second_rows(
    out: Tensor,
    plan: _Plan,
    d1: Tensor,
    d2: Tensor | None,
    g: Tensor,
    q: Tensor | None,
) -> None:
    r"""Second-order output rows: :math:`\sigma' q + \sigma'' (\text{weighted } g^2)`.

    ``g`` is ``(k, N, W)`` (or ``(k, 1, W)`` broadcast constants) and ``q`` the carried
    second-order pre-activation rows, ``None`` when they are zero (first layer).
    """
    r0 = 1 + plan.k
    sq: list[tuple[int, Tensor | None]] = []
    for j, i in enumerate(plan.second_pos):
        sq.append((r0 + j, g[i] * g[i] if d2 is not None else None))
    if plan.has_lap:
        acc = None
        if d2 is not None:
            for i, w in zip(plan.lap_pos, plan.lap_w):
                if acc is None:
                    acc = torch.mul(g[i], g[i]).mul_(w)
                else:
                    acc.addcmul_(g[i], g[i], value=w)
        sq.append((plan.rows - 1, acc))
    for r, gsq in sq:
        row = out[r]
        if q is not None:
            torch.mul(q[r - r0], d1, out=row)
            if gsq is not None and d2 is not None:
                if gsq.shape[0] == 1:
                    row.addcmul_(d2, gsq)
                else:
                    gsq.mul_(d2)
                    row.add_(gsq)
        elif gsq is not None and d2 is not None:
            torch.mul(d2, gsq, out=row)
        else:
            row.zero_()


class _StackedActJet(torch.autograd.Function):
    """Activation step on stacked rows ``A = H Wᵀ`` of shape ``(R, N, W)`` (bias on row 0)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, a: Tensor, bias: Tensor | None, act: _Act, plan: _Plan
    ) -> Tensor:
        p = a[0] + bias if bias is not None else a[0]
        out = torch.empty_like(a)
        d1, d2 = act.forward(p, out[0])
        k = plan.k
        if k:
            torch.mul(a[1 : 1 + k], d1, out=out[1 : 1 + k])
        if plan.rows > 1 + k:
            _fill_second_rows(out, plan, d1, d2, a[1 : 1 + k], a[1 + k :])
        ctx.save_for_backward(a, bias)
        ctx.act, ctx.plan = act, plan  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a, bias = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        p = a[0] + bias if bias is not None else a[0]
        d1, d2, d3 = act.derivatives(p)
        rows, k = plan.rows, plan.k
        da = torch.empty_like(a)
        dp = da[0]
        torch.mul(grad[0], d1, out=dp)
        if rows > 1:
            torch.mul(grad[1:], d1, out=da[1:])  # σ' ō_r for every derivative row
        if rows > 1 and d2 is not None:
            b2 = torch.mul(a[1], grad[1])
            for r in range(2, rows):
                b2.addcmul_(a[r], grad[r])
            b2.mul_(d2)
            dp.add_(b2)
            b3 = None
            for i, srow, w in plan.coupling():
                if srow is None and w is None:
                    continue
                if srow is not None and w is not None:
                    t = torch.add(grad[srow], grad[rows - 1], alpha=w)
                elif srow is not None:
                    t = grad[srow]
                else:
                    t = grad[rows - 1] * w
                u = a[1 + i] * t  # g_i T_i
                da[1 + i].addcmul_(d2, u, value=2.0)
                if b3 is None:
                    b3 = u.mul_(a[1 + i])
                else:
                    b3.addcmul_(u, a[1 + i])
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3, b3)
        dbias = dp.sum(0) if bias is not None and ctx.needs_input_grad[1] else None  # type: ignore[attr-defined]
        return da, dbias, None, None


class _FirstActJet(torch.autograd.Function):
    """Activation step after the affine first layer: value pre-activation ``p`` (N, W) and
    constant first-order pre-activation rows ``c`` (k, W); second-order rows are zero."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, p: Tensor, c: Tensor, act: _Act, plan: _Plan
    ) -> Tensor:
        out = p.new_empty((plan.rows, *p.shape))
        d1, d2 = act.forward(p, out[0])
        k = plan.k
        g = c.unsqueeze(1)  # (k, 1, W)
        torch.mul(g, d1, out=out[1 : 1 + k])
        if plan.rows > 1 + k:
            _fill_second_rows(out, plan, d1, d2, g, None)
        ctx.save_for_backward(p, c)
        ctx.act, ctx.plan = act, plan  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        p, c = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        d1, d2, d3 = act.derivatives(p)
        rows, k = plan.rows, plan.k
        dp = grad[0] * d1
        dc = torch.empty_like(c)
        for i in range(k):
            dc[i] = (grad[1 + i] * d1).sum(0)
        if d2 is not None:
            b2 = grad[1] * c[0]
            for i in range(1, k):
                b2.addcmul_(grad[1 + i], c[i])
            dp.addcmul_(d2, b2)
            b3 = None
            for i, srow, w in plan.coupling():
                if srow is None and w is None:
                    continue
                if srow is not None and w is not None:
                    t = torch.add(grad[srow], grad[rows - 1], alpha=w)
                elif srow is not None:
                    t = grad[srow]
                else:
                    t = grad[rows - 1] * w
                dc[i].add_((t * d2).sum(0) * c[i], alpha=2.0)  # 2 c_i Σ_n σ'' T_i
                if b3 is None:
                    b3 = t * (c[i] * c[i])
                else:
                    b3.addcmul_(t, c[i] * c[i])
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3, b3)
        return dp, dc, None, None


# --------------------------------------------------------------------------------------------
# Model walk
# --------------------------------------------------------------------------------------------


def _stacked_linear(h: Tensor, layer: nn.Linear) -> Tensor:
    """``(R, N, W_in) -> (R, N, W_out)``: one matmul over all ``R·N`` rows, no bias."""
    rows, n, _ = h.shape
    return torch.mm(h.reshape(rows * n, -1), layer.weight.t()).view(rows, n, -1)


def _encoding_rows(model: ReluPE, x: Tensor, plan: _Plan) -> Tensor:
    r"""Closed-form jet rows of the positional encoding, shape ``(R, N, d(2L+1))``.

    With :math:`\xi_a = s_a x_a` and :math:`\phi_{ak} = f_k\xi_a`:
    :math:`\partial_a\xi = s_a e_a`, :math:`\partial_a\sin\phi_{ak} = f_k s_a\cos\phi_{ak}`,
    :math:`\partial_a\cos\phi_{ak} = -f_k s_a\sin\phi_{ak}`,
    :math:`\partial_a^2 (\sin,\cos)\phi_{ak} = -(f_k s_a)^2(\sin,\cos)\phi_{ak}`; only the
    entries of axis :math:`a` are non-zero.
    """
    n, d = x.shape
    nf = model.num_frequencies
    s = model.input_scale
    f = model.frequencies
    xi = x * s
    phase = xi.unsqueeze(-1) * f  # (N, d, L)
    sin, cos = torch.sin(phase), torch.cos(phase)
    rows = x.new_zeros((plan.rows, n, d * (2 * nf + 1)))
    rows[0] = torch.cat([xi, sin.flatten(1), cos.flatten(1)], dim=1)
    sin_lo, cos_lo = d, d + d * nf

    def put(r: int, a: int, coef: float | Tensor, with_x: bool, order: int) -> None:
        fs = f * s[a]  # (L,)
        if order == 1:
            if with_x:
                rows[r, :, a] = rows[r, :, a] + s[a] * coef
            rows[r, :, sin_lo + a * nf : sin_lo + (a + 1) * nf] += coef * fs * cos[:, a]
            rows[r, :, cos_lo + a * nf : cos_lo + (a + 1) * nf] -= coef * fs * sin[:, a]
        else:
            rows[r, :, sin_lo + a * nf : sin_lo + (a + 1) * nf] -= coef * fs * fs * sin[:, a]
            rows[r, :, cos_lo + a * nf : cos_lo + (a + 1) * nf] -= coef * fs * fs * cos[:, a]

    for i, a in enumerate(plan.axes):
        put(1 + i, a, 1.0, True, 1)
    for j, a in enumerate(plan.second):
        put(1 + plan.k + j, a, 1.0, False, 2)
    for i, w in zip(plan.lap_pos, plan.lap_w):
        put(plan.rows - 1, plan.axes[i], w, False, 2)
    return rows


def _rows(model: nn.Module, x: Tensor, plan: _Plan) -> Tensor:
    """Propagate the stacked rows through ``model``; returns ``(R, N, out_features)``."""
    if isinstance(model, ReluPE):
        act = _Act("relu")
        h = _StackedActJet.apply(
            _stacked_linear(_encoding_rows(model, x, plan), model.first),
            model.first.bias,
            act,
            plan,
        )
    else:
        if isinstance(model, Siren):
            act0, act = _Act("sine", model.omega_0), _Act("sine", model.hidden_omega)
        else:
            act0 = act = _Act("tanh")
        s = model.input_scale
        p = nn.functional.linear(x * s, model.first.weight, model.first.bias)
        idx = list(plan.axes)
        c = (model.first.weight[:, idx] * s[idx]).t()  # (k, W): ∂p/∂x_a
        h = _FirstActJet.apply(p, c, act0, plan)
    for layer in model.hidden:
        h = _StackedActJet.apply(_stacked_linear(h, layer), layer.bias, act, plan)
    last = model.last
    y = _stacked_linear(h, last)
    if isinstance(model, Siren) and not model.outermost_linear:
        return _StackedActJet.apply(y, last.bias, act, plan)
    bias_rows = torch.zeros_like(y[:, :1, :])
    bias_rows[0] = last.bias
    return y + bias_rows


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------

_SUPPORTED = (Siren, TanhMLP, ReluPE)


def _check_model(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    for cls in _SUPPORTED:
        if isinstance(model, cls):
            if type(model).forward is not cls.forward:
                raise ValueError(
                    f"jet: {type(model).__name__} overrides forward(); its derivatives cannot "
                    "be computed by the jet engine (use nested autograd)"
                )
            return model
    raise ValueError(
        f"jet: unsupported model type {type(model).__name__}; expected one of "
        + ", ".join(c.__name__ for c in _SUPPORTED)
    )


def jet(
    model: nn.Module,
    x: Tensor,
    request: DerivativeRequest,
    *,
    chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
) -> Jet:
    r"""Evaluate the network and exactly the requested input derivatives in one pass.

    Args:
        model: a :class:`~pinnsiren.nets.Siren`, :class:`~pinnsiren.nets.TanhMLP` or
            :class:`~pinnsiren.nets.ReluPE`.
        x: points, shape ``(N, in_features)``, same dtype/device as the model.
        request: the derivatives wanted.
        chunk_bytes: split the batch so that one stacked ``(R, n, width)`` tensor stays below
            this many bytes (``None`` or ``0``: no split).  Results do not depend on it.

    Returns:
        A :class:`Jet`; everything is differentiable w.r.t. the parameters (once).

    Raises:
        ValueError: unsupported model, malformed ``x``, or an axis outside ``[0, in_features)``.
    """
    if not isinstance(request, DerivativeRequest):
        raise ValueError(f"jet: request must be a DerivativeRequest, got {type(request).__name__}")
    net = _check_model(model)
    d = net.in_features
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != d:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"jet: x must have shape (N, {d}), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"jet: x must be a floating-point tensor, got {x.dtype}")
    bad = [a for a in request.axes if a >= d]
    if bad:
        raise ValueError(f"jet: axis {bad[0]} out of range for a model with {d} inputs")
    if request.is_empty:
        return Jet(value=net(x))
    plan = _Plan.from_request(request)
    n = x.shape[0]
    chunk = n
    if chunk_bytes:
        per_point = plan.rows * net.width * x.element_size()
        pieces = -(-n * per_point // chunk_bytes)  # ceil
        chunk = -(-n // pieces)  # equal-sized chunks
    if chunk >= n:
        rows = _rows(net, x, plan)
    else:
        rows = torch.cat([_rows(net, xc, plan) for xc in x.split(chunk)], dim=1)
    return _unpack(rows, request, plan)


def _unpack(rows: Tensor, request: DerivativeRequest, plan: _Plan) -> Jet:
    pos = {a: i for i, a in enumerate(plan.axes)}
    second = {a: rows[1 + plan.k + j] for j, a in enumerate(plan.second)}
    lap: Tensor | None = None
    if request.laplacian:
        parts: list[Tensor] = []
        if plan.has_lap:
            parts.append(rows[plan.rows - 1])
        for a, w in request.weights.items():
            if a in second:
                parts.append(second[a] * w if w != 1.0 else second[a])
        lap = parts[0]
        for t in parts[1:]:
            lap = lap + t
    return Jet(
        value=rows[0],
        gradient={a: rows[1 + pos[a]] for a in request.gradient},
        second=second,
        laplacian=lap,
    )
