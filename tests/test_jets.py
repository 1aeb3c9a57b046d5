"""The jet engine against nested torch.autograd, in float64, to 1e-10 relative error."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from pinnsiren.engine import jets
from pinnsiren.engine.jets import DerivativeRequest, Jet, jet
from pinnsiren.engine.nets import ReluPE, Siren, TanhMLP, build_model

TOL = 1e-10
ENGINES = ["fused", "functional"]


# --------------------------------------------------------------------------------------------
# reference: nested autograd
# --------------------------------------------------------------------------------------------


def nested(model: nn.Module, x: Tensor, req: DerivativeRequest) -> Jet:
    """Every requested quantity by nested ``torch.autograd.grad`` (create_graph=True)."""
    if not x.requires_grad:
        x = x.detach().clone().requires_grad_(True)
    u = model(x)
    grads = [torch.autograd.grad(u[:, o].sum(), x, create_graph=True)[0] for o in range(u.shape[1])]

    def col(a: int) -> Tensor:
        return torch.stack([g[:, a] for g in grads], 1)

    def second(a: int) -> Tensor:
        return torch.stack(
            [torch.autograd.grad(g[:, a].sum(), x, create_graph=True)[0][:, a] for g in grads], 1
        )

    lap = None
    if req.laplacian:
        lap = sum(w * second(a) for a, w in req.weights.items())
    return Jet(
        value=u,
        gradient={a: col(a) for a in req.gradient},
        second={a: second(a) for a in req.second},
        laplacian=lap,  # type: ignore[arg-type]
    )


def rel(a: Tensor, b: Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def quantities(j: Jet) -> dict[str, Tensor]:
    out = {"value": j.value}
    out.update({f"d{a}": t for a, t in j.gradient.items()})
    out.update({f"d{a}{a}": t for a, t in j.second.items()})
    if j.laplacian is not None:
        out["lap"] = j.laplacian
    return out


def loss_of(j: Jet) -> Tensor:
    """A loss touching every quantity with different weights (so no term can hide)."""
    total = (j.value**2).sum()
    for k, t in enumerate(quantities(j).values()):
        total = total + (k + 1.5) * (torch.sin(t) * t).sum()
    return total


def assert_matches(model: nn.Module, x: Tensor, req: DerivativeRequest, **kw: object) -> None:
    ours = jet(model, x, req, **kw)  # type: ignore[arg-type]
    ref = nested(model, x, req)
    q_ours, q_ref = quantities(ours), quantities(ref)
    assert q_ours.keys() == q_ref.keys()
    for name in q_ref:
        assert q_ours[name].shape == q_ref[name].shape
        err = rel(q_ours[name], q_ref[name])
        assert err < TOL, f"{name}: relative error {err:.2e}"
    params = [p for p in model.parameters() if p.requires_grad]
    g_ours = torch.autograd.grad(loss_of(ours), params)
    g_ref = torch.autograd.grad(loss_of(ref), params)
    for (name, _), a, b in zip(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], g_ours, g_ref
    ):
        err = rel(a, b)
        assert err < TOL, f"d loss / d {name}: relative error {err:.2e}"


def make(kind: str, d: int, out: int, **kw: object) -> nn.Module:
    torch.manual_seed(d * 10 + out)
    if kind == "siren_sine_out":
        return Siren(d, out, width=24, depth=2, outermost_linear=False, **kw).double()  # type: ignore[arg-type]
    opts: dict[str, object] = {"width": 24, "depth": 2, **kw}
    if kind == "relu_pe":
        opts["num_frequencies"] = 3
    return build_model(kind, d, out, **opts).double()


def points(n: int, d: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen, dtype=torch.float64) * 2 - 1


KINDS = ["siren", "siren_sine_out", "tanh", "relu_pe"]


# --------------------------------------------------------------------------------------------
# agreement with nested autograd
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_everything_matches_autograd(kind: str, d: int, engine: str) -> None:
    out = 1 if d == 2 else 2
    scale = [1.0, 0.5, 3.0][:d]
    model = make(kind, d, out, input_scale=scale)
    axes = tuple(range(d))
    req = DerivativeRequest(
        gradient=axes,
        second=axes[-1:],
        laplacian=axes,
        laplacian_weights=tuple(-0.5 - a for a in axes),
    )
    assert_matches(model, points(40, d), req, engine=engine)


@pytest.mark.parametrize("kind", KINDS)
def test_wave_operator_as_one_weighted_laplacian(kind: str) -> None:
    model = make(kind, 3, 1, input_scale=[1.0, 1.0, 0.25])
    req = DerivativeRequest(laplacian=(0, 1, 2), laplacian_weights=(-4.0, -4.0, 1.0))
    assert req.rows() == 5
    assert_matches(model, points(30, 3, 1), req)


@pytest.mark.parametrize("kind", KINDS)
def test_time_derivatives_and_spatial_laplacian_together(kind: str) -> None:
    """u_t, u_tt and Δ_x u in one request: 1 + 3 + 1 + 1 rows."""
    model = make(kind, 3, 2)
    req = DerivativeRequest(gradient=(2,), second=(2,), laplacian=(0, 1))
    assert req.rows() == 6
    assert_matches(model, points(30, 3, 2), req)


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    d=st.integers(1, 3),
    out=st.integers(1, 2),
    data=st.data(),
)
def test_random_requests(kind: str, d: int, out: int, data: st.DataObject) -> None:
    axes = st.lists(st.integers(0, d - 1), max_size=d, unique=True)
    grad, second, lap = data.draw(axes), data.draw(axes), data.draw(axes)
    weights = None
    if lap and data.draw(st.booleans()):
        weights = tuple(data.draw(st.floats(-3, 3, allow_nan=False)) for _ in lap)
    req = DerivativeRequest(tuple(grad), tuple(second), tuple(lap), weights)
    model = make(kind, d, out, input_scale=[0.7 + a for a in range(d)])
    assert_matches(model, points(12, d, 3), req, engine=data.draw(st.sampled_from(ENGINES)))


def test_chunking_does_not_change_results() -> None:
    model = make("siren", 2, 2)
    x = points(50, 2)
    req = DerivativeRequest(gradient=(0,), second=(1,), laplacian=(0, 1))
    whole = quantities(jet(model, x, req, chunk_bytes=0))
    tiny_budget = 5 * 24 * 8 * 7  # 7 points per chunk → 8 chunks
    for name, t in quantities(jet(model, x, req, chunk_bytes=tiny_budget)).items():
        assert rel(t, whole[name]) < 1e-14
    assert_matches(model, x, req, chunk_bytes=tiny_budget)


def test_value_only_request_is_plain_forward() -> None:
    model = make("tanh", 2, 3)
    x = points(9, 2)
    j = jet(model, x, DerivativeRequest())
    assert torch.equal(j.value, model(x))
    assert j.gradient == {} and j.second == {} and j.laplacian is None


def test_only_requested_quantities_are_returned() -> None:
    model = make("siren", 3, 1)
    j = jet(model, points(5, 3), DerivativeRequest(gradient=(1,), laplacian=(0, 2)))
    assert set(j.gradient) == {1} and j.second == {} and j.laplacian is not None


def test_laplacian_axes_reused_from_pure_second_rows() -> None:
    """Laplacian axes also requested as pure seconds are not carried twice."""
    req = DerivativeRequest(second=(0, 1), laplacian=(0, 1), laplacian_weights=(2.0, 0.5))
    assert req.rows() == 1 + 2 + 2
    assert_matches(make("siren", 2, 1), points(20, 2), req)
    mixed = DerivativeRequest(second=(0,), laplacian=(0, 1, 2))
    assert mixed.rows() == 1 + 3 + 1 + 1
    assert_matches(make("tanh", 3, 2), points(20, 3), mixed)


def test_zero_laplacian_weights() -> None:
    req = DerivativeRequest(laplacian=(0, 1), laplacian_weights=(0.0, 0.0))
    j = jet(make("siren", 2, 1), points(6, 2), req)
    assert j.laplacian is not None and torch.count_nonzero(j.laplacian) == 0
    assert_matches(
        make("siren", 2, 1),
        points(6, 2),
        DerivativeRequest(laplacian=(0, 1), laplacian_weights=(0.0, 3.0)),
    )


def test_frozen_first_layer_and_input_gradients() -> None:
    """TUNER freezes first.weight; gradients w.r.t. the rest and w.r.t. x still agree."""
    model = make("siren", 2, 1)
    model.first.weight.requires_grad_(False)
    req = DerivativeRequest(gradient=(0, 1), laplacian=(0, 1))
    assert_matches(model, points(20, 2), req)
    # first-order derivatives of jet outputs w.r.t. the input pass through the custom functions
    x = points(20, 2).requires_grad_(True)
    lap = jet(model, x, req).laplacian
    assert lap is not None
    (gx,) = torch.autograd.grad(lap.sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    ref = nested(model, x2, req).laplacian
    (gx_ref,) = torch.autograd.grad(ref.sum(), x2)
    assert rel(gx, gx_ref) < TOL


def test_no_grad_and_float32() -> None:
    model = build_model("siren", 2, 1, width=16, depth=1)
    x = torch.rand(10, 2)
    req = DerivativeRequest(gradient=(0,), laplacian=(0, 1))
    with torch.no_grad():
        j = jet(model, x, req)
    assert j.value.dtype == torch.float32 and not j.value.requires_grad
    ref = nested(model.double(), x.double(), req)
    assert j.laplacian is not None and ref.laplacian is not None
    assert rel(j.laplacian.double(), ref.laplacian) < 1e-4


def test_checker_is_sensitive() -> None:
    """The comparison fails for a slightly different network (the tests can fail)."""
    model = make("siren", 2, 1)
    x = points(10, 2)
    req = DerivativeRequest(laplacian=(0, 1))
    ref = nested(model, x, req).laplacian
    with torch.no_grad():
        model.hidden[0].weight[0, 0] += 1e-6
    ours = jet(model, x, req).laplacian
    assert ours is not None and ref is not None
    assert rel(ours, ref) > TOL


# --------------------------------------------------------------------------------------------
# requests that cannot be served
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"laplacian": (0, 1), "laplacian_weights": (1.0,)}, "1 entries for 2"),
        ({"laplacian_weights": (1.0,)}, "without laplacian"),
        ({"laplacian": (0, 0)}, "repeats"),
        ({"gradient": (-1,)}, "negative"),
        ({"second": (0.5,)}, "not an integer"),
        ({"gradient": 1}, "tuple"),
        ({"laplacian": (0,), "laplacian_weights": (float("nan"),)}, "finite"),
    ],
)
def test_malformed_requests(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DerivativeRequest(**kwargs)  # type: ignore[arg-type]


def test_unservable_requests() -> None:
    model = make("siren", 2, 1)
    x = points(4, 2)
    with pytest.raises(ValueError, match="axis 2 out of range"):
        jet(model, x, DerivativeRequest(laplacian=(0, 2)))
    with pytest.raises(ValueError, match="unsupported model type Sequential"):
        jet(nn.Sequential(nn.Linear(2, 1)), x, DerivativeRequest(gradient=(0,)))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        jet(model, points(4, 3), DerivativeRequest(gradient=(0,)))
    with pytest.raises(ValueError, match="engine"):
        jet(model, x, DerivativeRequest(gradient=(0,)), engine="magic")
    with pytest.raises(ValueError, match="DerivativeRequest"):
        jet(model, x, {"gradient": (0,)})  # type: ignore[arg-type]

    class Shifted(Siren):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) + 1.0

    with pytest.raises(ValueError, match="overrides forward"):
        jet(Shifted(2, 1, width=8, depth=1), x, DerivativeRequest(gradient=(0,)))


def test_request_normalisation_and_merge() -> None:
    r = DerivativeRequest(gradient=[2, 0, 2], second=(1,))  # type: ignore[arg-type]
    assert r.gradient == (0, 2) and r.axes == (0, 1, 2)
    lap = DerivativeRequest(laplacian=(0, 1), laplacian_weights=(1.0, 2.0))
    m = r.merge(lap)
    assert m.gradient == (0, 2) and m.second == (1,) and m.weights == {0: 1.0, 1: 2.0}
    assert lap.merge(lap) == lap
    with pytest.raises(ValueError, match="different Laplacians"):
        lap.merge(DerivativeRequest(laplacian=(0, 1)))


def test_supported_classes() -> None:
    for cls in (Siren, TanhMLP, ReluPE):
        assert issubclass(cls, nn.Module)


# --------------------------------------------------------------------------------------------
# workspace (recycled CPU buffers)
# --------------------------------------------------------------------------------------------


def test_workspace_recycles_but_never_hands_out_live_buffers() -> None:
    """Buffers are large enough to be pooled here (> 1 MiB); two graphs alive at once, a
    retained graph and repeated steps must all give the nested-autograd answers."""
    jets.clear_workspace()
    torch.manual_seed(3)
    model = Siren(2, 1, width=48, depth=2).double()
    req = DerivativeRequest(gradient=(0,), laplacian=(0, 1), laplacian_weights=(1.0, -2.0))
    x1, x2 = points(700, 2, 5), points(700, 2, 6)
    assert req.rows() * 700 * 48 * 8 > jets._Workspace.min_bytes
    params = list(model.parameters())

    def grads(j1: Jet, j2: Jet) -> tuple[Tensor, ...]:
        return torch.autograd.grad(loss_of(j1) + 2.0 * loss_of(j2), params, retain_graph=True)

    ref = grads(nested(model, x1, req), nested(model, x2, req))
    held = []
    for _ in range(3):
        j1, j2 = jet(model, x1, req), jet(model, x2, req)  # both graphs alive together
        for a, b in zip(quantities(j1).values(), quantities(nested(model, x1, req)).values()):
            assert rel(a, b) < TOL
        first, again = grads(j1, j2), grads(j1, j2)  # second pass uses the retained graph
        for a, b, c in zip(first, again, ref):
            assert rel(a, c) < TOL and rel(b, c) < TOL
        del j1, j2
        held.append(jets._WORKSPACE.nbytes())
    assert held[0] > 0 and held[0] == held[1] == held[2]  # recycled, not re-allocated
    jets.clear_workspace()
    assert jets._WORKSPACE.nbytes() == 0
