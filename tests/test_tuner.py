"""Tests for pinnsiren.tuner: lattice first layer, freezing and hidden-weight bounds."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from pinnsiren.engine.nets import Siren, build_model
from pinnsiren.engine.tuner import (
    TunerClamp,
    clamp_hidden_weights_,
    effective_frequencies,
    low_band_vectors,
    tuner_frequencies,
    tuner_init_,
)

BOUNDS = [(0.0, 1.0), (-1.0, 3.0)]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids sync overhead on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# lengths 1 and 4
SCALE = [2.0, 0.5]


def make_siren(width: int = 64, **options: object) -> Siren:
    torch.manual_seed(0)
    opts = {"depth": 2, "omega_0": 30.0, "hidden_omega": 30.0, "input_scale": SCALE}
    opts.update(options)
    return build_model("siren", 2, 1, width=width, **opts)


@pytest.mark.parametrize(("dim", "b", "count"), [(1, 3, 3), (2, 2, 12), (2, 3, 24), (3, 1, 13)])
def test_low_band_is_the_half_lattice(dim: int, b: int, count: int) -> None:
    k = low_band_vectors(dim, b)
    assert k.shape == (count, dim) == (((2 * b + 1) ** dim - 1) // 2, dim)
    rows = {tuple(r) for r in k.tolist()}
    assert len(rows) == count
    for r in rows:
        assert any(r) and max(map(abs, r)) <= b
        assert tuple(-v for v in r) not in rows  # one of each ±k pair


@pytest.mark.parametrize("period_factor", [1.0, 2.0])
def test_effective_frequencies_are_exact_lattice_multiples(period_factor: float) -> None:
    model = make_siren()
    k = tuner_init_(model, BOUNDS, low_band=3, band_limit=12, seed=5, period_factor=period_factor)
    periods = period_factor * np.array([1.0, 4.0])
    freqs = effective_frequencies(model).numpy()  # omega_0 * W * input_scale
    multiples = freqs * periods / (2 * np.pi)
    np.testing.assert_allclose(multiples, k, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.rint(multiples).astype(int), k)

    rows = [tuple(r) for r in k.tolist()]
    assert len(set(rows)) == 64  # distinct
    low = {tuple(r) for r in low_band_vectors(2, 3).tolist()}
    assert low <= set(rows)  # the whole low band is present
    high = np.array([r for r in rows if r not in low])
    assert len(high) == 64 - 24
    assert (np.abs(high).max(axis=1) > 3).all() and (np.abs(high).max(axis=1) <= 12).all()


def test_network_is_periodic_with_the_lattice_period() -> None:
    """All generated harmonics stay on the lattice: u(x + p_a e_a) = u(x)."""
    model = make_siren()
    tuner_init_(model, BOUNDS, low_band=3, band_limit=12, seed=1)
    x = torch.rand(256, 2) * torch.tensor([1.0, 4.0]) + torch.tensor([0.0, -1.0])
    with torch.no_grad():
        u = model(x)
        assert torch.allclose(model(x + torch.tensor([1.0, 0.0])), u, atol=1e-4)
        assert torch.allclose(model(x + torch.tensor([0.0, 4.0])), u, atol=1e-4)
        assert not torch.allclose(model(x + torch.tensor([0.5, 0.0])), u, atol=1e-2)


def test_seeds_phases_and_reproducibility() -> None:
    a, b, c = make_siren(), make_siren(), make_siren()
    ka = tuner_init_(a, BOUNDS, 3, 12, seed=7)
    kb = tuner_init_(b, BOUNDS, 3, 12, seed=7)
    kc = tuner_init_(c, BOUNDS, 3, 12, seed=8, phases="zero")
    np.testing.assert_array_equal(ka, kb)
    assert torch.equal(a.first.bias, b.first.bias)
    assert not np.array_equal(ka, kc)
    assert not c.first.bias.any()
    phases = a.omega_0 * a.first.bias.detach()
    assert phases.abs().max() <= math.pi and phases.std() > 0.5


def test_width_too_small_or_bands_too_narrow() -> None:
    with pytest.raises(ValueError, match="low-band"):
        tuner_init_(make_siren(width=16), BOUNDS, low_band=3, band_limit=12)
    with pytest.raises(ValueError, match="high-band"):
        tuner_init_(make_siren(width=64), BOUNDS, low_band=3, band_limit=3)
    with pytest.raises(ValueError):
        tuner_init_(make_siren(), BOUNDS, low_band=3, band_limit=2)
    with pytest.raises(ValueError):
        tuner_init_(make_siren(), BOUNDS[:1], low_band=3, band_limit=12)
    # exactly the low band fits: no high band needed
    assert len(tuner_init_(make_siren(width=24), BOUNDS, low_band=3, band_limit=3)) == 24


def test_large_lattice_is_sampled_without_duplicates() -> None:
    k = tuner_frequencies(3, 200, low_band=1, band_limit=64, seed=0)  # 129^3 box: rejection
    assert len({tuple(r) for r in k.tolist()}) == 200
    assert np.abs(k).max() <= 64


def toy_fit(model: Siren, steps: int, lr: float, clamp: TunerClamp | None) -> None:
    torch.manual_seed(3)
    x = torch.rand(128, 2) * torch.tensor([1.0, 4.0]) + torch.tensor([0.0, -1.0])
    y = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if clamp is not None:
            clamp(model)


def test_first_layer_is_frozen_during_training() -> None:
    model = make_siren()
    tuner_init_(model, BOUNDS, 3, 12)
    w0, b0 = model.first.weight.clone(), model.first.bias.clone()
    h0 = model.hidden[0].weight.clone()
    toy_fit(model, steps=5, lr=1e-3, clamp=None)
    assert model.first.weight.grad is None and model.first.bias.grad is None
    assert torch.equal(model.first.weight, w0) and torch.equal(model.first.bias, b0)
    assert not torch.equal(model.hidden[0].weight, h0)

    trainable = make_siren()
    tuner_init_(trainable, BOUNDS, 3, 12, train_phases=True)
    w0, b0 = trainable.first.weight.clone(), trainable.first.bias.clone()
    toy_fit(trainable, steps=5, lr=1e-3, clamp=None)
    assert torch.equal(trainable.first.weight, w0)
    assert not torch.equal(trainable.first.bias, b0)


def max_effective_hidden_weight(model: Siren) -> float:
    return (
        max(float(layer.weight.detach().abs().max()) for layer in model.hidden) * model.hidden_omega
    )


def test_clamp_keeps_hidden_bound_and_is_needed() -> None:
    bound = 0.5  # SIREN init: |omega_h W| <= sqrt(6/64) ~ 0.31, so the init satisfies it
    free = make_siren()
    tuner_init_(free, BOUNDS, 3, 12)
    assert max_effective_hidden_weight(free) <= bound
    toy_fit(free, steps=15, lr=1e-2, clamp=None)
    assert max_effective_hidden_weight(free) > 2 * bound  # without the clamp: violated

    clamped = make_siren()
    tuner_init_(clamped, BOUNDS, 3, 12)
    toy_fit(clamped, steps=15, lr=1e-2, clamp=TunerClamp(bound))
    for layer in clamped.hidden:
        assert layer.weight.abs().max() <= bound / clamped.hidden_omega * (1 + 1e-6)
    assert max_effective_hidden_weight(clamped) == pytest.approx(bound, rel=1e-6)


def test_clamp_details() -> None:
    model = make_siren(outermost_linear=False)
    with torch.no_grad():
        for layer in [model.first, *model.hidden, model.last]:
            layer.weight.fill_(1.0)
            layer.bias.fill_(5.0)
    clamp_hidden_weights_(model, 0.3)
    limit = 0.3 / model.hidden_omega
    assert all(torch.allclose(m.weight, torch.tensor(limit)) for m in [*model.hidden, model.last])
    assert torch.equal(model.first.weight, torch.ones_like(model.first.weight))
    assert all(torch.equal(m.bias, torch.full_like(m.bias, 5.0)) for m in model.hidden)
    linear_out = make_siren()
    with torch.no_grad():
        linear_out.last.weight.fill_(1.0)
    TunerClamp(0.3)(linear_out)
    assert torch.equal(linear_out.last.weight, torch.ones_like(linear_out.last.weight))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            TunerClamp(bad)
    assert repr(TunerClamp(0.3)) == "TunerClamp(bound=0.3)"
