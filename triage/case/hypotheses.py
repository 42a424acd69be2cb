"""The hypothesis ledger's tables: the only place hypotheses write SQL (see m003_hypotheses.sql).

`HypothesisDAO(store)` stores the user's hypotheses (the YAML text they wrote, by unique name)
and the posterior log (one row per distinct evidence state scored). Reads return plain frozen
records; validation of the YAML belongs to triage.analyze.hyp_user and happens on read as well
as on add, so nothing unchecked ever reaches the model.

Invariants
- Every write happens inside `store.transaction()`.
- `record` is idempotent per evidence digest: scoring the same case twice adds one row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from triage.errors import CaseError


@dataclass(frozen=True)
class StoredHypothesis:
    id: int
    name: str
    source: str
    yaml: str
    added_at: str


@dataclass(frozen=True)
class LogRow:
    id: int
    at: str
    runs: int
    incidents: int
    digest: str
    p_one_bug: float
    best: str
    best_posterior: float
    result: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "runs": self.runs, "incidents": self.incidents,
                "p_one_bug": self.p_one_bug, "best": self.best,
                "best_posterior": self.best_posterior}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class HypothesisDAO:
    def __init__(self, store, clock: Callable[[], str] = _now):
        self.store = store
        self.clock = clock

    def add(self, name: str, source: str, text: str, *, replace: bool = False) -> StoredHypothesis:
        with self.store.transaction() as conn:
            old = conn.execute("SELECT id FROM user_hypotheses WHERE name = ?", (name,)).fetchone()
            if old and not replace:
                raise CaseError(f"a hypothesis named {name!r} is already in the case",
                                where=source, hint="rename it, or add it with --replace")
            if old:
                conn.execute("UPDATE user_hypotheses SET source = ?, yaml = ?, added_at = ? "
                             "WHERE id = ?", (source, text, self.clock(), old[0]))
            else:
                conn.execute("INSERT INTO user_hypotheses (name, source, yaml, added_at) "
                             "VALUES (?, ?, ?, ?)", (name, source, text, self.clock()))
        return self.get(name)

    def get(self, name: str) -> StoredHypothesis:
        row = self.store.conn.execute(
            "SELECT id, name, source, yaml, added_at FROM user_hypotheses WHERE name = ?",
            (name,)).fetchone()
        if row is None:
            raise CaseError(f"no hypothesis named {name!r} in the case", where="NAME",
                            hint="list them with: triage hypotheses list")
        return StoredHypothesis(*row)

    def all(self) -> list[StoredHypothesis]:
        return [StoredHypothesis(*r) for r in self.store.conn.execute(
            "SELECT id, name, source, yaml, added_at FROM user_hypotheses ORDER BY id")]

    def remove(self, name: str) -> None:
        with self.store.transaction() as conn:
            cur = conn.execute("DELETE FROM user_hypotheses WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise CaseError(f"no hypothesis named {name!r} in the case", where="NAME",
                                hint="list them with: triage hypotheses list")

    def record(self, *, runs: int, incidents: int, digest: str, p_one_bug: float, best: str,
               best_posterior: float, result: dict[str, Any]) -> bool:
        """Append one row to the posterior log; False if this evidence state is already there."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO hypothesis_log (at, runs, incidents, digest, p_one_bug,"
                " best, best_posterior, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.clock(), runs, incidents, digest, p_one_bug, best, best_posterior,
                 json.dumps(result, sort_keys=True)))
            return cur.rowcount == 1

    def log(self) -> list[LogRow]:
        return [LogRow(i, at, r, n, d, p, b, bp, json.loads(res)) for i, at, r, n, d, p, b, bp, res
                in self.store.conn.execute(
                    "SELECT id, at, runs, incidents, digest, p_one_bug, best, best_posterior, "
                    "result FROM hypothesis_log ORDER BY id")]
