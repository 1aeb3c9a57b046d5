"""The network of a problem's ``model`` group: construction, TUNER initialisation, files.

``model.pt`` holds ``{"kind", "in_axes", "out_features", "options", "state_dict"}`` for a plain
network (rebuilt by :func:`load_model`), or ``{"module": model}`` for a composite model (an
inversion's wavefield plus velocity networks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pinnsiren.engine.nets import build_model
from pinnsiren.engine.tuner import tuner_init_
from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import atomic_path
from pinnsiren.schema.groups import ModelSpec


def model_options(model: ModelSpec, in_axes: tuple[str, ...], omega_0: float) -> dict[str, Any]:
    """Constructor keywords of the network for the YAML ``model`` section."""
    options: dict[str, Any] = {"width": model.width, "depth": model.depth}
    if model.input_scale:
        options["input_scale"] = [float(model.input_scale.get(a, 1.0)) for a in in_axes]
    if model.kind == "siren":
        options.update(omega_0=float(omega_0), hidden_omega=model.hidden_omega)
    elif model.kind == "relu_pe":
        options["num_frequencies"] = model.num_frequencies
    return options


def tuner_low_band(model: ModelSpec, dim: int) -> int:
    """``low_band: auto``: the largest lattice band filling at most half the width."""
    low = model.tuner.low_band
    if low != "auto":
        return int(low)
    low = 1
    while ((2 * low + 3) ** dim - 1) // 2 <= model.width // 2:
        low += 1
    return low


def make_model(
    model: ModelSpec,
    in_axes: tuple[str, ...],
    out_features: int,
    omega_0: float,
    seed: int,
    bounds: Mapping[str, Sequence[float]],
) -> nn.Module:
    """The network of the ``model`` group, seeded, with TUNER init when asked (``bounds``: the
    domain, for the TUNER lattice's period)."""
    torch.manual_seed(seed)
    net = build_model(
        model.kind, len(in_axes), out_features, **model_options(model, in_axes, omega_0)
    )
    if model.init == "tuner":
        t = model.tuner
        low = tuner_low_band(model, len(in_axes))
        try:
            tuner_init_(
                net,
                [tuple(bounds[a]) for a in in_axes],
                low,
                max(t.band_limit, low),
                seed,
                period_factor=t.period_factor,
            )
        except ValueError as exc:
            raise UserError(f"model.tuner: {exc}") from None
    return net


def save_model(
    path: Path,
    model: nn.Module,
    spec_model: ModelSpec,
    in_axes: tuple[str, ...],
    out_features: int,
    omega_0: float,
    composite: bool,
) -> None:
    """``model.pt`` (see module docstring), written atomically."""
    if composite:
        payload: dict[str, Any] = {"module": model.cpu()}
    else:
        payload = {
            "kind": spec_model.kind,
            "in_axes": list(in_axes),
            "out_features": out_features,
            "options": model_options(spec_model, in_axes, omega_0),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path) -> nn.Module:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if "module" in payload:
        return payload["module"]
    model = build_model(
        payload["kind"], len(payload["in_axes"]), payload["out_features"], **payload["options"]
    )
    model.load_state_dict(payload["state_dict"])
    return model
