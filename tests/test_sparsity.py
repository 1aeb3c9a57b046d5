"""Tests for pinnsiren.sparsity: L1 penalty and neuron pruning."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pinnsiren.engine.nets import ReluPE, Siren, TanhMLP, build_model
from pinnsiren.engine.sparsity import l1_penalty, prune_neurons, removable_neurons
from pinnsiren.engine.tuner import tuner_init_

WIDTH = 16
DEPTH = 2  # first + 2 hidden layers: three hidden layers of neurons


def make(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(kind, 2, 3, width=WIDTH, depth=DEPTH)


def layers(model: nn.Module) -> list[nn.Linear]:
    return [model.first, *model.hidden, model.last]


def kill(model: nn.Module, layer: int, neuron: int, w_in: float = 0.0, w_out: float = 0.0) -> None:
    """Set neuron's incoming row to ``w_in`` and outgoing column to ``w_out`` (in place)."""
    chain = layers(model)
    with torch.no_grad():
        chain[layer].weight[neuron, :] = w_in
        chain[layer + 1].weight[:, neuron] = w_out


def points() -> torch.Tensor:
    return torch.rand(512, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1


def n_params(widths: list[int], n_in: int = 2, n_out: int = 3) -> int:
    sizes = [n_in, *widths, n_out]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def test_l1_penalty_sums_weights_only() -> None:
    model = make("siren")
    expected = sum(m.weight.abs().sum() for m in layers(model))
    assert torch.allclose(l1_penalty(model), expected)
    with torch.no_grad():
        for m in layers(model):
            m.bias.fill_(100.0)
    assert torch.allclose(l1_penalty(model), expected)
    l1_penalty(model).backward()
    w = model.hidden[0].weight
    assert torch.equal(w.grad, torch.sign(w.detach()))
    assert model.hidden[0].bias.grad is None


def test_l1_penalty_trainable_only_skips_frozen_tuner_layer() -> None:
    torch.manual_seed(0)
    model = build_model("siren", 2, 1, width=32, depth=1)
    tuner_init_(model, [(-1.0, 1.0), (-1.0, 1.0)], low_band=2, band_limit=6)
    full = l1_penalty(model)
    trainable = l1_penalty(model, trainable_only=True)
    assert torch.allclose(full - trainable, model.first.weight.abs().sum())


@pytest.mark.parametrize("kind", ["siren", "tanh", "relu_pe"])
def test_pruning_dead_neurons_is_exact_and_counted(kind: str) -> None:
    model = make(kind)
    dead = {0: [1, 4], 1: [0, 7, 9], 2: [3]}  # layer -> neurons (first, hidden[0], hidden[1])
    for layer, neurons in dead.items():
        for i in neurons:
            kill(model, layer, i)
    # live neurons of layer 1 never have all weights below tau; the dead ones do
    original = copy.deepcopy(model)
    pruned, report = prune_neurons(model, threshold=1e-3)

    assert type(pruned) is type(model)
    assert report["neurons_removed"] == [2, 3, 1]
    assert report["widths_before"] == [WIDTH] * 3
    assert report["widths_after"] == [14, 13, 15]
    in_features = model.first.in_features  # relu_pe: encoded inputs
    assert report["params_before"] == n_params([WIDTH] * 3, in_features)
    assert report["params_after"] == n_params([14, 13, 15], in_features)
    assert report["params_after"] == sum(p.numel() for p in pruned.parameters())
    with torch.no_grad():
        assert (pruned(points()) - original(points())).abs().max() <= 1e-6
    for a, b in zip(model.state_dict().values(), original.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the input model is untouched


def test_zero_outgoing_small_incoming_is_exact() -> None:
    """Outgoing weights exactly zero: removal is exact even if the incoming ones are not."""
    model = make("siren")
    kill(model, 1, 5, w_in=5e-4, w_out=0.0)
    kill(model, 0, 2, w_in=-5e-4, w_out=0.0)
    pruned, report = prune_neurons(model, threshold=1e-3)
    assert report["neurons_removed"] == [1, 1, 0]
    with torch.no_grad():
        assert (pruned(points()) - model(points())).abs().max() <= 1e-6


def test_constant_neuron_is_folded_into_next_bias() -> None:
    """Incoming weights exactly zero, outgoing small: the neuron is the constant sin(w b),
    which the fold moves into the next bias; simply dropping it would change the output."""
    model = make("siren")
    for layer, i in [(0, 3), (1, 2), (2, 11)]:
        kill(model, layer, i, w_in=0.0, w_out=8e-3)
        with torch.no_grad():
            layers(model)[layer].bias[i] = 0.04  # sin(30 * 0.04) ~ 0.93
    pruned, report = prune_neurons(model, threshold=1e-2)
    assert report["neurons_removed"] == [1, 1, 1]
    dropped = copy.deepcopy(model)
    for layer, i in [(0, 3), (1, 2), (2, 11)]:
        kill(dropped, layer, i, w_in=0.0, w_out=0.0)
    x = points()
    with torch.no_grad():
        assert (pruned(x) - model(x)).abs().max() <= 1e-6
        assert (dropped(x) - model(x)).abs().max() > 1e-3


def test_threshold_zero_removes_nothing_and_huge_keeps_one() -> None:
    model = make("tanh")
    pruned, report = prune_neurons(model, threshold=0.0)
    assert report["neurons_removed"] == [0, 0, 0]
    assert report["params_after"] == report["params_before"]
    with torch.no_grad():
        assert torch.equal(pruned(points()), model(points()))
    tiny, report = prune_neurons(model, threshold=1e9)
    assert report["widths_after"] == [1, 1, 1]
    assert [m.sum().item() for m in removable_neurons(model, 1e9)] == [WIDTH - 1] * 3
    assert tiny(points()).shape == (512, 3)


def test_pruning_keeps_frozen_flags_and_trains() -> None:
    torch.manual_seed(0)
    model = build_model("siren", 2, 1, width=32, depth=1)
    tuner_init_(model, [(-1.0, 1.0), (-1.0, 1.0)], low_band=2, band_limit=6)
    kill(model, 0, 20)
    pruned, report = prune_neurons(model, threshold=1e-6)
    assert report["neurons_removed"] == [1, 0]
    assert not pruned.first.weight.requires_grad and not pruned.first.bias.requires_grad
    assert pruned.hidden[0].weight.requires_grad
    loss = pruned(points()).pow(2).mean()
    loss.backward()
    assert pruned.hidden[0].weight.grad is not None


def test_rejects_unsupported_models_and_bad_threshold() -> None:
    with pytest.raises(TypeError):
        prune_neurons(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)), 1e-3)
    with pytest.raises(ValueError):
        prune_neurons(make("siren"), -1.0)
    assert isinstance(make("siren"), Siren)
    assert isinstance(make("tanh"), TanhMLP) and isinstance(make("relu_pe"), ReluPE)
