r"""Coordinate networks: SIREN, a tanh MLP and a ReLU MLP with positional encoding.

All three share one layout, which :mod:`pinnsiren.jets` relies on::

    x ─(× input_scale)─▶ [encoding] ─first─▶ σ ─hidden[0]─▶ σ ─ … ─hidden[-1]─▶ σ ─last─▶ u

* ``first``  : ``nn.Linear`` from the (encoded) input to ``width``,
* ``hidden`` : ``nn.ModuleList`` of ``depth`` square ``nn.Linear`` layers,
* ``last``   : ``nn.Linear`` from ``width`` to ``out_features``,
* ``input_scale`` : buffer of shape ``(in_features,)``; the network sees :math:`x \odot s`.

SIREN (Sitzmann et al., 2020, "Implicit Neural Representations with Periodic Activation
Functions").  A sine layer computes

.. math::  h' = \sin\bigl(\omega\,(W h + b)\bigr),

i.e. the frequency :math:`\omega` multiplies the bias as well, as in the reference
implementation.  :math:`\omega` is *not* folded into the stored weights: an initialiser may
overwrite ``first.weight`` (and freeze it) or clamp ``hidden[i].weight`` and the layer keeps
meaning :math:`\sin(\omega(Wh+b))`.  Initialisation, with :math:`n` the fan-in:

* first layer:  :math:`W \sim U(-1/n,\ 1/n)`,
* hidden and (linear) output layers:
  :math:`W \sim U\bigl(-\sqrt{6/n}/\omega_h,\ \sqrt{6/n}/\omega_h\bigr)`,
* biases: the ``nn.Linear`` default :math:`U(-1/\sqrt{n},\ 1/\sqrt{n})`.

With :math:`x\in[-1,1]^d` this makes every pre-activation :math:`\omega(Wh+b)` roughly
:math:`\mathcal N(0,1)`-like, so activations keep an arcsine distribution through depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MODEL_KINDS", "ReluPE", "Siren", "TanhMLP", "build_model"]


def _scale_buffer(in_features: int, input_scale: Sequence[float] | None) -> Tensor:
    """Return the per-axis input scale as a float tensor of shape ``(in_features,)``."""
    if input_scale is None:
        return torch.ones(in_features)
    scale = torch.as_tensor(list(input_scale), dtype=torch.get_default_dtype())
    if scale.shape != (in_features,):
        raise ValueError(
            f"input_scale has {scale.numel()} entries but the network has {in_features} inputs"
        )
    if not torch.isfinite(scale).all():
        raise ValueError("input_scale entries must be finite numbers")
    return scale


def _check_sizes(in_features: int, out_features: int, width: int, depth: int) -> None:
    for name, value, low in (
        ("in_features", in_features, 1),
        ("out_features", out_features, 1),
        ("width", width, 1),
        ("depth", depth, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class _Stack(nn.Module):
    """Common layout: ``first``, ``hidden`` (``depth`` square layers), ``last``."""

    input_scale: Tensor

    def __init__(
        self,
        first_in: int,
        in_features: int,
        out_features: int,
        width: int,
        depth: int,
        input_scale: Sequence[float] | None,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, out_features, width, depth)
        self.in_features = in_features
        self.out_features = out_features
        self.width = width
        self.depth = depth
        self.first = nn.Linear(first_in, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.last = nn.Linear(width, out_features)
        self.register_buffer("input_scale", _scale_buffer(in_features, input_scale))

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (N, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )

    def _embed(self, x: Tensor) -> Tensor:
        """What the first layer sees: the scaled input (an encoding for ReLU + PE)."""
        return x * self.input_scale

    def _activation(self, z: Tensor, first: bool) -> Tensor:
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations φ(x), shape ``(N, width)``."""
        self._check_input(x)
        h = self._activation(self.first(self._embed(x)), True)
        for layer in self.hidden:
            h = self._activation(layer(h), False)
        return h


class Siren(_Stack):
    r"""Sinusoidal representation network.

    .. math::
        h_0 = \sin\bigl(\omega_0 (W_0 (x\odot s) + b_0)\bigr),\quad
        h_{l+1} = \sin\bigl(\omega_h (W_{l+1} h_l + b_{l+1})\bigr),\quad
        u = W_L h_{L-1} + b_L

    (the output layer is a sine layer with :math:`\omega_h` too when
    ``outermost_linear=False``).

    Args:
        in_features: input dimension :math:`d`.
        out_features: number of output channels.
        width: neurons per layer.
        depth: number of hidden sine layers after the first one.
        omega_0: frequency :math:`\omega_0` of the first layer.
        hidden_omega: frequency :math:`\omega_h` of the hidden (and non-linear output) layers.
        input_scale: per-axis factors :math:`s` applied to the input (e.g. a time scale);
            ``None`` means ones.
        outermost_linear: if ``True`` the output layer is affine, else a sine layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 256,
        depth: int = 3,
        omega_0: float = 30.0,
        hidden_omega: float = 30.0,
        input_scale: Sequence[float] | None = None,
        outermost_linear: bool = True,
    ) -> None:
        super().__init__(in_features, in_features, out_features, width, depth, input_scale)
        if not (math.isfinite(omega_0) and omega_0 > 0):
            raise ValueError(f"omega_0 must be a positive number, got {omega_0!r}")
        if not (math.isfinite(hidden_omega) and hidden_omega > 0):
            raise ValueError(f"hidden_omega must be a positive number, got {hidden_omega!r}")
        self.omega_0 = float(omega_0)
        self.hidden_omega = float(hidden_omega)
        self.outermost_linear = bool(outermost_linear)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Sitzmann et al. initialisation (see module docstring); biases as ``nn.Linear``."""
        n0 = self.first.in_features
        self.first.reset_parameters()  # default bias init
        self.first.weight.uniform_(-1.0 / n0, 1.0 / n0)
        for layer in [*self.hidden, self.last]:
            layer.reset_parameters()
            bound = math.sqrt(6.0 / layer.in_features) / self.hidden_omega
            layer.weight.uniform_(-bound, bound)

    def _activation(self, z: Tensor, first: bool) -> Tensor:
        return torch.sin((self.omega_0 if first else self.hidden_omega) * z)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the network on points ``x`` of shape ``(N, in_features)``."""
        out = self.last(self.features(x))
        if not self.outermost_linear:
            out = torch.sin(self.hidden_omega * out)
        return out

    def extra_repr(self) -> str:
        return (
            f"omega_0={self.omega_0}, hidden_omega={self.hidden_omega}, "
            f"outermost_linear={self.outermost_linear}"
        )


class TanhMLP(_Stack):
    r"""Plain tanh multilayer perceptron, Glorot-uniform weights and zero biases.

    .. math::
        h_0 = \tanh(W_0 (x\odot s) + b_0),\quad h_{l+1} = \tanh(W_{l+1} h_l + b_{l+1}),\quad
        u = W_L h_{L-1} + b_L
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 256,
        depth: int = 3,
        input_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__(in_features, in_features, out_features, width, depth, input_scale)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier/Glorot-uniform weights, zero biases."""
        for layer in [self.first, *self.hidden, self.last]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _activation(self, z: Tensor, first: bool) -> Tensor:
        return torch.tanh(z)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the network on points ``x`` of shape ``(N, in_features)``."""
        return self.last(self.features(x))


class ReluPE(_Stack):
    r"""ReLU MLP on a Fourier-feature (NeRF-style) positional encoding.

    With :math:`\xi = x\odot s` and :math:`L` = ``num_frequencies``,

    .. math::
        \gamma(\xi) = \bigl[\xi,\ \sin(2^k\pi\xi_a),\ \cos(2^k\pi\xi_a)\bigr]_{a<d,\ k<L}
        \in\mathbb R^{d(2L+1)},

    laid out as ``[ξ (d), sin (d×L, axis-major), cos (d×L, axis-major)]``, then
    ``first → ReLU → hidden… → ReLU → last``.  Weights are He-uniform (ReLU gain), biases zero.
    Second derivatives of the ReLU part vanish almost everywhere; only the encoding contributes
    curvature.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 256,
        depth: int = 3,
        num_frequencies: int = 8,
        input_scale: Sequence[float] | None = None,
    ) -> None:
        if isinstance(num_frequencies, bool) or not isinstance(num_frequencies, int):
            raise ValueError(f"num_frequencies must be an integer >= 0, got {num_frequencies!r}")
        if num_frequencies < 0:
            raise ValueError(f"num_frequencies must be an integer >= 0, got {num_frequencies!r}")
        encoded = in_features * (2 * num_frequencies + 1)
        super().__init__(encoded, in_features, out_features, width, depth, input_scale)
        self.num_frequencies = num_frequencies
        self.register_buffer(
            "frequencies",
            math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.get_default_dtype()),
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-uniform weights for ReLU, zero biases."""
        for layer in [self.first, *self.hidden, self.last]:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def encode(self, x: Tensor) -> Tensor:
        r"""Positional encoding :math:`\gamma(x\odot s)` of shape ``(N, d(2L+1))``."""
        xi = x * self.input_scale
        phase = (xi.unsqueeze(-1) * self.frequencies).flatten(1)  # (N, d*L), axis-major
        return torch.cat([xi, torch.sin(phase), torch.cos(phase)], dim=1)

    def _embed(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def _activation(self, z: Tensor, first: bool) -> Tensor:
        return torch.relu(z)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the network on points ``x`` of shape ``(N, in_features)``."""
        return self.last(self.features(x))

    def extra_repr(self) -> str:
        return f"num_frequencies={self.num_frequencies}"


MODEL_KINDS: dict[str, type[_Stack]] = {"siren": Siren, "tanh": TanhMLP, "relu_pe": ReluPE}

_OPTIONS: dict[str, frozenset[str]] = {
    "siren": frozenset(
        {"width", "depth", "omega_0", "hidden_omega", "input_scale", "outermost_linear"}
    ),
    "tanh": frozenset({"width", "depth", "input_scale"}),
    "relu_pe": frozenset({"width", "depth", "num_frequencies", "input_scale"}),
}


def build_model(kind: str, in_features: int, out_features: int, **options: object) -> nn.Module:
    """Construct a network by name.

    Args:
        kind: ``"siren"``, ``"tanh"`` or ``"relu_pe"``.
        in_features: input dimension.
        out_features: number of output channels.
        **options: constructor keywords of that kind (``width``, ``depth``, ``omega_0``,
            ``hidden_omega``, ``input_scale``, ``outermost_linear`` for SIREN;
            ``num_frequencies`` for ``relu_pe``).

    Raises:
        ValueError: unknown kind, or an option that kind does not take (one-line message).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(
            f"unknown model kind {kind!r}; expected one of {', '.join(sorted(MODEL_KINDS))}"
        )
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model kind {kind!r}; "
            f"allowed: {', '.join(sorted(_OPTIONS[kind]))}"
        )
    return MODEL_KINDS[kind](in_features, out_features, **options)  # type: ignore[arg-type]
