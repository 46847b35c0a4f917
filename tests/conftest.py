import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec file from text or bytes; returns its path."""

    def write(content: str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return write


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path_factory, monkeypatch):
    """Image folders that passed their check are remembered in the user's cache directory; tests
    keep theirs apart (a test that needs a fresh one sets ORCHESTRATOR_CACHE_DIR itself)."""
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "orchestrator-cache"))
