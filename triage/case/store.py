"""The case: one SQLite file holding every run of a job, its failures and signatures.

Design
- One file, opened in WAL mode with foreign keys on and a busy timeout, so several processes
  (two `triage ingest` at once, a bisect writing trials while someone reads) share it safely.
- The schema is built by numbered migrations, `migrations/mNNN_<name>.sql`, applied in numeric
  order, each in its own `BEGIN IMMEDIATE` transaction that also sets `PRAGMA user_version = NNN`.
  A new file in that folder is picked up without touching this module. The version is re-read
  inside each migration's transaction, so two processes opening a blank case at once do not both
  apply m001.
- `transaction()` is `BEGIN IMMEDIATE ... COMMIT` (ROLLBACK on any exception). Immediate, not
  deferred: a writer takes the write lock up front and waits (busy timeout) instead of failing
  with SQLITE_BUSY half way. Nested use becomes a SAVEPOINT.
- The connection runs with `isolation_level=None`: Python's sqlite3 never opens or commits a
  transaction behind our back; every write happens inside `transaction()`.

Invariants
- A file whose schema version is above what this code knows, a file that is not SQLite, or a
  SQLite file that is not a triage case is refused with a `CaseError` and never written to.
- `CaseStore.open(create=False)` never creates a file.

Limits
- The busy timeout (30 s by default, `TRIAGE_CASE_TIMEOUT`) bounds how long a writer waits for
  another; past it a `CaseError` says the case is locked.
- WAL needs a local file system (not NFS); that is SQLite's own limit.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from triage.errors import CaseError

if TYPE_CHECKING:  # pragma: no cover
    from triage.case.records import Incident, Occurrence, Run, Signature

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^m(\d{3})_([a-z0-9_]+)\.sql$")
_SQLITE_MAGIC = b"SQLite format 3\x00"
# "TRIA" in ASCII: marks a SQLite file as a triage case, so another program's database is refused.
APPLICATION_ID = 0x54524941
DEFAULT_CASE = Path(".triage") / "case.db"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        """The SQL statements of this file, split where SQLite itself sees a complete one."""
        out: list[str] = []
        buf = ""
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                if buf.strip():
                    out.append(buf.strip())
                buf = ""
        if buf.strip() and not _only_comments(buf):
            raise CaseError("unterminated SQL statement at the end of the migration",
                            where=str(self.path), hint="end every statement with ';'")
        return out


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in numeric order; a malformed name or a duplicate number is a bug."""
    found: dict[int, Migration] = {}
    for p in sorted(directory.glob("*.sql")):
        m = _MIGRATION_NAME.match(p.name)
        if not m:
            raise CaseError(f"migration file name {p.name!r} is not mNNN_<name>.sql",
                            where=str(p), hint="rename it, e.g. m004_my_tables.sql")
        version = int(m.group(1))
        if version in found:
            raise CaseError(f"two migrations numbered {version:03d}: {found[version].path.name} "
                            f"and {p.name}", where=str(directory), hint="renumber one of them")
        found[version] = Migration(version, m.group(2), p)
    return [found[v] for v in sorted(found)]


def default_case_path(path: Path | str | None = None) -> Path:
    """--case FILE, else $TRIAGE_CASE, else .triage/case.db in the working directory."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ.get("TRIAGE_CASE")
    if env:
        return Path(env)
    return Path.cwd() / DEFAULT_CASE


class CaseStore:
    """An open case file. Build with `CaseStore.open()`; use as a context manager to close."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str | None = None, *, create: bool = True,
             migrations_dir: Path = MIGRATIONS_DIR) -> "CaseStore":
        path = default_case_path(path)
        where = str(path)
        exists = path.exists()
        if exists and path.is_dir():
            raise CaseError("is a directory, not a case file", where=where,
                            hint="give a file path, e.g. --case run.db")
        if not exists and not create:
            raise CaseError("no such case file", where=where,
                            hint="ingest a run first: triage ingest LOGS --run NAME")
        if exists:
            _check_header(path)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CaseError(f"cannot create the case folder: {exc.strerror}", where=where,
                                hint="choose another place with --case FILE") from None
        timeout = float(os.environ.get("TRIAGE_CASE_TIMEOUT", "30"))
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise CaseError(f"cannot open the case: {exc}", where=where,
                            hint="check the path and its permissions") from None
        store = cls(conn, path)
        try:
            store._prepare_retrying(migrations(migrations_dir), timeout)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _translate(exc, where) from None
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare_retrying(self, steps: list[Migration], timeout: float) -> None:
        """`_prepare`, retried while another process holds the file during its own first open.

        SQLite does not call the busy handler for every lock it meets while a fresh file is
        being set up (switching to WAL needs an exclusive lock and fails at once), so two
        commands that create the same case together would otherwise see "locked". Every step
        of `_prepare` is idempotent, so retrying it until the busy timeout is safe.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._prepare(steps)
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() >= deadline:
                    raise
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                time.sleep(0.02 + random.random() * 0.05)

    def _prepare(self, steps: list[Migration]) -> None:
        conn = self.conn
        where = str(self.path)
        known = steps[-1].version if steps else 0
        # One read transaction, so the three reads see the same state of the file even while
        # another process is creating it.
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            foreign = app_id == 0 and version == 0 and _has_tables(conn)
        finally:
            conn.execute("COMMIT")
        if version > known:
            raise CaseError(f"the case has schema version {version}, newer than this triage "
                            f"knows ({known})", where=where,
                            hint="upgrade triage; the file was left untouched")
        if app_id not in (0, APPLICATION_ID) or foreign:
            raise CaseError("this SQLite file is not a triage case", where=where,
                            hint="point --case at a triage case file or a new path")
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe in WAL: a crash loses no committed run
        for step in steps:
            if step.version <= version:
                continue
            with self.transaction():
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if current >= step.version:  # another process migrated meanwhile
                    version = current
                    continue
                if current == 0:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                for stmt in step.statements():
                    try:
                        conn.execute(stmt)
                    except sqlite3.OperationalError as exc:
                        raise CaseError(f"migration {step.path.name} failed: {exc}",
                                        where=where, hint="the case was left at version "
                                        f"{current}; report this as a bug") from None
                conn.execute(f"PRAGMA user_version = {step.version}")
                version = step.version

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception. Nested calls use a SAVEPOINT."""
        conn = self.conn
        if conn.in_transaction:
            name = f"sp{id(object())}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            conn.execute(f"RELEASE {name}")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _translate(exc, str(self.path)) from None
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(exc, str(self.path)) from None

    # -- facts -------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def integrity_check(self) -> list[str]:
        """PRAGMA integrity_check plus triage's own: every run is whole. Empty list: all good."""
        problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in self.conn.execute("PRAGMA foreign_key_check")]
        rows = self.conn.execute(
            "SELECT r.name, r.n_inputs, r.n_ranks, r.n_occurrences,"
            " (SELECT count(*) FROM run_inputs i WHERE i.run_id = r.id),"
            " (SELECT count(*) FROM run_ranks k WHERE k.run_id = r.id),"
            " (SELECT count(*) FROM occurrences o WHERE o.run_id = r.id) FROM runs r")
        for name, ni, nr, no, ci, cr, co in rows:
            if (ni, nr, no) != (ci, cr, co):
                problems.append(f"run {name!r} is not whole: expected inputs/ranks/occurrences "
                                f"{ni}/{nr}/{no}, found {ci}/{cr}/{co}")
        return problems

    # -- read API (see triage/case/queries.py) ------------------------------------------------

    def runs(self, *, with_ranks: bool = True) -> "list[Run]":
        from triage.case import queries
        return queries.runs(self.conn, with_ranks=with_ranks)

    def exposure(self, kind: str) -> dict[int, dict[str, int]]:
        """run id -> host (kind="host") or rank (kind="rank") -> GPU-steps."""
        from triage.case import queries
        return queries.exposure(self.conn, kind)

    def run(self, name_or_id: str | int) -> "Run":
        from triage.case import queries
        return queries.run(self.conn, name_or_id)

    def incidents(self) -> "list[Incident]":
        from triage.case import queries
        return queries.incidents(self.conn)

    def signatures(self) -> "list[Signature]":
        from triage.case import queries
        return queries.signatures(self.conn)

    def signature(self, ref: str) -> "Signature":
        from triage.case import queries
        return queries.signature(self.conn, ref)

    def occurrences(self, signature: str | None = None, run: str | int | None = None) -> "list[Occurrence]":
        from triage.case import queries
        return queries.occurrences(self.conn, signature=signature, run=run)

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "CaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite before SQLite gets a chance to touch it."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise CaseError(f"cannot read the case file: {exc.strerror}", where=str(path),
                        hint="check its permissions") from None
    if head and head != _SQLITE_MAGIC:
        raise CaseError("not a SQLite case file (corrupt, or another kind of file)",
                        where=str(path), hint="point --case at a triage case or a new path; "
                        "the file was left untouched")


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0


def _translate(exc: sqlite3.Error, where: str) -> CaseError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return CaseError("the case is locked by another process", where=where,
                         hint="wait for the other triage command, or raise TRIAGE_CASE_TIMEOUT")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return CaseError(f"the case file is corrupt ({text})", where=where,
                         hint="restore it from a copy or start a new case with --case NEW.db")
    return CaseError(f"case database error: {text}", where=where,
                     hint="run with TRIAGE_DEBUG=1 and report it if it persists")
