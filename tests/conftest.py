"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def problems_dir() -> Path:
    return PROBLEMS


def needs_shared_data(path: Path) -> bool:
    """True for a shipped problem whose data live in ../shared and are absent here."""
    text = path.read_text()
    return "shared/data" in text and not SHARED.joinpath("data").is_dir()
