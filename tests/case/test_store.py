"""The case file: creation, migrations (blank and from each older schema), refusals, transactions."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest

from triage.case import CaseStore, default_case_path
from triage.case.store import APPLICATION_ID, MIGRATIONS_DIR, migrations
from triage.errors import CaseError

from tests.case.factories import SIG_NAN, scan_result


def _schema(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"
                                   " WHERE name NOT LIKE 'sqlite_%'"))
    finally:
        conn.close()


def test_blank_case_gets_every_migration(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        assert store.schema_version == migrations()[-1].version
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert store.integrity_check() == []
        assert store.runs() == [] and store.signatures() == [] and store.incidents() == []


def test_default_path_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_CASE", str(tmp_path / "env.db"))
    assert default_case_path() == tmp_path / "env.db"
    assert default_case_path(tmp_path / "x.db") == tmp_path / "x.db"
    monkeypatch.delenv("TRIAGE_CASE")
    monkeypatch.chdir(tmp_path)
    assert default_case_path() == tmp_path / ".triage" / "case.db"
    CaseStore.open().close()
    assert (tmp_path / ".triage" / "case.db").is_file()


@pytest.mark.parametrize("upto", range(0, len(migrations())))
def test_migrate_from_each_older_schema(tmp_path, upto):
    """A case made by older code (migrations 1..upto) upgrades to the same schema as a blank one."""
    steps = migrations()
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    for m in steps[:upto]:
        shutil.copy(m.path, old_dir / m.path.name)
    old = tmp_path / "old.db"
    with CaseStore.open(old, migrations_dir=old_dir) as store:
        if upto >= 1:  # the core tables exist: a run made by the older code must survive
            _write_m001_run(store.conn)
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == (
        steps[upto - 1].version if upto else 0)
    with CaseStore.open(old) as store:
        assert store.schema_version == steps[-1].version
        if upto >= 1:
            assert [r.name for r in store.runs()] == ["kept"]
            root = store.incidents()[0].root
            assert (root.signature, root.rank, root.step, root.frames) == (SIG_NAN, 1, 5, ())
            assert store.integrity_check() == []
    CaseStore.open(tmp_path / "blank.db").close()
    assert _schema(old) == _schema(tmp_path / "blank.db")


def _write_m001_run(conn) -> None:
    """A failed run with one root-cause occurrence, written as the code of m001 wrote it (the
    columns of m001 only: later migrations add tables and columns, and must keep it)."""
    with conn:
        conn.execute(
            "INSERT INTO runs (name, content_hash, logs_hash, ingested_at, world_size,"
            " steps_completed, gpu_steps, failed, n_inputs, n_ranks, n_occurrences)"
            " VALUES ('kept', 'h', 'h', '2026-11-01T00:00:00', 2, 5, 10, 1, 0, 1, 1)")
        conn.execute("INSERT INTO run_ranks (run_id, rank, host, last_step, exit_code, steps)"
                     " VALUES (1, 1, 'node-1', 5, NULL, 5)")
        conn.execute("INSERT INTO signatures (id, family, template, playbook)"
                     " VALUES (?, 'nonfinite', 'loss is nan', NULL)", (SIG_NAN,))
        conn.execute(
            "INSERT INTO occurrences (run_id, signature, family, role, rank, host, step, time,"
            " message, path, line, why, playbook, seq) VALUES (1, ?, 'nonfinite', 'root', 1,"
            " 'node-1', 5, NULL, 'loss is nan', 'rank_1.log', 3, 'first failure', NULL, 0)",
            (SIG_NAN,))


def test_new_migration_file_is_picked_up(tmp_path):
    d = tmp_path / "mig"
    shutil.copytree(MIGRATIONS_DIR, d)
    (d / "m900_extra.sql").write_text("-- a test migration; with a semicolon in a comment\n"
                                      "CREATE TABLE extra (x INTEGER);\n"
                                      "INSERT INTO extra VALUES (';');\n")
    with CaseStore.open(tmp_path / "c.db", migrations_dir=d) as store:
        assert store.schema_version == 900
        assert store.conn.execute("SELECT x FROM extra").fetchone() == (";",)
    # the code without m900 refuses the newer file and leaves it alone
    before = (tmp_path / "c.db").read_bytes()
    with pytest.raises(CaseError, match="newer than this triage knows"):
        CaseStore.open(tmp_path / "c.db")
    assert (tmp_path / "c.db").read_bytes() == before


def test_failed_migration_leaves_previous_version(tmp_path):
    d = tmp_path / "mig"
    shutil.copytree(MIGRATIONS_DIR, d)
    (d / "m901_broken.sql").write_text("CREATE TABLE half (x);\nCREATE TABLE runs (y);\n")
    with pytest.raises(CaseError, match="m901_broken.sql failed"):
        CaseStore.open(tmp_path / "c.db", migrations_dir=d)
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1].version
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_bad_migration_names_are_refused(tmp_path):
    d = tmp_path / "mig"
    d.mkdir()
    (d / "m001_a.sql").write_text("CREATE TABLE a (x);")
    (d / "m001_b.sql").write_text("CREATE TABLE b (x);")
    with pytest.raises(CaseError, match="two migrations numbered 001"):
        migrations(d)
    (d / "m001_b.sql").unlink()
    (d / "001-bad.sql").write_text("")
    with pytest.raises(CaseError, match="not mNNN_<name>.sql"):
        migrations(d)


def test_corrupt_file_is_refused_untouched(tmp_path):
    p = tmp_path / "c.db"
    p.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(CaseError, match="not a SQLite case file") as exc:
        CaseStore.open(p)
    assert exc.value.exit_code == 5 and exc.value.hint
    assert p.read_bytes() == b"this is not a database\n" * 100


def test_damaged_sqlite_is_refused(tmp_path):
    p = tmp_path / "c.db"
    with CaseStore.open(p) as store:
        from triage.case.ingest import record_run
        record_run(store, scan_result(root=(SIG_NAN, 1, 5)), name="r", content_hash="h")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(p.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wipe the schema page past the header
    p.write_bytes(bytes(data))
    with pytest.raises(CaseError, match="corrupt|not a triage case|database error"):
        CaseStore.open(p)


def test_other_sqlite_file_is_refused(tmp_path):
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CaseError, match="not a triage case"):
        CaseStore.open(p)
    assert _schema(p) == [("table", "mine", "CREATE TABLE mine (x)")]


def test_missing_case_without_create(tmp_path):
    with pytest.raises(CaseError, match="no such case file"):
        CaseStore.open(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(CaseError, match="is a directory"):
        CaseStore.open(tmp_path)


def test_transaction_rolls_back_and_nests(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        with pytest.raises(RuntimeError):
            with store.transaction() as conn:
                conn.execute("INSERT INTO signatures VALUES ('sig1:a', 'other', 't', NULL)")
                raise RuntimeError("boom")
        assert store.signatures() == []
        with store.transaction() as conn:
            conn.execute("INSERT INTO signatures VALUES ('sig1:b', 'other', 't', NULL)")
            with pytest.raises(RuntimeError):
                with store.transaction():
                    conn.execute("INSERT INTO signatures VALUES ('sig1:c', 'other', 't', NULL)")
                    raise RuntimeError("inner")
        assert [s.id for s in store.signatures()] == ["sig1:b"]


def test_locked_case_is_a_case_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_CASE_TIMEOUT", "0.2")
    p = tmp_path / "c.db"
    CaseStore.open(p).close()
    holder = sqlite3.connect(p, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with CaseStore.open(p) as store:
            with pytest.raises(CaseError, match="locked by another process"):
                with store.transaction():
                    pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _open_blank(path: str, barrier) -> None:
    barrier.wait()
    CaseStore.open(Path(path)).close()


def test_two_processes_create_the_same_blank_case(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_open_blank, args=(str(tmp_path / "c.db"), barrier))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with CaseStore.open(tmp_path / "c.db") as store:
        assert store.schema_version == migrations()[-1].version
