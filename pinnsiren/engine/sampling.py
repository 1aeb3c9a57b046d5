"""Point samplers of the loss terms beyond boxes, and the curriculum time window.

Curriculum time sampling: at training step ``s`` the residual points take times in the
window ``[t0, t0 + (T − t0)·min(1, s / ramp_steps)]``, a fraction of them sit exactly on
``t = t0`` and, optionally, a further fraction is drawn in ``[t0, t0 + focus_duration]``
to oversample the start of the motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pinnsiren.schema.geometry import Box


def gaussian_points(
    n: int, center: Sequence[float], std: float, gen: torch.Generator, box: Box | None = None
) -> Tensor:
    """``n`` points from an isotropic normal law around ``center`` (clipped into ``box``)."""
    c = torch.tensor(center, dtype=torch.float64)
    pts = c + std * torch.randn(n, len(center), generator=gen, dtype=torch.float64)
    return box.clip(pts) if box is not None else pts


@dataclass(frozen=True)
class Curriculum:
    """The growing time window of curriculum sampling (see module docstring)."""

    t0: float
    t_end: float
    ramp_steps: int
    enabled: bool = True
    initial_fraction: float = 0.1
    focus_fraction: float = 0.0
    focus_duration: float = 0.05

    def window(self, step: int) -> tuple[float, float]:
        """Sampled time interval at a training step."""
        if not self.enabled:
            return self.t0, self.t_end
        frac = min(1.0, max(step, 0) / max(self.ramp_steps, 1))
        return self.t0, self.t0 + (self.t_end - self.t0) * frac

    def times(self, n: int, step: int, gen: torch.Generator) -> Tensor:
        """``n`` times for the residual at ``step``, shape (n, 1)."""
        lo, hi = self.window(step)
        n_init = int(round(self.initial_fraction * n)) if self.enabled else 0
        n_focus = int(round(self.focus_fraction * n))
        n_rest = n - n_init - n_focus
        parts = [torch.full((n_init,), self.t0, dtype=torch.float64)]
        focus_hi = min(self.t0 + self.focus_duration, self.t_end)
        parts.append(
            self.t0 + (focus_hi - self.t0) * torch.rand(n_focus, generator=gen, dtype=torch.float64)
        )
        parts.append(lo + (hi - lo) * torch.rand(n_rest, generator=gen, dtype=torch.float64))
        return torch.cat(parts).unsqueeze(1)


def make_generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


#: The step a sampler is asked for after training (the final least-squares solve): every
#: schedule, such as the curriculum window, has run its course.
FINAL_STEP = 2**31 - 1
