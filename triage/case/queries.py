"""Read queries over the case, returning the frozen records of triage/case/records.py.

Analyses (rates, suspects, hypotheses, reports) call these through `CaseStore` methods and never
write SQL. Every list comes back in a fixed order (runs by id, occurrences by run then scan
order, signatures by id), so output built from it is deterministic.

Limits: everything is loaded into memory. At 1,000 runs of 64 ranks that is ~64k rank rows and
tens of thousands of occurrences, well under a second (see benchmarks/case_scale.py).
"""

from __future__ import annotations

import sqlite3

from triage.case.records import Incident, Occurrence, RankInfo, Run, Signature, frames_from_json
from triage.errors import CaseError

_RUN_COLS = ("id, name, content_hash, ingested_at, world_size, seed, version, steps_completed,"
             " gpu_steps, seconds, failed, started, ended")
_OCC_COLS = ("o.id, o.run_id, r.name, o.signature, o.family, o.role, o.rank, o.host, o.step,"
             " o.time, o.message, o.path, o.line, o.why, o.playbook, o.frames")


def _labels(conn: sqlite3.Connection) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for run_id, key, value in conn.execute("SELECT run_id, key, value FROM run_labels ORDER BY run_id, key"):
        out.setdefault(run_id, {})[key] = value
    return out


def _ranks(conn: sqlite3.Connection, run_id: int | None = None) -> dict[int, list[RankInfo]]:
    out: dict[int, list[RankInfo]] = {}
    sql = "SELECT run_id, rank, host, last_step, exit_code, steps FROM run_ranks"
    args: tuple = ()
    if run_id is not None:
        sql += " WHERE run_id = ?"
        args = (run_id,)
    for rid, rank, host, last, code, steps in conn.execute(sql + " ORDER BY run_id, rank", args):
        out.setdefault(rid, []).append(RankInfo(rank, host, last, code, steps))
    return out


def _run(row: tuple, labels: dict[str, str], ranks: list[RankInfo]) -> Run:
    (rid, name, chash, at, ws, seed, version, steps, gpu_steps, seconds, failed, started,
     ended) = row
    return Run(id=rid, name=name, content_hash=chash, ingested_at=at, labels=labels,
               world_size=ws, seed=seed, version=version, steps_completed=steps,
               gpu_steps=gpu_steps, seconds=seconds, failed=bool(failed), ranks=tuple(ranks),
               started=started, ended=ended)


def runs(conn: sqlite3.Connection, *, with_ranks: bool = True) -> list[Run]:
    """Every run by id. `with_ranks=False` leaves `Run.ranks` empty (fast: rates need no ranks)."""
    labels = _labels(conn)
    ranks = _ranks(conn) if with_ranks else {}
    return [_run(row, labels.get(row[0], {}), ranks.get(row[0], []))
            for row in conn.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id")]


def _run_row(conn: sqlite3.Connection, name_or_id: str | int) -> tuple:
    row = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE name = ?", (str(name_or_id),)).fetchone()
    if row is None and str(name_or_id).isdigit():
        row = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (int(name_or_id),)).fetchone()
    if row is None:
        raise CaseError(f"no run named {name_or_id!r} in the case", where="--run",
                        hint="list the runs with: triage runs")
    return row


def run(conn: sqlite3.Connection, name_or_id: str | int) -> Run:
    row = _run_row(conn, name_or_id)
    labels = {k: v for k, v in conn.execute(
        "SELECT key, value FROM run_labels WHERE run_id = ? ORDER BY key", (row[0],))}
    return _run(row, labels, _ranks(conn, row[0]).get(row[0], []))


def exposure(conn: sqlite3.Connection, kind: str) -> dict[int, dict[str, int]]:
    """run id -> unit -> GPU-steps, where unit is a host ("host") or a global rank ("rank").

    Summed in SQL: at 1,000 runs x 64 ranks this is much faster than building every RankInfo.
    Ranks whose host is unknown are left out of the host view.
    """
    if kind == "host":
        sql = ("SELECT run_id, host, sum(steps) FROM run_ranks WHERE host IS NOT NULL"
               " GROUP BY run_id, host")
    elif kind == "rank":
        sql = "SELECT run_id, CAST(rank AS TEXT), steps FROM run_ranks"
    else:
        raise ValueError(f"unknown exposure kind {kind!r}")
    out: dict[int, dict[str, int]] = {}
    for run_id, unit, steps in conn.execute(sql):
        out.setdefault(run_id, {})[unit] = steps
    return out


def _occ(row: tuple) -> Occurrence:
    return Occurrence(*row[:-1], frames=frames_from_json(row[-1]))



def occurrences(conn: sqlite3.Connection, *, signature: str | None = None,
                run: str | int | None = None) -> list[Occurrence]:
    where, args = [], []
    if signature is not None:
        where.append("o.signature = ?")
        args.append(resolve_signature(conn, signature))
    if run is not None:
        where.append("o.run_id = ?")
        args.append(_run_row(conn, run)[0])
    sql = f"SELECT {_OCC_COLS} FROM occurrences o JOIN runs r ON r.id = o.run_id"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [_occ(r) for r in conn.execute(sql + " ORDER BY o.run_id, o.seq", args)]


def incidents(conn: sqlite3.Connection) -> list[Incident]:
    """One per failed run: the root-cause occurrence, then symptoms and independent failures."""
    by_run: dict[int, list[Occurrence]] = {}
    for o in occurrences(conn):
        by_run.setdefault(o.run_id, []).append(o)
    out = []
    for (run_id,) in conn.execute("SELECT id FROM runs WHERE failed = 1 ORDER BY id"):
        occs = by_run.get(run_id, [])
        roots = [o for o in occs if o.role == "root"]
        if not roots:  # cannot happen for runs written by ingest; be honest, not silent
            continue
        out.append(Incident(run_id=run_id, run=roots[0].run, root=roots[0],
                            symptoms=tuple(o for o in occs if o.role == "symptom"),
                            independent=tuple(o for o in occs if o.role == "independent")))
    return out


def resolve_signature(conn: sqlite3.Connection, ref: str) -> str:
    """A full id, or a unique prefix of one (with or without "sig1:"), to the full id."""
    ref = ref.strip()
    if conn.execute("SELECT 1 FROM signatures WHERE id = ?", (ref,)).fetchone():
        return ref
    candidates = [r[0] for r in conn.execute(
        "SELECT id FROM signatures WHERE id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' ORDER BY id",
        (_like_prefix(ref), _like_prefix("sig1:" + ref)))]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CaseError(f"no signature {ref!r} in the case", where="SIGNATURE",
                        hint="list them with: triage signatures")
    raise CaseError(f"{ref!r} matches {len(candidates)} signatures", where="SIGNATURE",
                    hint="give more characters: " + ", ".join(candidates[:3]))


def _like_prefix(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def signatures(conn: sqlite3.Connection) -> list[Signature]:
    stats: dict[str, tuple] = {}
    for sid, n, nruns, nroot, first, last in conn.execute(
            "SELECT o.signature, count(*), count(DISTINCT o.run_id),"
            " count(DISTINCT CASE WHEN o.role = 'root' THEN o.run_id END),"
            " min(o.run_id), max(o.run_id) FROM occurrences o GROUP BY o.signature"):
        stats[sid] = (n, nruns, nroot, first, last)
    names = dict(conn.execute("SELECT id, name FROM runs"))
    ranks: dict[str, set[int]] = {}
    hosts: dict[str, set[str]] = {}
    for sid, rank, host in conn.execute("SELECT DISTINCT signature, rank, host FROM occurrences"):
        if rank is not None:
            ranks.setdefault(sid, set()).add(rank)
        if host is not None:
            hosts.setdefault(sid, set()).add(host)
    out = []
    for sid, family, template, playbook in conn.execute(
            "SELECT id, family, template, playbook FROM signatures ORDER BY id"):
        n, nruns, nroot, first, last = stats.get(sid, (0, 0, 0, None, None))
        out.append(Signature(sid, family, template, playbook, n, nruns, nroot,
                             names.get(first), names.get(last),
                             tuple(sorted(ranks.get(sid, ()))), tuple(sorted(hosts.get(sid, ())))))
    return out


def signature(conn: sqlite3.Connection, ref: str) -> Signature:
    sid = resolve_signature(conn, ref)
    return next(s for s in signatures(conn) if s.id == sid)
