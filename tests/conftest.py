"""Test isolation: every test gets its own home, case file and playbook env.

Real torch runs are shared session-wide through the fixtures in tests/realruns.py.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.realruns"]


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    """One compiled-rules cache for the whole session (what a user's ~/.cache/triage is):
    every CLI run in a test would otherwise compile the rules again."""
    return tmp_path_factory.mktemp("triage-cache")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch, _session_cache):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(_session_cache))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TRIAGE_CASE", str(tmp_path / "case.db"))
    monkeypatch.delenv("TRIAGE_PLAYBOOKS", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    yield
