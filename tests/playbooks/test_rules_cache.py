"""Validated rules files are cached (triage.cache): the same rules as a fresh validation, and a
changed, invalid or damaged entry never gets past validation."""

from __future__ import annotations

import os

import pytest

from tests.playbooks.test_loader import GOOD_RULE
from triage.classify.playbook import load_playbooks
from triage.errors import PlaybookError

RULE = GOOD_RULE  # a valid rules file (severity: medium)


def _entries(d):
    return sorted(n for n in os.listdir(d) if n.startswith("rules-")) if os.path.isdir(d) else []


def test_cached_rules_equal_validated_rules(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fs.yaml").write_text(RULE)
    monkeypatch.setenv("TRIAGE_CACHE_DIR", "")
    fresh = load_playbooks([site]).rules
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path / "cache"))
    first = load_playbooks([site]).rules  # validates and stores
    assert _entries(tmp_path / "cache")
    again = load_playbooks([site]).rules  # from the cache
    assert fresh == first == again
    assert [r.path for r in again] == [r.path for r in fresh]


def test_an_edited_file_is_validated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    f = site / "fs.yaml"
    f.write_text(RULE)
    load_playbooks([site])
    f.write_text(RULE.replace("severity: medium", "severity: dire"))
    with pytest.raises(PlaybookError, match="severity"):
        load_playbooks([site])
    with pytest.raises(PlaybookError, match="severity"):  # an invalid file is never cached
        load_playbooks([site])


def test_damaged_entries_are_ignored(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(cache))
    site = tmp_path / "site"
    site.mkdir()
    (site / "fs.yaml").write_text(RULE)
    want = load_playbooks([site]).rules
    for name in _entries(cache):
        p = cache / name
        data = bytearray(p.read_bytes())
        data[-5] ^= 0x55
        p.write_bytes(bytes(data))
    assert load_playbooks([site]).rules == want
    # a well-formed entry with a wrong shape is ignored too
    from triage import cache as C

    for name in _entries(cache):
        C.write(name, b'[{"id": 1}]')
    assert load_playbooks([site]).rules == want


def test_the_cache_keeps_the_newest_entries(tmp_path, monkeypatch):
    from triage import cache as C

    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(C, "KEEP", 5)
    for i in range(12):
        C.write(C.entry_name("rules", str(i).encode()), b"x" * i)
        t = 1_000_000 + i
        os.utime(tmp_path / C.entry_name("rules", str(i).encode()), (t, t))
    names = _entries(tmp_path)
    assert len(names) == 5
    assert C.read(C.entry_name("rules", b"11")) == b"x" * 11  # the newest stay
    assert C.read(C.entry_name("rules", b"0")) is None
