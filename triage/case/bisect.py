"""The bisection tables: the only place bisect writes SQL (see migrations/m002_bisect.sql).

`BisectDAO(store)` creates sessions, appends trials (each in its own transaction, so a trial is
durable before the next one starts), records the latest answer and status, and reads
everything back as plain records for `log`, `resume` and `replay`.

Invariants
- Every write happens inside `store.transaction()`.
- Trial `seq` numbers of a session are 1, 2, 3, ... without gaps: `add_trial` takes the next one
  inside the same transaction that inserts, so two writers cannot take the same number.
- A session id that does not exist is a `CaseError` with a hint, never a bare KeyError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from triage.bisect.outcome import Outcome, TrialRecord
from triage.errors import CaseError


@dataclass(frozen=True)
class SessionRow:
    id: int
    kind: str
    axis: str
    spec: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    folder: str
    created_at: str
    updated_at: str


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_json(key: Any) -> str:
    return json.dumps(list(key) if isinstance(key, tuple) else key)


def _key_load(text: str) -> Any:
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value


class BisectDAO:
    def __init__(self, store, clock: Callable[[], str] = _now):
        self.store = store
        self.clock = clock

    def create(self, kind: str, axis: str, spec: dict[str, Any], folder_for: Callable[[int], str]) -> SessionRow:
        """A new session; `folder_for(id)` names its output folder once the id is known."""
        now = self.clock()
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO bisect_sessions (kind, axis, spec, status, result, folder, created_at,"
                " updated_at) VALUES (?, ?, ?, 'running', NULL, '', ?, ?)",
                (kind, axis, json.dumps(spec, sort_keys=True), now, now))
            sid = int(cur.lastrowid)
            conn.execute("UPDATE bisect_sessions SET folder = ? WHERE id = ?", (folder_for(sid), sid))
        return self.session(sid)

    def session(self, sid: int) -> SessionRow:
        row = self.store.conn.execute(
            "SELECT id, kind, axis, spec, status, result, folder, created_at, updated_at"
            " FROM bisect_sessions WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise CaseError(f"no bisect session {sid}", where=str(self.store.path),
                            hint="list them with `triage bisect log`")
        return SessionRow(row[0], row[1], row[2], json.loads(row[3]), row[4],
                          json.loads(row[5]) if row[5] else None, row[6], row[7], row[8])

    def sessions(self) -> list[SessionRow]:
        ids = [r[0] for r in self.store.conn.execute("SELECT id FROM bisect_sessions ORDER BY id")]
        return [self.session(i) for i in ids]

    def latest(self) -> SessionRow:
        row = self.store.conn.execute("SELECT max(id) FROM bisect_sessions").fetchone()
        if row is None or row[0] is None:
            raise CaseError("no bisect session in this case", where=str(self.store.path),
                            hint="start one with `triage bisect step|seed|ranks`")
        return self.session(int(row[0]))

    def add_trial(self, sid: int, key: Any, point: dict[str, str], outcome: Outcome, *,
                  exit_code: int | None, seconds: float, timed_out: bool, output: str | None,
                  signatures: tuple[str, ...] = (), note: str | None = None) -> TrialRecord:
        now = self.clock()
        with self.store.transaction() as conn:
            seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM bisect_trials WHERE session_id = ?",
                               (sid,)).fetchone()[0]
            conn.execute(
                "INSERT INTO bisect_trials (session_id, seq, key, point, outcome, exit_code, seconds,"
                " timed_out, output, signatures, note, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (sid, seq, _key_json(key), json.dumps(point, sort_keys=True), outcome.value,
                 exit_code, float(seconds), int(timed_out), output, json.dumps(list(signatures)),
                 note, now))
            conn.execute("UPDATE bisect_sessions SET updated_at = ? WHERE id = ?", (now, sid))
        return TrialRecord(seq, key, point, outcome, exit_code, seconds, timed_out, output,
                           tuple(signatures), note)

    def trials(self, sid: int) -> list[TrialRecord]:
        rows = self.store.conn.execute(
            "SELECT seq, key, point, outcome, exit_code, seconds, timed_out, output, signatures, note"
            " FROM bisect_trials WHERE session_id = ? ORDER BY seq", (sid,)).fetchall()
        return [TrialRecord(r[0], _key_load(r[1]), json.loads(r[2]), Outcome(r[3]), r[4], r[5],
                            bool(r[6]), r[7], tuple(json.loads(r[8])), r[9]) for r in rows]

    def finish(self, sid: int, status: str, result: dict[str, Any] | None) -> None:
        with self.store.transaction() as conn:
            conn.execute("UPDATE bisect_sessions SET status = ?, result = ?, updated_at = ? WHERE id = ?",
                         (status, json.dumps(result) if result is not None else None, self.clock(), sid))
