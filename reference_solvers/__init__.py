"""Finite-difference reference solvers (numpy/scipy only; no torch, no YAML)."""
