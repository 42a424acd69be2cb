"""`triage ingest`: store one run (one launch attempt) in the case, whole or not at all.

Flow: expand the paths to files -> hash them (the run's identity) -> if that content is already
in the case, stop: nothing is added -> scan them with the lead's scanner (`triage.scan.scan`) ->
merge run metadata (logs < triage-run.yaml < --label) -> write the run, its labels, inputs,
ranks, signatures and occurrences in ONE `BEGIN IMMEDIATE` transaction.

Invariants
- Identity: `content_hash` = sha256 over the sorted (relative name, sha256 of bytes) of every
  input file, the triage-run.yaml included. Same files again -> `IngestResult.created == False`
  and the case is unchanged (labels given the second time are not applied: the run is the
  same run). Where the files were copied to does not matter; their names relative to the
  given folder do.
- Atomicity: one transaction per run, so a SIGKILL at any moment leaves the case as it was
  before that run (tests/case/test_durability.py kills real ingests and checks). The counts
  `n_inputs/n_ranks/n_occurrences` written with the run let `CaseStore.integrity_check` prove it.
- Concurrency: the content check is repeated inside the write transaction; two ingests of the
  same files at once add one run, two of different files add both.
- A run name is unique in a case: the same name with other files is a `CaseError`.

Exposure: each rank's steps completed is the last step it reported (its `last_step`), else the
run's steps (triage-run.yaml `steps`, else the highest step in the logs). Runs that did not fail
are stored too: they are the denominator of every rate. Steps are counted as reported: whether
a log counts from 0 or 1 makes at most one step per rank of difference.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from triage.case.meta import RUN_FILE, RunFile, find_run_file, load_run_file
from triage.case.records import frames_to_json
from triage.case.store import CaseStore
from triage.errors import CaseError, InputError
from triage.records import Failure, ScanResult

_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # relative to the given root (a file given directly: its base name)
    bytes: int
    sha256: str


@dataclass(frozen=True)
class IngestResult:
    run_id: int
    run: str
    created: bool  # False: these files were already in the case; nothing was added
    content_hash: str
    failed: bool
    occurrences: int
    signatures: int  # distinct signatures in this run
    new_signatures: int  # signatures the case had not seen before this run
    gpu_steps: int
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"run": self.run, "run_id": self.run_id, "created": self.created,
                "content_hash": self.content_hash, "failed": self.failed,
                "occurrences": self.occurrences, "signatures": self.signatures,
                "new_signatures": self.new_signatures, "gpu_steps": self.gpu_steps,
                "warnings": list(self.warnings)}


def collect_inputs(paths: Sequence[Path], *, exclude: Sequence[Path] = ()) -> list[InputFile]:
    """Every regular file under the given paths (sorted), with its content hash."""
    skip = {p.resolve() for p in exclude}
    seen: set[Path] = set()
    out: list[InputFile] = []
    for root in paths:
        if not root.exists():
            raise InputError("no such file or folder", where=str(root),
                             hint="give the run's log files or its log folder")
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
            pairs = [(p, p.relative_to(root).as_posix()) for p in files]
        else:
            pairs = [(root, root.name)]
        run_file = (root if root.is_dir() else root.parent) / "triage-run.yaml"
        if not root.is_dir() and run_file.is_file():
            pairs.append((run_file, run_file.name))
        for p, name in pairs:
            real = p.resolve()
            if real in seen or real in skip or _is_case_file(p):
                continue
            seen.add(real)
            out.append(_hash_file(p, name))
    if not out:
        raise InputError("no files to ingest", where=", ".join(map(str, paths)),
                         hint="the folder is empty")
    return out


def _is_case_file(p: Path) -> bool:
    n = p.name
    return n.endswith((".db", ".db-wal", ".db-shm")) and ".triage" in p.parts


def _hash_file(p: Path, name: str) -> InputFile:
    h = hashlib.sha256()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with p.open("rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
                size += n
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(p),
                         hint="check the file's permissions") from None
    return InputFile(p, name, size, h.hexdigest())


def content_hash(inputs: Sequence[InputFile]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted((i.name, i.sha256) for i in inputs):
        h.update(f"{name}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def logs_hash(inputs: Sequence[InputFile]) -> str:
    """The content hash without triage-run.yaml: the same logs with other metadata."""
    return content_hash([i for i in inputs if i.name.rsplit("/", 1)[-1] != RUN_FILE])


def _check_logs_not_elsewhere(store: CaseStore, inputs: Sequence[InputFile]) -> list[str]:
    """Refuse the same logs under other metadata; warn when most files belong to another run."""
    row = store.conn.execute("SELECT name FROM runs WHERE logs_hash = ?",
                             (logs_hash(inputs),)).fetchone()
    if row:
        raise CaseError(f"these logs are already in the case as run {row[0]!r}, with another "
                        f"{RUN_FILE}", where=str(store.path),
                        hint="a run is counted once; its metadata cannot be changed by ingesting "
                        "it again")
    files = [i for i in inputs if i.bytes > 0 and i.name.rsplit("/", 1)[-1] != RUN_FILE]
    if not files:
        return []
    found: dict[str, int] = {}
    for i in files:
        for (name,) in store.conn.execute(
                "SELECT DISTINCT r.name FROM run_inputs i JOIN runs r ON r.id = i.run_id"
                " WHERE i.sha256 = ?", (i.sha256,)):
            found[name] = found.get(name, 0) + 1
    return [f"{n} of {len(files)} input files are already in run {name!r}: is this the same "
            f"attempt? (its failures would be counted twice)"
            for name, n in sorted(found.items()) if 2 * n > len(files)]


def existing_run(store: CaseStore, chash: str) -> tuple[int, str] | None:
    row = store.conn.execute("SELECT id, name FROM runs WHERE content_hash = ?", (chash,)).fetchone()
    return (row[0], row[1]) if row else None


def ingest_run(store: CaseStore, paths: Sequence[Path | str], *, run: str | None = None,
               labels: dict[str, str] | None = None, jobs: int | None = None,
               scanner: Callable[..., ScanResult] | None = None,
               now: Callable[[], datetime] | None = None) -> IngestResult:
    """Scan `paths` as one run and store it in one transaction (see the module docstring)."""
    paths = [Path(p) for p in paths]
    inputs = collect_inputs(paths, exclude=[store.path])
    chash = content_hash(inputs)
    found = existing_run(store, chash)
    if found:
        return _unchanged(store, found)
    overlap = _check_logs_not_elsewhere(store, inputs)
    run_file_path = find_run_file(paths)
    run_file = load_run_file(run_file_path) if run_file_path else RunFile()
    name = run or run_file.name or f"{paths[0].resolve().name}-{chash[7:15]}"
    if scanner is None:
        from triage.scan import scan  # the lead's scanner

        result = scan([str(p) for p in paths], jobs=jobs, playbook=_playbook())
    else:
        result = scanner([str(p) for p in paths], jobs=jobs)
    res = record_run(store, result, name=name, content_hash=chash, inputs=inputs,
                     run_file=run_file, labels=labels or {}, now=now)
    if overlap and res.created:
        res = replace(res, warnings=tuple(overlap) + res.warnings)
    return res


_PLAYBOOK: tuple[str | None, object] | None = None


def _playbook():
    """The playbook, loaded once per process (per TRIAGE_PLAYBOOKS value).

    The scanner keeps its compiled engine while it is handed the same playbook object, so a
    process that ingests many runs (a benchmark, a bulk import) compiles the rules once.
    """
    global _PLAYBOOK
    env = os.environ.get("TRIAGE_PLAYBOOKS")
    if _PLAYBOOK is None or _PLAYBOOK[0] != env:
        from triage.classify.playbook import load_playbooks
        _PLAYBOOK = (env, load_playbooks())
    return _PLAYBOOK[1]


def _unchanged(store: CaseStore, found: tuple[int, str]) -> IngestResult:
    run = store.run(found[0])
    n = store.conn.execute("SELECT count(*), count(DISTINCT signature) FROM occurrences"
                           " WHERE run_id = ?", (run.id,)).fetchone()
    return IngestResult(run.id, run.name, False, run.content_hash, run.failed, n[0], n[1], 0,
                        run.gpu_steps)


def record_run(store: CaseStore, result: ScanResult, *, name: str, content_hash: str,
               inputs: Sequence[InputFile] = (), run_file: RunFile | None = None,
               labels: dict[str, str] | None = None,
               now: Callable[[], datetime] | None = None) -> IngestResult:
    """Write one scanned run in one transaction. Returns the existing run if the hash is known."""
    run_file = run_file or RunFile()
    merged = run_file.label_map()
    merged.update(labels or {})
    ranks = _rank_rows(result, run_file)
    world_size = run_file.world_size or result.world_size or (len(ranks) or None)
    steps = run_file.steps if run_file.steps is not None else result.max_step
    ranks = _fill_ranks(ranks, world_size, steps)
    gpu_steps = sum(r[4] for r in ranks) if ranks else (world_size or 0) * (steps or 0)
    # a failure's host is its rank's host (logs < triage-run.yaml), else what its line said
    rank_host = {r[0]: r[1] for r in ranks if r[1] is not None}
    failed = result.root_cause is not None
    stamp = (now or (lambda: datetime.now(timezone.utc)))().strftime("%Y-%m-%dT%H:%M:%SZ")
    sig_meta = {s.id: s for s in result.signatures}
    failures = _all_failures(result, sig_meta)
    new_sigs = 0
    conn = store.conn
    try:
        with store.transaction():
            found = existing_run(store, content_hash)
            if found:  # a concurrent ingest of the same files won the race
                raise _AlreadyThere(found)
            clash = conn.execute("SELECT content_hash FROM runs WHERE name = ?", (name,)).fetchone()
            if clash:
                raise CaseError(f"a run named {name!r} already exists with other files",
                                where="--run", hint="choose another --run NAME")
            cur = conn.execute(
                "INSERT INTO runs (name, content_hash, logs_hash, ingested_at, world_size,"
                " steps_completed, gpu_steps, seconds, started, ended, seed, version, failed,"
                " n_inputs, n_ranks, n_occurrences) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, content_hash, logs_hash(inputs) if inputs else content_hash, stamp,
                 world_size, steps, gpu_steps,
                 run_file.duration() if run_file.duration() is not None else result.seconds_spanned,
                 _iso(run_file.started) or result.start_time,
                 _iso(run_file.ended) or result.end_time, merged.get("seed"),
                 merged.get("version"), int(failed), len(inputs), len(ranks), len(failures)))
            run_id = cur.lastrowid
            conn.executemany("INSERT INTO run_labels (run_id, key, value) VALUES (?,?,?)",
                             [(run_id, k, v) for k, v in sorted(merged.items())])
            conn.executemany("INSERT INTO run_inputs (run_id, path, bytes, sha256) VALUES (?,?,?,?)",
                             [(run_id, i.name, i.bytes, i.sha256) for i in inputs])
            conn.executemany("INSERT INTO run_ranks (run_id, rank, host, last_step, exit_code, steps)"
                             " VALUES (?,?,?,?,?,?)", [(run_id, *r) for r in ranks])
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO signatures (id, family, template, playbook) VALUES (?,?,?,?)",
                [_sig_row(f, sig_meta) for f in _distinct_sigs(failures)])
            new_sigs = conn.total_changes - before
            conn.executemany(
                "INSERT INTO occurrences (run_id, signature, family, role, rank, host, step, time,"
                " message, path, line, why, playbook, seq, frames)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, f.signature, f.family, f.role, f.rank,
                  rank_host.get(f.rank) or f.host, f.step, f.time,
                  f.message, f.source.path, f.source.line, f.why, f.playbook, seq,
                  frames_to_json(f.frames))
                 for seq, f in enumerate(failures)])
    except _AlreadyThere as there:
        return _unchanged(store, there.found)
    except sqlite3.IntegrityError as exc:
        raise CaseError(f"could not store run {name!r}: {exc}", where=str(store.path),
                        hint="report this as a bug; the case is unchanged") from None
    return IngestResult(run_id, name, True, content_hash, failed, len(failures),
                        len({f.signature for f in failures}), new_sigs, gpu_steps,
                        tuple(result.warnings))


def _all_failures(result: ScanResult, sig_meta: dict) -> list[Failure]:
    """The scan's classified failures, plus one row per further (signature, rank) occurrence.

    A scan may aggregate: `failures` holds the classified ones (root cause, symptoms) and
    `occurrences` the first line of every signature on every rank. Extra occurrences take their
    signature's family and role (a further rank of the root cause's signature is a symptom).
    """
    failures = list(result.failures)
    if result.root_cause is not None and result.root_cause not in failures:
        failures.insert(0, result.root_cause)
    covered = {(f.signature, f.rank) for f in failures}
    role: dict[str, str] = {}
    for f in failures:
        role.setdefault(f.signature, f.role)
    default = "symptom" if result.root_cause is not None else "independent"
    for o in getattr(result, "occurrences", ()) or ():
        if (o.signature, o.rank) in covered:
            continue
        covered.add((o.signature, o.rank))
        meta = sig_meta.get(o.signature)
        r = role.get(o.signature, default)
        failures.append(Failure(
            family=meta.family if meta else "other", rank=o.rank, host=o.host, step=o.step,
            time=o.time, message=o.message, source=o.source,
            role="symptom" if r == "root" else r, signature=o.signature,
            playbook=meta.playbook if meta else None,
            why="same signature as a classified failure of this run",
            frames=o.frames))
    return failures


class _AlreadyThere(Exception):
    def __init__(self, found: tuple[int, str]):
        self.found = found


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def _distinct_sigs(failures):
    seen = {}
    for f in failures:
        seen.setdefault(f.signature, f)
    return list(seen.values())


def _sig_row(f, meta) -> tuple:
    s = meta.get(f.signature)
    if s is not None:
        return (s.id, s.family, s.template, s.playbook)
    return (f.signature, f.family, f.message, f.playbook)


def _rank_rows(result: ScanResult, run_file: RunFile) -> list[tuple]:
    """(rank, host, last_step, exit_code, steps) per rank known from logs or the run file."""
    rows: dict[int, list] = {}
    for r in result.ranks:
        rows[r.rank] = [r.rank, r.host, r.last_step, r.exit_code, None]
    for rank, host in run_file.hosts.items():
        rows.setdefault(rank, [rank, None, None, None, None])[1] = host
    return [tuple(v) for _, v in sorted(rows.items())]


def _fill_ranks(rows: list[tuple], world_size: int | None, steps: int | None) -> list[tuple]:
    """Add ranks 0..world_size-1 the logs did not show, and each rank's exposure in steps."""
    by_rank = {r[0]: r for r in rows}
    if world_size:
        for rank in range(world_size):
            by_rank.setdefault(rank, (rank, None, None, None, None))
    out = []
    for rank, (_, host, last, code, _) in sorted(by_rank.items()):
        exposure = last if last is not None else (steps or 0)
        out.append((rank, host, last, code, max(0, int(exposure))))
    return out


def env_jobs() -> int | None:
    v = os.environ.get("TRIAGE_JOBS")
    return int(v) if v and v.isdigit() else None
