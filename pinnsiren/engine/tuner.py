r"""TUNER: integer-harmonic first layer and bounded hidden weights for SIREN.

Novello, Aldana, Araujo, Velho, *Tuning the Frequencies: Robust Training for Sinusoidal
Neural Networks* (CVPR 2025). Their amplitude-phase expansion of a sinusoidal MLP writes a
hidden neuron fed by first-layer features :math:`\sin(\theta_j(x))`,
:math:`\theta_j(x) = \boldsymbol\omega_j\cdot x + \varphi_j`, as

.. math::
    \sin\Bigl(\sum_j a_j \sin\theta_j(x) + b\Bigr)
    = \sum_{\mathbf k\in\mathbb Z^n} \Bigl(\prod_j J_{k_j}(a_j)\Bigr)
      \sin\Bigl(\sum_j k_j\theta_j(x) + b\Bigr),

with :math:`J_k` the Bessel functions of the first kind and :math:`a_j = \omega_h W_{ij}` the
effective hidden weights. Two consequences drive the method:

1. **Frequencies.** The network only produces integer combinations
   :math:`\sum_j k_j\boldsymbol\omega_j` of the first-layer frequencies. Choosing those on the
   lattice :math:`\boldsymbol\omega_j = (2\pi k_{j,1}/p_1, \dots, 2\pi k_{j,d}/p_d)`,
   :math:`\mathbf k_j\in\mathbb Z^d`, makes the whole network a Fourier series of period
   :math:`p_a` along axis :math:`a` (every generated frequency stays on the lattice). TUNER
   uses all lattice vectors of a low band :math:`\|\mathbf k\|_\infty\le b` plus a sparse random
   set of high ones with :math:`\|\mathbf k\|_\infty \le B`, and keeps this layer fixed.
2. **Amplitudes.** :math:`|J_k(a)| \le (|a|/2)^{|k|}/|k|!`, so bounding
   :math:`|a| = \omega_h |W_{ij}| \le c` bounds the amplitude of the order-:math:`k` harmonics,
   i.e. limits the band the network can generate. TUNER clamps the hidden weights to
   :math:`|W_{ij}| \le c/\omega_h` after every optimiser step.

Conventions used here
---------------------
* ``pinnsiren.nets.Siren`` computes :math:`\sin(\omega_0 (W_0 (x\odot s) + b_0))`, so the
  angular frequency of first-layer neuron :math:`i` along axis :math:`a` is
  :math:`\omega_0 W_{0,ia} s_a`. :func:`tuner_init_` writes
  :math:`W_{0,ia} = 2\pi k_{ia} / (p_a \omega_0 s_a)` (float64 arithmetic, then cast), so the
  effective frequency is :math:`2\pi k_{ia}/p_a` up to float rounding, whatever ``omega_0``
  and ``input_scale`` are.
* **Half lattice.** :math:`\mathbf k` and :math:`-\mathbf k` give the same harmonic
  (:math:`\sin(-\theta+\varphi) = -\sin(\theta-\varphi)`), and :math:`\mathbf k = 0` is a constant
  the next layer's bias already provides, so only vectors whose first non-zero entry is
  positive are used. The low band thus holds :math:`((2b+1)^d - 1)/2` vectors
  (:func:`low_band_vectors`).
* **Phases** (first-layer bias, frozen with the weights by default). ``"random"`` (default):
  :math:`\varphi_i \sim U[-\pi, \pi)`, stored as :math:`b_{0,i} = \varphi_i/\omega_0`. A phase
  never moves a frequency, but it fixes the phase of the first-order term in the expansion
  above (:math:`J_1(a_j)\sin\theta_j`): with all phases zero every first-order harmonic is a pure
  sine about :math:`x = 0` and cosines appear only at second order. Random phases, like the
  random bias of the SIREN initialisation, avoid that systematic bias. ``"zero"`` is offered
  for studies. ``train_phases=True`` leaves the bias trainable, which keeps every frequency
  exact (only phases move).
* **Periods.** :math:`p_a` = ``period_factor`` × (length of axis :math:`a` of the domain). With
  the paper's choice ``period_factor = 1`` the network is *exactly periodic* on the domain,
  :math:`u(\mathrm{lo}_a) = u(\mathrm{hi}_a)`; for a non-periodic PDE axis (a time axis, a
  Dirichlet box with different boundary values) use ``period_factor = 2``, which leaves the
  domain room inside one period.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.nets import Siren
from pinnsiren.engine.terms import identity_network

__all__ = [
    "TunerClamp",
    "clamp_hidden_weights_",
    "effective_frequencies",
    "low_band_vectors",
    "tuner_frequencies",
    "tuner_init_",
]

_ENUMERATE_LIMIT = 200_000  # enumerate the high band up to this many lattice points


def _canonical(k: np.ndarray) -> np.ndarray:
    """Rows of ``k`` whose first non-zero entry is positive (one of each ``±k`` pair, no 0)."""
    nz = k != 0
    first = np.argmax(nz, axis=1)
    lead = k[np.arange(len(k)), first]
    return nz.any(axis=1) & (lead > 0)


def low_band_vectors(dim: int, low_band: int) -> np.ndarray:
    """All canonical integer vectors with ``1 <= |k|_inf <= low_band``: ``((2b+1)^d - 1)/2`` rows.

    Canonical means the first non-zero entry is positive. Rows are in lexicographic order.
    """
    if dim < 1 or low_band < 0:
        raise ValueError(f"low band needs dim >= 1 and low_band >= 0, got {dim}, {low_band}")
    r = range(-low_band, low_band + 1)
    k = np.array(list(itertools.product(r, repeat=dim)), dtype=np.int64).reshape(-1, dim)
    return k[_canonical(k)]


def _high_band_count(dim: int, low_band: int, band_limit: int) -> int:
    return ((2 * band_limit + 1) ** dim - (2 * low_band + 1) ** dim) // 2


def tuner_frequencies(
    dim: int, width: int, low_band: int, band_limit: int, seed: int = 0
) -> np.ndarray:
    """Integer frequency vectors of the first layer, shape ``(width, dim)``.

    Rows ``0..n_low-1``: the whole low band (:func:`low_band_vectors`). Remaining rows: distinct
    canonical vectors drawn uniformly, without replacement, from
    ``{k : low_band < |k|_inf <= band_limit}`` with ``numpy.random.default_rng(seed)``.

    Raises:
        ValueError: ``width`` smaller than the low band, ``band_limit < low_band``, or not enough
            high-band vectors to fill ``width``.
    """
    if band_limit < low_band:
        raise ValueError(f"TUNER band_limit ({band_limit}) must be >= low_band ({low_band})")
    low = low_band_vectors(dim, low_band)
    n_high = width - len(low)
    if n_high < 0:
        raise ValueError(
            f"TUNER: width {width} < {len(low)} low-band frequencies (dim {dim}, "
            f"low_band {low_band}); increase the width or lower low_band"
        )
    available = _high_band_count(dim, low_band, band_limit)
    if n_high > available:
        raise ValueError(
            f"TUNER: width {width} needs {n_high} high-band frequencies but only {available} "
            f"exist with low_band {low_band} < |k|_inf <= band_limit {band_limit}"
        )
    rng = np.random.default_rng(seed)
    if n_high == 0:
        high = np.zeros((0, dim), dtype=np.int64)
    elif (2 * band_limit + 1) ** dim <= _ENUMERATE_LIMIT:
        r = range(-band_limit, band_limit + 1)
        box = np.array(list(itertools.product(r, repeat=dim)), dtype=np.int64)
        cand = box[_canonical(box) & (np.abs(box).max(axis=1) > low_band)]
        high = cand[rng.choice(len(cand), size=n_high, replace=False)]
    else:  # huge lattice, few draws: rejection sampling (duplicates are rare and skipped)
        chosen: dict[tuple[int, ...], None] = {}
        while len(chosen) < n_high:
            k = rng.integers(-band_limit, band_limit + 1, size=(2 * n_high, dim))
            k = k[_canonical(k) & (np.abs(k).max(axis=1) > low_band)]
            for row in map(tuple, k.tolist()):
                chosen.setdefault(row)
                if len(chosen) == n_high:
                    break
        high = np.array(list(chosen), dtype=np.int64)
    return np.concatenate([low, high], axis=0)


def _input_scale(model: nn.Module, dim: int) -> torch.Tensor:
    s = torch.as_tensor(getattr(model, "input_scale", 1.0), dtype=torch.float64)
    return torch.broadcast_to(s.detach().cpu(), (dim,))


def effective_frequencies(model: Siren) -> torch.Tensor:
    r"""Angular frequencies of the first layer in physical units, ``(width, d)`` float64.

    Row :math:`i` is :math:`\omega_0\, W_{0,i} \odot s`: neuron :math:`i` computes
    :math:`\sin(\boldsymbol\omega_i\cdot x + \omega_0 b_{0,i})`.
    """
    w = model.first.weight.detach().cpu().double()
    return model.omega_0 * w * _input_scale(model, w.shape[1])


def tuner_init_(
    model: Siren,
    domain_bounds: Sequence[tuple[float, float]],
    low_band: int,
    band_limit: int,
    seed: int = 0,
    *,
    period_factor: float = 1.0,
    phases: Literal["random", "zero"] = "random",
    train_phases: bool = False,
) -> np.ndarray:
    r"""Overwrite and freeze the first layer of ``model`` with TUNER lattice frequencies.

    After the call, first-layer neuron :math:`i` computes
    :math:`\sin\bigl(\sum_a (2\pi k_{ia}/p_a)\, x_a + \varphi_i\bigr)` on *physical*
    coordinates :math:`x` (before ``input_scale``), with :math:`p_a` = ``period_factor`` ×
    ``(hi_a - lo_a)`` and :math:`\mathbf k_i` from :func:`tuner_frequencies`. See the module
    docstring for the half lattice, the phases and the choice of period.

    Args:
        model: a SIREN (``first``, ``omega_0``, ``input_scale``); modified in place.
        domain_bounds: ``[(lo, hi), ...]`` per input axis, in the model's input order.
        low_band: :math:`b`, every canonical ``k`` with ``|k|_inf <= b`` is used.
        band_limit: :math:`B \ge b`, the largest ``|k|_inf`` of the random high band.
        seed: seed of the high-band draw and of the random phases.
        period_factor: period / domain length per axis (1 = paper, 2 = non-periodic use).
        phases: ``"random"`` (:math:`U[-\pi,\pi)`) or ``"zero"`` first-layer phases.
        train_phases: leave the first-layer bias trainable (the weights are always frozen).

    Returns:
        The integer frequency vectors ``k``, shape ``(width, d)``.

    Raises:
        ValueError: bounds that do not match the input dimension or are empty, a zero input
            scale, or a width that the bands cannot fill (see :func:`tuner_frequencies`).
    """
    first: nn.Linear = model.first
    dim = first.in_features
    if len(domain_bounds) != dim:
        raise ValueError(f"TUNER: {len(domain_bounds)} domain bounds for {dim} input axes")
    lengths = np.array([float(hi) - float(lo) for lo, hi in domain_bounds])
    if not (np.isfinite(lengths).all() and (lengths > 0).all()):
        raise ValueError(f"TUNER: every domain axis needs lo < hi, got {list(domain_bounds)}")
    if not (math.isfinite(period_factor) and period_factor > 0):
        raise ValueError(f"TUNER: period_factor must be positive, got {period_factor}")
    if phases not in ("random", "zero"):
        raise ValueError(f"TUNER: phases must be 'random' or 'zero', got {phases!r}")
    scale = _input_scale(model, dim).numpy()
    if (scale == 0).any():
        raise ValueError("TUNER: input_scale has a zero entry; frequencies cannot be set")

    k = tuner_frequencies(dim, first.out_features, low_band, band_limit, seed)
    periods = period_factor * lengths
    omega0 = float(model.omega_0)
    weight = 2.0 * np.pi * k / (periods * omega0 * scale)  # (width, d), float64
    rng = np.random.default_rng([seed, 1])  # independent of the high-band stream
    phi = rng.uniform(-np.pi, np.pi, size=len(k)) if phases == "random" else np.zeros(len(k))
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(weight))
        if first.bias is not None:
            first.bias.copy_(torch.from_numpy(phi / omega0))
    first.weight.requires_grad_(False)
    if first.bias is not None:
        first.bias.requires_grad_(train_phases)
    return k


def _bounded_layers(model: nn.Module) -> list[nn.Linear]:
    """Sine layers fed by sine features: ``hidden`` (+ ``last`` when it is a sine layer)."""
    layers = list(model.hidden)
    if not getattr(model, "outermost_linear", True):
        layers.append(model.last)
    return layers


def clamp_hidden_weights_(model: Siren, bound_c: float) -> None:
    r"""Clamp hidden weights in place: :math:`|W_{ij}| \le c/\omega_h` (biases untouched).

    :math:`\omega_h` is ``model.hidden_omega``; the clamped layers are ``model.hidden`` and,
    if the SIREN's output layer is a sine layer (``outermost_linear=False``), ``model.last``.
    The first (frozen) and linear output layers are not bounded.
    """
    if not (math.isfinite(bound_c) and bound_c > 0):
        raise ValueError(f"TUNER bound must be a positive number, got {bound_c!r}")
    limit = bound_c / float(model.hidden_omega)
    with torch.no_grad():
        for layer in _bounded_layers(model):
            layer.weight.clamp_(-limit, limit)


class TunerClamp(StepHooks):
    r"""Training hook applying :func:`clamp_hidden_weights_` with a fixed bound :math:`c` after
    every optimizer step (and callable directly, e.g. once after :func:`tuner_init_`, since the
    SIREN initialisation may exceed a tight bound)::

        clamp = TunerClamp(bound=1.0)
        loss.backward(); optimizer.step(); clamp(model)

    ``network(model)`` picks the SIREN inside a composite model (default: the model itself).
    For L-BFGS the trainer calls it after ``optimizer.step(closure)`` returns (projection once
    per outer step, not inside the line search).
    """

    def __init__(
        self, bound: float, network: Callable[[nn.Module], nn.Module] = identity_network
    ) -> None:
        if not (math.isfinite(bound) and bound > 0):
            raise ValueError(f"TUNER bound must be a positive number, got {bound!r}")
        self.bound = float(bound)
        self.network = network

    def __call__(self, model: nn.Module) -> None:
        clamp_hidden_weights_(self.network(model), self.bound)

    def after_step(self, model: nn.Module) -> None:
        self(model)

    def __repr__(self) -> str:
        return f"TunerClamp(bound={self.bound})"
