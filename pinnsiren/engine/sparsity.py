r"""L1 weight penalty and removal of dead hidden neurons.

The networks of :mod:`pinnsiren.nets` are chains of affine maps
:math:`A_0 = ` ``first``, :math:`A_1..A_{L-1} = ` ``hidden``, :math:`A_L = ` ``last`` with an
activation after every map but the last:

.. math:: h_l = \sigma_l(A_l h_{l-1}),\qquad A_l h = W_l h + b_l,

where :math:`\sigma_l(z) = \sin(\omega z)` for SIREN (:math:`\omega = \omega_0` for ``first``,
:math:`\omega_h` after), :math:`\tanh` for the tanh MLP and ReLU for ``relu_pe``. The *hidden
neurons* are the entries of :math:`h_0, \dots, h_{L-1}`.

Pruning rule
------------
Neuron :math:`i` of layer :math:`l` (output :math:`i` of :math:`A_l`) is *removable* at
threshold :math:`\tau` when all its incoming weights (row :math:`i` of :math:`W_l`) and all its
outgoing weights (column :math:`i` of :math:`W_{l+1}`, i.e. into the next layer only) are
strictly below :math:`\tau` in absolute value:

.. math:: \max_j |W_{l,ij}| < \tau \quad\text{and}\quad \max_m |W_{l+1,mi}| < \tau .

Biases are not part of the rule. For neurons of ``first`` the incoming weights are those from
the (scaled or encoded) inputs; for the last hidden layer the outgoing ones go to ``last``.
At least one neuron per layer is always kept (the one with the largest
:math:`\max(\|W_{l,i\cdot}\|_\infty, \|W_{l+1,\cdot i}\|_\infty)`).

A removed neuron is replaced by its value at zero incoming weights,
:math:`c_i = \sigma_l(b_{l,i})` (a constant), folded into the next bias:
:math:`b_{l+1} \mathrel{+}= W_{l+1,\cdot i}\, c_i` (for SIREN the bias sits inside
:math:`\sin(\omega(\cdot))` with the weights, so the fold is the same). Pruning is therefore exact
when the incoming weights are exactly zero, and when the outgoing weights are exactly zero; in
general the change of next pre-activation :math:`m` is at most
:math:`\sum_{i\ \mathrm{removed}} |W_{l+1,mi}|\,|h_{l,i} - c_i|`, which for the bounded
activations (sine, tanh: :math:`|h - c| \le 2`) is below :math:`2\tau\cdot\#\mathrm{removed}`.
Layers are processed first to last, each rule evaluated on the original weights and each fold
using the already-folded bias.

The pruned network is a deep copy of the original of the same class whose ``first``/``hidden``/
``last`` are narrower ``nn.Linear`` modules (``requires_grad`` flags, dtype and device kept).
Its layers may now have different widths, so it cannot be rebuilt from ``build_model(width=…)``;
save it whole (``torch.save(model)``) or with the widths of the report.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from pinnsiren.engine.nets import ReluPE, Siren, TanhMLP

__all__ = ["l1_penalty", "prune_neurons", "removable_neurons"]


def l1_penalty(model: nn.Module, *, trainable_only: bool = False) -> Tensor:
    r"""Sum of absolute weights of every ``nn.Linear`` in ``model``: :math:`\sum_l \|W_l\|_1`.

    Biases are excluded: they shift phases (SIREN) or offsets, not the connectivity, and an
    unpenalised bias is what a pruned neuron's constant is folded into. With
    ``trainable_only=True``, weights with ``requires_grad=False`` (e.g. the TUNER-frozen first
    layer) are left out; otherwise they add a constant without gradient.
    """
    terms = [
        m.weight.abs().sum()
        for m in model.modules()
        if isinstance(m, nn.Linear) and (m.weight.requires_grad or not trainable_only)
    ]
    if not terms:
        p = next(model.parameters(), None)
        return torch.zeros((), dtype=p.dtype if p is not None else None)
    return torch.stack(terms).sum()


def _chain(model: nn.Module) -> list[nn.Linear]:
    try:
        layers = [model.first, *model.hidden, model.last]
    except AttributeError as exc:
        raise TypeError(
            f"prune_neurons needs a network with first/hidden/last layers, got "
            f"{type(model).__name__}"
        ) from exc
    if not all(isinstance(layer, nn.Linear) for layer in layers):
        raise TypeError("prune_neurons: first/hidden/last must all be nn.Linear")
    return layers


def _activations(model: nn.Module, n_hidden_layers: int) -> list[Callable[[Tensor], Tensor]]:
    """Activation :math:`\\sigma_l` after each of ``first`` and ``hidden``."""
    if isinstance(model, Siren):
        w0, wh = float(model.omega_0), float(model.hidden_omega)
        return [lambda z: torch.sin(w0 * z)] + [lambda z: torch.sin(wh * z)] * (n_hidden_layers - 1)
    if isinstance(model, TanhMLP):
        return [torch.tanh] * n_hidden_layers
    if isinstance(model, ReluPE):
        return [torch.relu] * n_hidden_layers
    raise TypeError(f"prune_neurons: unsupported network type {type(model).__name__}")


def removable_neurons(model: nn.Module, threshold: float) -> list[Tensor]:
    """Boolean masks (one per hidden layer ``first, *hidden``) of removable neurons.

    See the module docstring for the rule; a layer never loses all its neurons.
    """
    layers = _chain(model)
    masks = []
    for a, b in zip(layers[:-1], layers[1:], strict=True):
        w_in = a.weight.detach().abs().amax(dim=1)
        w_out = b.weight.detach().abs().amax(dim=0)
        mask = (w_in < threshold) & (w_out < threshold)
        if bool(mask.all()):
            mask[int(torch.argmax(torch.maximum(w_in, w_out)))] = False
        masks.append(mask)
    return masks


def _narrow(layer: nn.Linear, rows: Tensor, cols: Tensor, bias: Tensor | None) -> nn.Linear:
    """Copy of ``layer`` restricted to ``rows`` (outputs) and ``cols`` (inputs)."""
    new = nn.Linear(
        int(cols.sum()),
        int(rows.sum()),
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows][:, cols])
        if bias is not None:
            new.bias.copy_(bias[rows])
    new.weight.requires_grad_(layer.weight.requires_grad)
    if layer.bias is not None:
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune_neurons(model: nn.Module, threshold: float) -> tuple[nn.Module, dict[str, Any]]:
    r"""Remove hidden neurons whose incoming and outgoing weights are all below ``threshold``.

    Args:
        model: a ``Siren``, ``TanhMLP`` or ``ReluPE`` of :mod:`pinnsiren.nets` (not modified).
        threshold: :math:`\tau > 0`, see the module docstring for the rule and the bias fold.

    Returns:
        ``(pruned, report)``: a new model of the same class, and a report with
        ``params_before``, ``params_after`` (all parameters, frozen ones included),
        ``neurons_removed`` (per hidden layer: ``first``, then each of ``hidden``),
        ``widths_before``, ``widths_after`` and ``threshold``.
    """
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"prune threshold must be a non-negative number, got {threshold!r}")
    old_layers = _chain(model)
    n_hidden_layers = len(old_layers) - 1
    sigmas = _activations(model, n_hidden_layers)
    masks = removable_neurons(model, threshold)

    new_model = copy.deepcopy(model)
    device = old_layers[0].weight.device
    in_keep = torch.ones(old_layers[0].in_features, dtype=torch.bool, device=device)
    bias = old_layers[0].bias.detach().clone() if old_layers[0].bias is not None else None
    new_layers: list[nn.Linear] = []
    for l, layer in enumerate(old_layers):
        if l < n_hidden_layers:
            out_keep = ~masks[l]
        else:
            out_keep = torch.ones(layer.out_features, dtype=torch.bool, device=device)
        new_layers.append(_narrow(layer, out_keep, in_keep, bias))
        if l == n_hidden_layers:
            break
        nxt = old_layers[l + 1]
        nxt_bias = nxt.bias.detach().clone() if nxt.bias is not None else None
        removed = ~out_keep
        if removed.any():
            if bias is None:  # bias-free layer: the neuron's value at zero input is sigma(0)
                const = sigmas[l](layer.weight.new_zeros(int(removed.sum())))
            else:
                const = sigmas[l](bias[removed])
            if nxt_bias is None:
                raise ValueError("prune_neurons: cannot fold a neuron into a bias-free layer")
            with torch.no_grad():
                nxt_bias += nxt.weight.detach()[:, removed] @ const
        in_keep, bias = out_keep, nxt_bias

    new_model.first = new_layers[0]
    new_model.hidden = nn.ModuleList(new_layers[1:-1])
    new_model.last = new_layers[-1]
    removed_counts = [int(m.sum()) for m in masks]
    report: dict[str, Any] = {
        "params_before": _count(model),
        "params_after": _count(new_model),
        "neurons_removed": removed_counts,
        "widths_before": [layer.out_features for layer in old_layers[:-1]],
        "widths_after": [layer.out_features for layer in new_layers[:-1]],
        "threshold": float(threshold),
    }
    return new_model, report
