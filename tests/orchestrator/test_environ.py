"""Environment variables set for one call are put back afterwards, also when the call fails."""

import os

import pytest

from orchestrator.environ import temporary_environ


def test_values_are_set_inside_and_restored_or_removed_afterwards(monkeypatch):
    monkeypatch.setenv("ORCH_TEST_KEPT", "before")
    monkeypatch.delenv("ORCH_TEST_NEW", raising=False)
    with pytest.raises(RuntimeError), temporary_environ(ORCH_TEST_KEPT="inside", ORCH_TEST_NEW="inside"):
        assert os.environ["ORCH_TEST_KEPT"] == os.environ["ORCH_TEST_NEW"] == "inside"
        raise RuntimeError("the call failed")
    assert os.environ["ORCH_TEST_KEPT"] == "before"
    assert "ORCH_TEST_NEW" not in os.environ
