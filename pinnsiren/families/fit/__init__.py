"""The fit family (:mod:`.family`): signal fitting from values, gradients or Laplacians."""

from pinnsiren.families.fit.family import Fit

__all__ = ["Fit"]
