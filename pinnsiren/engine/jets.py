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
* Each hidden layer is one custom :class:`torch.autograd.Function` (matmul + bias + activation
  jet step): the forward writes all rows into one buffer, computes :math:`\sin` and
  :math:`\cos` once and keeps what the backward needs — ``H`` and ``W`` for the two backward
  matmuls, the derivative rows of ``A = H Wᵀ``, the output (its value row is :math:`\sigma`),
  the :math:`\sigma'` tensor and :math:`\sum_i w_i g_i^2` — so the backward evaluates no
  transcendental function and applies the closed-form adjoint

  .. math::
      \bar q_r &= \sigma'\,\bar o_r,\qquad
      \bar g_i = \sigma'\,\bar o_{g_i} + 2\sigma''\,g_i T_i,\qquad
      T_i = \bar o_{s_i} + w_i\,\bar o_{\Delta},\\
      \bar p &= \sigma'\,\bar o_0 + \sigma''\Bigl(\sum_{r\ge1} a_r\,\bar o_r\Bigr)
              + \sigma'''\sum_i g_i^2 T_i ,

  where :math:`a_r` are the stacked pre-activation rows (:math:`g_i` first-order, :math:`q_r`
  second-order) and :math:`\bar o` the incoming gradient; constant factors (:math:`\omega`,
  weights) ride in the scalar arguments of fused ``addcmul`` kernels.  The backward is
  ``once_differentiable``: losses built on a jet can be differentiated once w.r.t. parameters
  (and inputs), which is what training needs.  ``engine="functional"`` runs the same maths
  with plain differentiable ops (used automatically under :func:`torch.compile`).
* Cost: a layer costs one matmul on ``R·N`` rows forward and two backward, i.e. about ``R``
  times a value-only training step — the floor of the method; on top come ~30 (forward) and
  ~60 (backward) memory-bound passes over ``N × width`` arrays per layer.
* Large CPU buffers (stacked rows, their gradients) come from a small workspace that recycles
  them between steps once autograd has released them.  glibc serves large requests with fresh
  ``mmap`` pages that are zero-filled by page faults on first touch: on the 2-core dev box an
  8192-point wave step took ~130k page faults (~1/3 of its time) without it, 0 with it.
  Splitting the batch instead would avoid the faults too, but multiplies the number of kernel
  launches, each a thread barrier, which costs dearly when the cores are shared.  Without
  autograd (evaluation on big grids) the batch is split so that one stacked tensor stays below
  :data:`DEFAULT_CHUNK_BYTES`.

Supported models: :class:`~pinnsiren.nets.Siren`, :class:`~pinnsiren.nets.TanhMLP`,
:class:`~pinnsiren.nets.ReluPE` (closed-form encoding derivatives).
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from pinnsiren.engine.nets import ReluPE, Siren, TanhMLP

__all__ = ["DEFAULT_CHUNK_BYTES", "DerivativeRequest", "Jet", "clear_workspace", "jet"]

#: Default upper bound (bytes) of one stacked ``(R, n, width)`` tensor when autograd is off;
#: the batch is split into equal chunks to respect it.  With autograd on, the whole graph is
#: kept anyway and the batch is not split unless asked.
DEFAULT_CHUNK_BYTES = 64 * 2**20


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

    @staticmethod
    def from_request(req: DerivativeRequest) -> _Plan:
        axes = req.axes
        pos = {a: i for i, a in enumerate(axes)}
        w = req.weights
        lap_axes = [a for a in axes if w.get(a, 0.0) != 0.0 and a not in req.second]
        second_pos = tuple(pos[a] for a in req.second)
        lap = {pos[a]: w[a] for a in lap_axes}
        return _Plan(
            axes=axes,
            second=req.second,
            second_pos=second_pos,
            lap_pos=tuple(lap),
            lap_w=tuple(lap.values()),
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
        self, value: Tensor, t1: Tensor
    ) -> tuple[_Scaled, _Scaled | None, _Scaled | None]:
        """:math:`\\sigma', \\sigma'', \\sigma'''` as ``(T, s)`` pairs, rebuilt from what the
        forward kept: ``value`` = :math:`\\sigma(p)` and ``t1`` = its :math:`\\sigma'` tensor."""
        w = self.omega
        if self.kind == "sine":  # σ'' ∝ sin = value, σ''' ∝ cos = t1: nothing to recompute
            return (t1, w), (value, -w * w), (t1, -w * w * w)
        if self.kind == "tanh":
            d2 = torch.mul(value, t1)
            d3 = torch.addcmul(_minus_two(value), value, value, value=6.0).mul_(t1)
            return (t1, 1.0), (d2, -2.0), (d3, 1.0)
        return (t1, 1.0), None, None

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
# Autograd functions for one layer step on stacked rows
# --------------------------------------------------------------------------------------------


class _Workspace:
    """Recycles the large CPU buffers of the fused functions between calls.

    glibc hands out fresh, page-faulted memory for every large (> 32 MiB, or after heap
    trimming) request; ~130k page faults made up about a third of an 8192-point wave step.
    A buffer is handed out again only when nothing but this pool references its storage
    (autograd has released what it saved, no gradient or user tensor points into it), which is
    checked with the storage use count.  Without that count (other torch builds) or off the CPU
    the pool is bypassed.  :func:`clear_workspace` drops the cached buffers.
    """

    min_bytes = 1 << 20  # smaller buffers are recycled well by malloc itself
    max_bytes = 4 << 30  # never cache more than this in total
    max_per_shape = 16

    def __init__(self) -> None:
        self._bufs: dict[tuple[tuple[int, ...], torch.dtype], list[tuple[Tensor, int]]] = {}
        self._lock = threading.Lock()
        self._count = getattr(torch._C, "_storage_Use_Count", None)
        self._held = 0

    def _uses(self, t: Tensor) -> int:
        return int(self._count(t.untyped_storage()._cdata))  # type: ignore[misc]

    def empty(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device.

        The pool keeps a base tensor and hands out a fresh alias of its storage (a new tensor
        object, not a view), so every holder — autograd's saved variables included — shows up
        in the storage use count.
        """
        nbytes = math.prod(shape) * like.element_size()
        if self._count is None or like.device.type != "cpu" or nbytes < self.min_bytes:
            return like.new_empty(shape)
        key = (tuple(shape), like.dtype)
        with self._lock:
            entries = self._bufs.setdefault(key, [])
            for base, idle in entries:
                if self._uses(base) == idle:
                    return self._alias(base)
            base = like.new_empty(shape)
            if len(entries) < self.max_per_shape and self._held + nbytes <= self.max_bytes:
                entries.append((base, self._uses(base)))
                self._held += nbytes
            return self._alias(base)

    @staticmethod
    def _alias(base: Tensor) -> Tensor:
        with torch.no_grad():
            return base.new_empty(0).set_(base.untyped_storage(), 0, base.shape, base.stride())

    def clear(self) -> None:
        with self._lock:
            self._bufs.clear()
            self._held = 0

    def nbytes(self) -> int:
        """Bytes currently cached."""
        return self._held


_WORKSPACE = _Workspace()


def clear_workspace() -> None:
    """Release the CPU buffers cached between jet calls (they are re-created on demand)."""
    _WORKSPACE.clear()


def _lap_sum(g: Tensor, plan: _Plan) -> tuple[Tensor, float]:
    r""":math:`\sum_i w_i g_i^2` as ``(acc, scale)`` with the sum ``= scale·acc``."""
    (i0, *rest), (w0, *wr) = plan.lap_pos, plan.lap_w
    acc = torch.square(g[i0])
    for i, w in zip(rest, wr):
        acc.addcmul_(g[i], g[i], value=w / w0)
    return acc, w0


class _LinearActJet(torch.autograd.Function):
    r"""One layer on stacked rows: ``A = H Wᵀ`` (one matmul over all ``R·N`` rows), bias on the
    value row, then the activation jet step

    .. math::
        o_0 = \sigma(p),\quad o_{g_i} = \sigma' g_i,\quad
        o_{s_j} = \sigma' q_j + \sigma'' g_j^2,\quad
        o_\Delta = \sigma' q_\Delta + \sigma''\textstyle\sum_i w_i g_i^2 .

    Saves ``H`` and ``W`` (weight gradient, input gradient), the derivative rows of ``A``, the
    output (its value row is :math:`\sigma`), the :math:`\sigma'` tensor and
    :math:`\sum_i w_i g_i^2`; so the backward needs no transcendental function at all.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        h: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        act: _Act,
        plan: _Plan,
    ) -> Tensor:
        rows, n, _ = h.shape
        shape = (rows, n, weight.shape[0])
        a = _WORKSPACE.empty(shape, h)
        torch.mm(h.reshape(rows * n, -1), weight.t(), out=a.view(rows * n, -1))
        out = _WORKSPACE.empty(shape, h)
        d1, d2 = act.forward(a[0], bias, out[0])
        k = plan.k
        if rows > 1:
            _scaled_mul(a[1:], d1, out[1:])  # σ' g_i and the σ' q parts, in one pass
        lapsq, lap_scale = None, 1.0
        if d2 is not None:
            for j, i in enumerate(plan.second_pos):
                out[1 + k + j].addcmul_(d2[0], torch.square(a[1 + i]), value=d2[1])
            if plan.has_lap:
                lapsq, lap_scale = _lap_sum(a[1 : 1 + k], plan)
                out[-1].addcmul_(d2[0], lapsq, value=d2[1] * lap_scale)
        ctx.save_for_backward(h, weight, a, out, d1[0], lapsq)
        ctx.act, ctx.plan, ctx.lap_scale = act, plan, lap_scale  # type: ignore[attr-defined]
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, weight, a, out, t1, lapsq = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]  # type: ignore[attr-defined]
        (t1, s1), d2, d3 = act.derivatives(out[0], t1)
        rows, k = plan.rows, plan.k
        da = _WORKSPACE.empty(tuple(a.shape), a)
        _scaled_mul(grad, (t1, s1), da)  # σ' ō_r for every row (value row: σ' ō_0)
        dp = da[0]
        if rows > 1 and d2 is not None:
            t2, s2 = d2
            # value row: σ'' Σ_{r≥1} a_r ō_r  (+ σ''' Σ_i g_i² T_i below)
            prod = _WORKSPACE.empty((rows - 1, *dp.shape), a)
            torch.mul(a[1:], grad[1:], out=prod)
            dp.addcmul_(t2, prod.sum(0), value=s2)
            del prod
            # first-order rows: 2 σ'' g_i T_i,  T_i = ō_{s_i} + w_i ō_Δ
            b3: Tensor | None = None
            b3_scale = 1.0
            for j, i in enumerate(plan.second_pos):
                o_s, g = grad[1 + k + j], a[1 + i]
                da[1 + i].addcmul_(torch.mul(t2, o_s), g, value=2.0 * s2)
                u = torch.mul(g, o_s)
                b3 = u.mul_(g) if b3 is None else b3.addcmul_(u, g)
            if plan.has_lap:
                o_l = grad[-1]
                m = torch.mul(t2, o_l)
                for i, w in zip(plan.lap_pos, plan.lap_w):
                    da[1 + i].addcmul_(m, a[1 + i], value=2.0 * s2 * w)
                del m
                if b3 is None:
                    b3, b3_scale = torch.mul(lapsq, o_l), ctx.lap_scale  # type: ignore[attr-defined]
                else:
                    b3.addcmul_(lapsq, o_l, value=ctx.lap_scale)  # type: ignore[attr-defined]
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3[0], b3, value=d3[1] * b3_scale)
        r_n = rows * a.shape[1]
        da2 = da.view(r_n, -1)
        dh = dw = dbias = None
        if need_h:
            dh = _WORKSPACE.empty(tuple(h.shape), h)
            torch.mm(da2, weight, out=dh.view(r_n, -1))
        if need_w:
            dw = torch.mm(da2.t(), h.reshape(r_n, -1))
        if need_b and ctx.has_bias:  # type: ignore[attr-defined]
            dbias = dp.sum(0)
        return dh, dw, dbias, None, None


class _FirstActJet(torch.autograd.Function):
    r"""Activation step after the affine first layer :math:`p = W_0 (x\odot s) + b_0`.

    Its first-order pre-activation rows are the constants :math:`c_i = s_i W_0[:, i]`
    (``c``: ``(k, W)``) and its second-order ones vanish, so
    :math:`o_{g_i} = \sigma' c_i`, :math:`o_{s_j} = \sigma'' c_j^2`,
    :math:`o_\Delta = \sigma''\sum_i w_i c_i^2` — broadcasts, no matmul.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, p: Tensor, c: Tensor, act: _Act, plan: _Plan
    ) -> Tensor:
        out = _WORKSPACE.empty((plan.rows, *p.shape), p)
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
        ctx.save_for_backward(c, out, d1[0])
        ctx.act, ctx.plan = act, plan  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        c, out, t1 = ctx.saved_tensors  # type: ignore[attr-defined]
        act: _Act = ctx.act  # type: ignore[attr-defined]
        plan: _Plan = ctx.plan  # type: ignore[attr-defined]
        (t1, s1), d2, d3 = act.derivatives(out[0], t1)
        k = plan.k
        dp = _scaled_mul(grad[0], (t1, s1), torch.empty_like(t1))
        dc = torch.mul(grad[1 : 1 + k], t1).sum(1).mul_(s1)  # Σ_n σ' ō_{g_i}
        if d2 is not None:
            t2, s2 = d2
            b2 = torch.mul(grad[1], c[0])  # Σ_i c_i ō_{g_i}
            for i in range(1, k):
                b2.addcmul_(grad[1 + i], c[i])
            dp.addcmul_(t2, b2, value=s2)
            del b2
            # second-order rows: dc_i += 2 σ'' c_i Σ_n T_i,  dp += σ''' c_i² T_i
            b3: Tensor | None = None
            for j, i in enumerate(plan.second_pos):
                o_s = grad[1 + k + j]
                dc[i].addcmul_(torch.mul(t2, o_s).sum(0), c[i], value=2.0 * s2)
                cc = c[i] * c[i]
                b3 = o_s * cc if b3 is None else b3.addcmul_(o_s, cc)
            if plan.has_lap:
                o_l = grad[-1]
                m = torch.mul(t2, o_l).sum(0)
                v = torch.zeros_like(c[0])
                for i, w in zip(plan.lap_pos, plan.lap_w):
                    dc[i].addcmul_(m, c[i], value=2.0 * s2 * w)
                    v.addcmul_(c[i], c[i], value=w)
                b3 = o_l * v if b3 is None else b3.addcmul_(o_l, v)
            if b3 is not None and d3 is not None:
                dp.addcmul_(d3[0], b3, value=d3[1])
        return dp, dc, None, None


class _OutputLinear(torch.autograd.Function):
    """Affine output layer on stacked rows: ``Y = H Wᵀ`` for all rows, bias on the value row
    only.  Its input gradient ``Ȳ W`` goes to a recycled buffer."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, h: Tensor, weight: Tensor, bias: Tensor | None
    ) -> Tensor:
        rows, n, _ = h.shape
        y = torch.mm(h.reshape(rows * n, -1), weight.t()).view(rows, n, -1)
        if bias is not None:
            y[0] += bias
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        need_h, need_w, need_b = ctx.needs_input_grad  # type: ignore[attr-defined]
        rows, n, _ = h.shape
        g2 = grad.reshape(rows * n, -1)
        dh = dw = dbias = None
        if need_h:
            dh = _WORKSPACE.empty(tuple(h.shape), h)
            torch.mm(g2, weight, out=dh.view(rows * n, -1))
        if need_w:
            dw = torch.mm(g2.t(), h.reshape(rows * n, -1))
        if need_b and ctx.has_bias:  # type: ignore[attr-defined]
            dbias = grad[0].sum(0)
        return dh, dw, dbias


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


def _layer(h: Tensor, layer: nn.Linear, act: _Act, plan: _Plan, fused: bool) -> Tensor:
    """Linear layer + activation on stacked rows."""
    if fused:
        return _LinearActJet.apply(h, layer.weight, layer.bias, act, plan)
    return _act_rows_functional(_stacked_linear(h, layer), layer.bias, None, act, plan)


def _rows(model: nn.Module, x: Tensor, plan: _Plan, fused: bool, features: bool = False) -> Tensor:
    """Propagate the stacked rows through ``model``; returns ``(R, N, out_features)``, or the
    rows of the last hidden layer ``(R, N, width)`` with ``features``."""
    if isinstance(model, ReluPE):
        act = _Act("relu")
        h = _layer(_encoding_rows(model, x, plan), model.first, act, plan, fused)
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
        h = _layer(h, layer, act, plan, fused)
    if features:
        return h
    last = model.last
    if isinstance(model, Siren) and not model.outermost_linear:
        return _layer(h, last, act, plan, fused)
    if fused:
        return _OutputLinear.apply(h, last.weight, last.bias)
    y = _stacked_linear(h, last)
    return torch.cat([(y[0] + last.bias).unsqueeze(0), y[1:]], 0)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------

_SUPPORTED = (Siren, TanhMLP, ReluPE)


def _compiling() -> bool:
    fn = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(fn()) if fn is not None else False


def _check_model(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
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
    features: bool = False,
) -> Jet:
    r"""Evaluate the network and exactly the requested input derivatives in one pass.

    Args:
        model: a :class:`~pinnsiren.nets.Siren`, :class:`~pinnsiren.nets.TanhMLP` or
            :class:`~pinnsiren.nets.ReluPE`.
        x: points, shape ``(N, in_features)``, same dtype/device as the model.
        request: the derivatives wanted.
        chunk_bytes: split the batch so that one stacked ``(R, n, width)`` tensor stays below
            this many bytes; ``None`` (default): :data:`DEFAULT_CHUNK_BYTES` when gradients are
            disabled, no split otherwise; ``0``: no split.  Results do not depend on it.
        engine: ``"fused"`` (custom autograd functions, the eager default), ``"functional"``
            (plain differentiable ops; what :func:`torch.compile` should see) or ``"auto"``
            (functional while being traced by ``torch.compile``, fused otherwise).
        features: return the jet of the last hidden layer's activations φ (one column per
            neuron, ``(N, width)``) instead of the output u = W φ + b: the basis in which the
            output layer is linear (:mod:`pinnsiren.engine.lstsq`).

    Returns:
        A :class:`Jet`; everything is differentiable w.r.t. the parameters (once).

    Raises:
        ValueError: unsupported model, malformed ``x``, or an axis outside ``[0, in_features)``.
    """
    if engine not in ("auto", "fused", "functional"):
        raise ValueError(f"jet: engine must be 'auto', 'fused' or 'functional', got {engine!r}")
    provider = getattr(model, "feature_jet", None)
    if provider is not None:  # a network assembled from others (pinnsiren.engine.regions)
        feats = provider(x, request)
        return feats if features else _through_last(feats, model)
    fused = engine == "fused" or (engine == "auto" and not _compiling())
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
    if features and isinstance(net, Siren) and not net.outermost_linear:
        raise ValueError("jet: features need an affine output layer (outermost_linear=True)")
    if request.is_empty:
        return Jet(value=net.features(x) if features else net(x))
    plan = _Plan.from_request(request)
    n = x.shape[0]
    chunk = n
    if chunk_bytes is None:
        chunk_bytes = 0 if torch.is_grad_enabled() else DEFAULT_CHUNK_BYTES
    if chunk_bytes:
        width = max(layer.out_features for layer in [net.first, *net.hidden])
        per_point = plan.rows * width * x.element_size()
        pieces = -(-n * per_point // chunk_bytes)  # ceil
        chunk = -(-n // pieces)  # equal-sized chunks
    if chunk >= n:
        rows = _rows(net, x, plan, fused, features)
    else:
        rows = torch.cat([_rows(net, xc, plan, fused, features) for xc in x.split(chunk)], dim=1)
    return _unpack(rows, request, plan)


def _through_last(feats: Jet, model: nn.Module) -> Jet:
    """u = W φ + c b from the feature jet of a composite network (c its ``feature_constant``)."""
    w = model.last.weight.T
    bias = getattr(model, "feature_constant", 1.0) * model.last.bias
    return Jet(
        value=feats.value @ w + bias,
        gradient={a: t @ w for a, t in feats.gradient.items()},
        second={a: t @ w for a, t in feats.second.items()},
        laplacian=None if feats.laplacian is None else feats.laplacian @ w,
    )


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
