"""The hypotheses tables (m003) and their DAO, on a real SQLite case file."""

from __future__ import annotations

import sqlite3

import pytest

from triage.case import CaseStore
from triage.case.hypotheses import HypothesisDAO
from triage.errors import CaseError


def test_migrates_from_blank_and_has_the_tables(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"user_hypotheses", "hypothesis_log"} <= names
        assert store.schema_version >= 3


def test_migrates_from_an_older_case(tmp_path):
    """A case made before m003 (schema version 1 or 2) gains the tables on open."""
    from triage.case.store import migrations
    older = [m for m in migrations() if m.version < 3]
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    for m in older:
        (old_dir / m.path.name).write_text(m.path.read_text(encoding="utf-8"), encoding="utf-8")
    CaseStore.open(tmp_path / "c.db", migrations_dir=old_dir).close()
    with CaseStore.open(tmp_path / "c.db") as store:
        assert store.conn.execute("SELECT count(*) FROM user_hypotheses").fetchone()[0] == 0
        assert store.schema_version >= 3


def test_add_get_replace_remove(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        dao = HypothesisDAO(store, clock=lambda: "2026-11-23T00:00:00Z")
        h = dao.add("one kernel", "a.yaml", "name: one kernel\n")
        assert (h.name, h.source, h.added_at) == ("one kernel", "a.yaml", "2026-11-23T00:00:00Z")
        with pytest.raises(CaseError, match="already in the case"):
            dao.add("one kernel", "b.yaml", "name: one kernel\nnote: b\n")
        dao.add("one kernel", "b.yaml", "name: one kernel\nnote: b\n", replace=True)
        assert dao.get("one kernel").yaml.endswith("note: b\n")
        assert [x.name for x in dao.all()] == ["one kernel"]
        dao.remove("one kernel")
        assert dao.all() == []
        with pytest.raises(CaseError, match="no hypothesis"):
            dao.remove("one kernel")


def test_record_is_idempotent_per_digest_and_survives_reopen(tmp_path):
    path = tmp_path / "c.db"
    with CaseStore.open(path) as store:
        dao = HypothesisDAO(store, clock=lambda: "2026-11-23T00:00:00Z")
        kw = dict(runs=3, incidents=2, p_one_bug=0.25, best="one bug", best_posterior=0.25,
                  result={"schema": "triage.hypotheses/1"})
        assert dao.record(digest="d1", **kw)
        assert not dao.record(digest="d1", **kw)
        assert dao.record(digest="d2", **{**kw, "runs": 4})
    with CaseStore.open(path, create=False) as store:
        rows = HypothesisDAO(store).log()
        assert [(r.runs, r.digest) for r in rows] == [(3, "d1"), (4, "d2")]
        assert rows[0].result == {"schema": "triage.hypotheses/1"}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
