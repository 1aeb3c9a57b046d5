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
    \Delta_w h' = \sigma'(z)\odot (W\,\Delta_w h)
                 + \sigma''(z)\odot\sum_{i\in L} w_i (W\,\partial_i h)^2 .

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
* On CPU the batch is processed in chunks so that one stacked ``(R, n, width)`` tensor stays
  below :data:`DEFAULT_CHUNK_BYTES`.  glibc serves large requests with fresh ``mmap`` pages
  that are zero-filled by page faults on first touch, on every step; measured on the 2-core
  dev box, an unchunked 8192-point wave step spent ~1/3 of its time in ~130k page faults,
  while 8 MiB pieces are recycled from the heap (0 faults).  Results do not depend on it.

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

#: Default upper bound (bytes) of one stacked ``(R, n, width)`` tensor for CPU inputs; the
#: batch is split into equal chunks to respect it (see the module notes).
DEFAULT_CHUNK_BYTES = 8 * 2**20


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

    ``second_pos``/``lap_pos`` index into ``axes``.  The carried Laplacian row covers only the
    Laplacian axes that are not pure-second rows anyway and have a non-zero weight.
    ``couple`` lists, for every carried axis position ``i`` that feeds a second-order row,
    ``(i, row of its pure second derivative or None, its weight in the Laplacian row or None)``.
    """

    axes: tuple[int, ...]
    second: tuple[int, ...]
    second_pos: tuple[int, ...]
    lap_pos: tuple[int, ...]
    lap_w: tuple[float, ...]
    couple: tuple[tuple[int, int | None, float | None], ...]

    @property
    def k(self) -> int:
        return len(self.axes)

    @property
    def has_lap(self) -> bool:
        return bool(self.lap_pos)

    @property
    def rows(self) -> int:
        return 1 + self.k + len(self.second_pos) + int(self.has_lap)

    @staticmethod
    def from_request(req: DerivativeRequest) -> _Plan:
        axes = req.axes
        pos = {a: i for i, a in enumerate(axes)}
        w = req.weights
        lap_axes = [a for a in axes if w.get(a, 0.0) != 0.0 and a not in req.second]
        second_pos = tuple(pos[a] for a in req.second)
        lap = {pos[a]: w[a] for a in lap_axes}
        k = len(axes)
        couple = []
        for i in range(k):
            srow = 1 + k + second_pos.index(i) if i in second_pos else None
            if srow is not None or i in lap:
                couple.append((i, srow, lap.get(i)))
        return _Plan(
            axes=axes,
            second=req.second,
            second_pos=second_pos,
            lap_pos=tuple(lap),
            lap_w=tuple(lap.values()),
            couple=tuple(couple),
        )


# --------------------------------------------------------------------------------------------
# Activations: σ and its derivatives as (tensor, scalar) pairs
# --------------------------------------------------------------------------------------------

_Scaled = tuple[Tensor, float]


@dataclass(frozen=True)
class _Act:
    r"""Pointwise activation :math:`\sigma` of the pre-activation :math:`p = a + b`.

    Derivatives are returned as ``(T, s)`` with :math:`\sigma^{(m)} = s\,T` so that constant
    factors fold into the scalar argument of fused kernels (``addcmul(value=…)``):

    * ``sine`` (:math:`\sigma = \sin\omega p`): :math:`\sigma' = \omega\cos\omega p`,
      :math:`\sigma'' = -\omega^2\sin\omega p`, :math:`\sigma''' = -\omega^3\cos\omega p`;
    * ``tanh`` (:math:`t=\tanh p`): :math:`\sigma' = 1-t^2`, :math:`\sigma'' = -2t(1-t^2)`,
      :math:`\sigma''' = (1-t^2)(6t^2-2)`;
    * ``relu``: :math:`\sigma' = [p>0]`, :math:`\sigma''=\sigma'''=0` — exactly what nested
      autograd gives (ReLU's backward has zero derivative w.r.t. its input).
    """

    kind: str
    omega: float = 1.0

    def _pre(self, a0: Tensor, bias: Tensor | None) -> Tensor:
        """Fresh tensor holding :math:`p` (sine: :math:`\\omega p`, in one pass)."""
        if self.kind == "sine":
            if bias is None:
                return torch.mul(a0, self.omega)
            return torch.add(bias * self.omega, a0, alpha=self.omega)
        return a0 + bias if bias is not None else a0.clone()

    def forward(
        self, a0: Tensor, bias: Tensor | None, out0: Tensor
    ) -> tuple[_Scaled, _Scaled | None]:
        """Write :math:`\\sigma(p)` into ``out0``; return :math:`\\sigma'`, :math:`\\sigma''`."""
        p = self._pre(a0, bias)
        if self.kind == "sine":
            w = self.omega
            torch.sin(p, out=out0)
            return (torch.cos(p, out=p), w), (out0, -w * w)
        if self.kind == "tanh":
            torch.tanh(p, out=out0)
            d1 = torch.addcmul(_one(p), out0, out0, value=-1.0)  # 1 - t²
            return (d1, 1.0), (torch.mul(out0, d1), -2.0)
        torch.clamp_min(p, 0.0, out=out0)
        return ((p > 0).to(p.dtype), 1.0), None

    def derivatives(
        self, a0: Tensor, bias: Tensor | None
    ) -> tuple[_Scaled, _Scaled | None, _Scaled | None]:
        """Return :math:`\\sigma', \\sigma'', \\sigma'''` at :math:`p` as ``(T, s)`` pairs."""
        p = self._pre(a0, bias)
        w = self.omega
        if self.kind == "sine":
            s = torch.sin(p)
            c = torch.cos(p, out=p)
            return (c, w), (s, -w * w), (c, -w * w * w)
        if self.kind == "tanh":
            t = torch.tanh(p, out=p)
            d1 = torch.addcmul(_one(t), t, t, value=-1.0)
            d2 = torch.mul(t, d1)
            d3 = torch.addcmul(_minus_two(t), t, t, value=6.0).mul_(d1)
            return (d1, 1.0), (d2, -2.0), (d3, 1.0)
        return ((p > 0).to(p.dtype), 1.0), None, None

    def plain(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Differentiable :math:`(\\sigma, \\sigma', \\sigma'')` (functional/compiled path)."""
        if self.kind == "sine":
            w = self.omega
            s, c = torch.sin(w * p), torch.cos(w * p)
            return s, w * c, (-w * w) * s
        if self.kind == "tanh":
            t = torch.tanh(p)
            d1 = 1.0 - t * t
            return t, d1, -2.0 * t * d1
        return torch.relu(p), (p > 0).to(p.dtype), None


def _one(t: Tensor) -> Tensor:
    return t.new_ones(())


def _minus_two(t: Tensor) -> Tensor:
    return t.new_full((), -2.0)


def _scaled_mul(a: Tensor, b: _Scaled, out: Tensor) -> Tensor:
    """``out = s·(a ⊙ T)`` in one pass (``addcmul`` on a 0-d zero)."""
    t, s = b
    if s == 1.0:
        return torch.mul(a, t, out=out)
    return torch.addcmul(a.new_zeros(()), a, t, value=s, out=out)


# --------------------------------------------------------------------------------------------
# Autograd functions for one activation step on stacked rows
# --------------------------------------------------------------------------------------------


def _second_rows_forward(
    out: Tensor, plan: _Plan, d1: _Scaled, d2: _Scaled | None, g: Tensor, q: Tensor
) -> None:
    r"""Second-order rows :math:`\sigma' q_r + \sigma''\cdot(g_i^2` or
    :math:`\sum_i w_i g_i^2)` for stacked (non-constant) first-order rows ``g``."""
    r0 = 1 + plan.k
    for j, i in enumerate(plan.second_pos):
        row = _scaled_mul(q[j], d1, out[r0 + j])
        if d2 is not None:
            row.addcmul_(d2[0], torch.square(g[i]), value=d2[1])
    if plan.has_lap:
        row = _scaled_mul(q[-1], d1, out[-1])
        if d2 is not None:
            (i0, *rest), (w0, *wr) = plan.lap_pos, plan.lap_w
            acc = torch.square(g[i0])  # Σ_i w_i g_i² = w0 (g_i0² + Σ (w_i/w0) g_i²)
            for i, w in zip(rest, wr):
                acc.addcmul_(g[i], g[i], value=w / w0)
            row.addcmul_(d2[0], acc, value=d2[1] * w0)


class _StackedActJet(torch.autograd.Function):
    """Activation step on stacked rows ``A = H Wᵀ`` of shape ``(R, N, W)``; the bias is added
    to the value row only.  Saves ``A`` (and the bias); recomputes σ', σ'', σ''' in backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, a: Tensor, bias: Tensor | None, act: _Act, plan: _Plan
    ) -> Tensor:
        out = torch.empty_like(a)
        d1, d2 = act.forward(a[0], bias, out[0])
        k = plan.k
        if k:
            _scaled_mul(a[1 : 1 + k], d1, out[1 : 1 + k])
        if plan.rows > 1 + k:
            _second_rows_forward(out, plan, d1, d2, a[1 : 1 + k], a[1 + k :])
        ctx.save_for_backward(a, bias)
        ctx.act, ctx.plan = act, plan  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a, bias = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        (t1, s1), d2, d3 = act.derivatives(a[0], bias)
        rows = plan.rows
        da = torch.empty_like(a)
        dp = _scaled_mul(grad[0], (t1, s1), da[0])
        if rows > 1:
            _scaled_mul(grad[1:], (t1, s1), da[1:])  # σ' ō_r for every derivative row
        if rows > 1 and d2 is not None:
            t2, s2 = d2
            b2 = torch.mul(a[1], grad[1])  # Σ_{r≥1} a_r ō_r
            for r in range(2, rows):
                b2.addcmul_(a[r], grad[r])
            dp.addcmul_(t2, b2, value=s2)
            del b2
            b3, b3_scale = None, 1.0  # Σ_i g_i² T_i = b3_scale · b3
            for i, srow, w in plan.couple:
                g = a[1 + i]
                if srow is not None and w is not None:
                    t, scale = torch.add(grad[srow], grad[-1], alpha=w), 1.0
                elif srow is not None:
                    t, scale = grad[srow], 1.0
                else:
                    t, scale = grad[-1], float(w)  # type: ignore[arg-type]
                u = torch.mul(g, t)  # g_i T_i / scale
                da[1 + i].addcmul_(t2, u, value=2.0 * s2 * scale)
                if b3 is None:
                    b3, b3_scale = u.mul_(g), scale
                else:
                    b3.addcmul_(u, g, value=scale / b3_scale)
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3[0], b3, value=d3[1] * b3_scale)
        dbias = None
        if bias is not None and ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            dbias = dp.sum(0)
        return da, dbias, None, None


class _FirstActJet(torch.autograd.Function):
    """Activation step after the affine first layer: value pre-activation ``p`` (N, W) and
    constant first-order pre-activation rows ``c`` (k, W); second-order rows are zero."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, p: Tensor, c: Tensor, act: _Act, plan: _Plan
    ) -> Tensor:
        out = p.new_empty((plan.rows, *p.shape))
        d1, d2 = act.forward(p, None, out[0])
        k = plan.k
        _scaled_mul(c.unsqueeze(1), d1, out[1 : 1 + k])
        if plan.rows > 1 + k:
            r0 = 1 + k
            vecs = [c[i] * c[i] for i in plan.second_pos]  # σ'' c_i²
            if plan.has_lap:
                vecs.append(sum(w * c[i] * c[i] for i, w in zip(plan.lap_pos, plan.lap_w)))
            for j, v in enumerate(vecs):
                if d2 is None:
                    out[r0 + j].zero_()
                else:
                    torch.mul(d2[0], v * d2[1], out=out[r0 + j])  # type: ignore[operator]
        ctx.save_for_backward(p, c)
        ctx.act, ctx.plan = act, plan  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        p, c = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        (t1, s1), d2, d3 = act.derivatives(p, None)
        k = plan.k
        dp = _scaled_mul(grad[0], (t1, s1), torch.empty_like(p))
        dc = torch.empty_like(c)
        for i in range(k):  # Σ_n σ' ō_{g_i}
            dc[i] = torch.mul(grad[1 + i], t1).sum(0).mul_(s1)
        if d2 is not None:
            t2, s2 = d2
            b2 = torch.mul(grad[1], c[0])  # Σ_i c_i ō_{g_i}
            for i in range(1, k):
                b2.addcmul_(grad[1 + i], c[i])
            dp.addcmul_(t2, b2, value=s2)
            del b2
            b3 = None  # Σ_i c_i² T_i
            for i, srow, w in plan.couple:
                if srow is not None and w is not None:
                    t = torch.add(grad[srow], grad[-1], alpha=w)
                elif srow is not None:
                    t = grad[srow]
                else:
                    t = grad[-1] * w
                dc[i].addcmul_(torch.mul(t, t2).sum(0), c[i], value=2.0 * s2)
                cc = c[i] * c[i]
                b3 = t * cc if b3 is None else b3.addcmul_(t, cc)
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3[0], b3, value=d3[1])
        return dp, dc, None, None


def _act_rows_functional(
    a: Tensor, bias: Tensor | None, c: Tensor | None, act: _Act, plan: _Plan
) -> Tensor:
    """Same maths as the two autograd functions written with plain differentiable ops.

    Used under :func:`torch.compile` (which fuses the pointwise work itself) and as an
    independent implementation in the tests.  ``c`` given: first-layer mode, ``a`` is ``p``.
    """
    k = plan.k
    if c is not None:
        p, g, q = a, c.unsqueeze(1), None
    else:
        p = a[0] + bias if bias is not None else a[0]
        g, q = a[1 : 1 + k], a[1 + k :]
    s, d1, d2 = act.plain(p)
    rows = [s.unsqueeze(0), d1 * g]
    seconds: list[Tensor] = []
    for j, i in enumerate(plan.second_pos):
        seconds.append(_second(d1, d2, q, j, g[i] * g[i], p))
    if plan.has_lap:
        gsq = sum(w * g[i] * g[i] for i, w in zip(plan.lap_pos, plan.lap_w))
        seconds.append(_second(d1, d2, q, -1, gsq, p))  # type: ignore[arg-type]
    rows += [t.unsqueeze(0) for t in seconds]
    return torch.cat(rows, 0)


def _second(
    d1: Tensor, d2: Tensor | None, q: Tensor | None, j: int, gsq: Tensor, p: Tensor
) -> Tensor:
    out = d1 * q[j] if q is not None else torch.zeros_like(p)
    if d2 is not None:
        out = out + d2 * gsq
    return out


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
    unit = torch.eye(d, dtype=x.dtype, device=x.device)
    zeros = x.new_zeros((n, d, nf))

    def row(coef: dict[int, float], order: int) -> Tensor:
        """Σ_a coef_a ∂_a^order γ."""
        lin = x.new_zeros((n, d)) if order == 2 else None
        dsin, dcos = zeros, zeros
        for a, w in coef.items():
            fs = (f * s[a]) ** order * w  # (L,)
            mask = unit[a].unsqueeze(-1)  # (d, 1): only axis a
            if order == 1:
                lin = (s * unit[a] * w).expand(n, d) if lin is None else lin + s * unit[a] * w
                dsin = dsin + mask * (fs * cos)
                dcos = dcos - mask * (fs * sin)
            else:
                dsin = dsin - mask * (fs * sin)
                dcos = dcos - mask * (fs * cos)
        return torch.cat([lin, dsin.flatten(1), dcos.flatten(1)], dim=1)  # type: ignore[list-item]

    rows = [torch.cat([xi, sin.flatten(1), cos.flatten(1)], dim=1)]
    rows += [row({a: 1.0}, 1) for a in plan.axes]
    rows += [row({a: 1.0}, 2) for a in plan.second]
    if plan.has_lap:
        rows.append(row({plan.axes[i]: w for i, w in zip(plan.lap_pos, plan.lap_w)}, 2))
    return torch.stack(rows, 0)


def _stacked_act(h: Tensor, bias: Tensor | None, act: _Act, plan: _Plan, fused: bool) -> Tensor:
    if fused:
        return _StackedActJet.apply(h, bias, act, plan)
    return _act_rows_functional(h, bias, None, act, plan)


def _rows(model: nn.Module, x: Tensor, plan: _Plan, fused: bool) -> Tensor:
    """Propagate the stacked rows through ``model``; returns ``(R, N, out_features)``."""
    if isinstance(model, ReluPE):
        act = _Act("relu")
        enc = _stacked_linear(_encoding_rows(model, x, plan), model.first)
        h = _stacked_act(enc, model.first.bias, act, plan, fused)
    else:
        if isinstance(model, Siren):
            act0, act = _Act("sine", model.omega_0), _Act("sine", model.hidden_omega)
        else:
            act0 = act = _Act("tanh")
        s = model.input_scale
        p = nn.functional.linear(x * s, model.first.weight, model.first.bias)
        idx = list(plan.axes)
        c = (model.first.weight[:, idx] * s[idx]).t()  # (k, W): ∂p/∂x_a, constant
        if fused:
            h = _FirstActJet.apply(p, c, act0, plan)
        else:
            h = _act_rows_functional(p, None, c, act0, plan)
    for layer in model.hidden:
        h = _stacked_act(_stacked_linear(h, layer), layer.bias, act, plan, fused)
    last = model.last
    y = _stacked_linear(h, last)
    if isinstance(model, Siren) and not model.outermost_linear:
        return _stacked_act(y, last.bias, act, plan, fused)
    return torch.cat([(y[0] + last.bias).unsqueeze(0), y[1:]], 0)


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
    chunk_bytes: int | None = None,
    engine: str = "auto",
) -> Jet:
    r"""Evaluate the network and exactly the requested input derivatives in one pass.

    Args:
        model: a :class:`~pinnsiren.nets.Siren`, :class:`~pinnsiren.nets.TanhMLP` or
            :class:`~pinnsiren.nets.ReluPE`.
        x: points, shape ``(N, in_features)``, same dtype/device as the model.
        request: the derivatives wanted.
        chunk_bytes: split the batch so that one stacked ``(R, n, width)`` tensor stays below
            this many bytes; ``None`` (default): :data:`DEFAULT_CHUNK_BYTES` for CPU tensors and
            no split on accelerators (their caching allocators recycle memory); ``0``: no
            split.  Results do not depend on it.
        engine: ``"fused"`` (custom autograd functions, the eager default), ``"functional"``
            (plain differentiable ops; what :func:`torch.compile` should see) or ``"auto"``
            (functional while being traced by ``torch.compile``, fused otherwise).

    Returns:
        A :class:`Jet`; everything is differentiable w.r.t. the parameters (once).

    Raises:
        ValueError: unsupported model, malformed ``x``, or an axis outside ``[0, in_features)``.
    """
    if engine not in ("auto", "fused", "functional"):
        raise ValueError(f"jet: engine must be 'auto', 'fused' or 'functional', got {engine!r}")
    fused = engine == "fused" or (engine == "auto" and not torch.compiler.is_compiling())
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
    if chunk_bytes is None:
        chunk_bytes = DEFAULT_CHUNK_BYTES if x.device.type == "cpu" else 0
    if chunk_bytes:
        width = max(layer.out_features for layer in [net.first, *net.hidden])
        per_point = plan.rows * width * x.element_size()
        pieces = -(-n * per_point // chunk_bytes)  # ceil
        chunk = -(-n // pieces)  # equal-sized chunks
    if chunk >= n:
        rows = _rows(net, x, plan, fused)
    else:
        rows = torch.cat([_rows(net, xc, plan, fused) for xc in x.split(chunk)], dim=1)
    return _unpack(rows, request, plan)


def _unpack(rows: Tensor, request: DerivativeRequest, plan: _Plan) -> Jet:
    pos = {a: i for i, a in enumerate(plan.axes)}
    second = {a: rows[1 + plan.k + j] for j, a in enumerate(plan.second)}
    lap: Tensor | None = None
    if request.laplacian:
        parts = [rows[plan.rows - 1]] if plan.has_lap else []
        parts += [second[a] * w for a, w in request.weights.items() if a in second and w != 0.0]
        lap = parts[0] if parts else torch.zeros_like(rows[0])
        for t in parts[1:]:
            lap = lap + t
    return Jet(
        value=rows[0],
        gradient={a: rows[1 + pos[a]] for a in request.gradient},
        second=second,
        laplacian=lap,
    )
