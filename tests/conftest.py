"""Test isolation: every test gets its own home, case file and playbook env.

Real torch runs are shared session-wide through the fixtures in tests/realruns.py.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.realruns"]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TRIAGE_CASE", str(tmp_path / "case.db"))
    monkeypatch.delenv("TRIAGE_PLAYBOOKS", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    yield
