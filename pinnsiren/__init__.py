"""pinnsiren: physics-informed PDE solving with SIREN networks."""

__version__ = "0.1.0"
