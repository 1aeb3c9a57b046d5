"""The Helmholtz family (:mod:`.family`): forward problems and velocity inversion."""

from pinnsiren.families.helmholtz.family import Helmholtz, is_inversion

__all__ = ["Helmholtz", "is_inversion"]
