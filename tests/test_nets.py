"""Tests for pinnsiren.nets: layout, initialisation statistics, forward maths, factory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pinnsiren.engine.nets import ReluPE, Siren, TanhMLP, build_model


def _uniform_ok(w: torch.Tensor, bound: float) -> None:
    """Entries lie in [-bound, bound] and look uniform there (max near bound, std ≈ b/√3)."""
    assert w.abs().max().item() <= bound * (1 + 1e-6)
    assert w.abs().max().item() >= 0.9 * bound
    std = w.std().item()
    assert abs(std - bound / math.sqrt(3)) <= 0.1 * bound / math.sqrt(3)


def test_siren_layout_and_attributes() -> None:
    net = Siren(3, 2, width=32, depth=4, omega_0=20.0, hidden_omega=15.0)
    assert isinstance(net.first, nn.Linear) and net.first.in_features == 3
    assert isinstance(net.hidden, nn.ModuleList) and len(net.hidden) == 4
    assert all(isinstance(h, nn.Linear) and h.weight.shape == (32, 32) for h in net.hidden)
    assert isinstance(net.last, nn.Linear) and net.last.weight.shape == (2, 32)
    assert net.omega_0 == 20.0 and isinstance(net.omega_0, float)
    assert net.hidden_omega == 15.0 and isinstance(net.hidden_omega, float)
    assert torch.equal(net.input_scale, torch.ones(3))
    assert "input_scale" in dict(net.named_buffers())


def test_siren_init_bounds() -> None:
    torch.manual_seed(0)
    omega = 30.0
    net = Siren(3, 4, width=256, depth=2, hidden_omega=omega)
    _uniform_ok(net.first.weight, 1.0 / 3)
    bound = math.sqrt(6.0 / 256) / omega
    for layer in net.hidden:
        _uniform_ok(layer.weight, bound)
    assert net.last.weight.abs().max().item() <= bound * (1 + 1e-6)
    # biases keep nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert net.first.bias.abs().max().item() <= 1 / math.sqrt(3)
    assert net.first.bias.abs().max().item() > 0.5 / math.sqrt(3)
    _uniform_ok(net.hidden[0].bias, 1 / 16)


def test_siren_init_depends_on_hidden_omega() -> None:
    torch.manual_seed(0)
    a = Siren(2, 1, width=128, depth=1, hidden_omega=30.0).hidden[0].weight.abs().max()
    b = Siren(2, 1, width=128, depth=1, hidden_omega=1.0).hidden[0].weight.abs().max()
    assert b / a > 20


def test_siren_forward_is_sine_of_omega_times_affine() -> None:
    torch.manual_seed(1)
    net = Siren(2, 3, width=8, depth=1, omega_0=7.0, hidden_omega=3.0, input_scale=[2.0, 0.5])
    x = torch.randn(5, 2)
    w0, b0 = net.first.weight, net.first.bias
    h = torch.sin(7.0 * ((x * torch.tensor([2.0, 0.5])) @ w0.T + b0))  # ω scales the bias too
    h = torch.sin(3.0 * (h @ net.hidden[0].weight.T + net.hidden[0].bias))
    expected = h @ net.last.weight.T + net.last.bias
    torch.testing.assert_close(net(x), expected)


def test_siren_omega_not_folded_into_weights() -> None:
    net = Siren(1, 1, width=4, depth=0, omega_0=30.0)
    with torch.no_grad():
        net.first.weight.fill_(0.01)
        net.first.bias.zero_()
        net.last.weight.fill_(1.0)
        net.last.bias.zero_()
    x = torch.tensor([[1.0]])
    assert net(x).item() == pytest.approx(4 * math.sin(30.0 * 0.01), rel=1e-6)


def test_siren_sine_output_layer_is_bounded() -> None:
    net = Siren(2, 2, width=16, depth=1, outermost_linear=False)
    y = net(torch.randn(100, 2) * 10)
    assert y.abs().max() <= 1.0


def test_input_scale_validation() -> None:
    with pytest.raises(ValueError, match="input_scale"):
        Siren(3, 1, input_scale=[1.0, 2.0])
    net = TanhMLP(2, 1, 8, 1, input_scale=(1.0, 4.0))
    assert torch.equal(net.input_scale, torch.tensor([1.0, 4.0]))


def test_bad_input_shape() -> None:
    net = Siren(3, 1, width=8, depth=1)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        net(torch.zeros(4, 2))


def test_tanh_init() -> None:
    torch.manual_seed(0)
    net = TanhMLP(3, 2, 64, 2)
    for layer in [net.first, *net.hidden, net.last]:
        fan_in, fan_out = layer.in_features, layer.out_features
        assert layer.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) * (1 + 1e-6)
        assert torch.count_nonzero(layer.bias) == 0
    _uniform_ok(net.hidden[0].weight, math.sqrt(6 / 128))


def test_relu_pe_encoding() -> None:
    net = ReluPE(2, 1, 16, 1, num_frequencies=3, input_scale=[1.0, 2.0])
    x = torch.tensor([[0.25, 0.1]])
    enc = net.encode(x)
    assert enc.shape == (1, 2 * 7)
    xi = torch.tensor([0.25, 0.2])
    assert torch.allclose(enc[0, :2], xi)
    # sin block is axis-major: [axis0 k=0..2, axis1 k=0..2]
    expected_sin = torch.sin(torch.tensor([1, 2, 4]) * math.pi * xi[1])
    assert torch.allclose(enc[0, 2 + 3 : 2 + 6], expected_sin)
    assert torch.allclose(enc[0, 8:11], torch.cos(torch.tensor([1, 2, 4]) * math.pi * xi[0]))
    assert net.first.in_features == 14
    assert net(torch.randn(7, 2)).shape == (7, 1)


@pytest.mark.parametrize("kind", ["siren", "tanh", "relu_pe"])
def test_float64_and_shapes(kind: str) -> None:
    net = build_model(kind, 3, 2, width=16, depth=2).double()
    y = net(torch.randn(11, 3, dtype=torch.float64))
    assert y.shape == (11, 2) and y.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["siren", "tanh", "relu_pe"])
def test_cuda(kind: str) -> None:  # pragma: no cover - no GPU in CI
    net = build_model(kind, 2, 1, width=16, depth=1, input_scale=[1.0, 2.0]).cuda()
    assert net(torch.randn(5, 2, device="cuda")).device.type == "cuda"


def test_build_model_options() -> None:
    net = build_model("siren", 2, 1, width=16, depth=2, omega_0=10.0, hidden_omega=5.0)
    assert isinstance(net, Siren) and net.omega_0 == 10.0 and len(net.hidden) == 2
    assert isinstance(build_model("tanh", 2, 1, width=8, depth=1), TanhMLP)
    pe = build_model("relu_pe", 2, 1, width=8, depth=1, num_frequencies=4)
    assert isinstance(pe, ReluPE) and pe.num_frequencies == 4


def test_build_model_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="num_frequencies") as err:
        build_model("siren", 2, 1, num_frequencies=3)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="omega_0"):
        build_model("tanh", 2, 1, omega_0=3.0)
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("mlp", 2, 1)
    with pytest.raises(ValueError, match="width"):
        build_model("siren", 2, 1, width=0)
