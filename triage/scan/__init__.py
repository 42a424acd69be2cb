"""`scan(paths)`: from a pile of training logs to classified failures and the root cause.

Stages: list inputs (triage.ingest.discover.expand) -> look at each file and plan pieces
(specs_from, iter_plan) -> scan pieces (triage.scan.worker, in this process, in worker
processes, or on a Dask cluster) -> merge (triage.scan.merge) -> root cause
(triage.classify.roles, with triage.analyze.hang for silent hangs). With many files
(STREAM_MIN) the workers look at the files themselves: each takes a block of the listing, stats
and scans it, and hands back the few files big enough to be planned on their own.

Parallelism: files in parallel, and one large plain file split at line boundaries into pieces
of at least SPLIT_MIN bytes. Small files are batched into units so that 100,000 per-rank files
cost one task per batch, not one per file. `--jobs 1`, `--jobs N` and Dask give identical
results: pieces are merged in (input, offset) order whatever order they finish in, and every
lookback a piece needs is read from the file, not from another piece's memory.

Memory: each worker holds one chunk buffer (8 MiB), a lookback window and its aggregated
occurrences; nothing grows with input size except the number of distinct (signature, rank) pairs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from triage.classify.playbook import Playbook, load_playbooks
from triage.errors import InputError, UsageError
from triage.ingest.discover import (KIND_PROBE, KIND_STDIN, STDIN, TEXT_KINDS, InputSpec, expand,
                                   specs_from)
from triage.records import ScanResult
from triage.scan.engine import Engine
from triage.scan.merge import merge
from triage.scan.worker import Piece, PieceResult, _numpy, scan_piece, scan_unit

SPLIT_MIN = 64 << 20  # a plain file is split only into pieces at least this large
PIECE_TARGET = 256 << 20  # ... and into at least one piece per PIECE_TARGET bytes
UNIT_BYTES = 32 << 20  # small files are batched into units of about this many bytes
UNIT_FILES = 4096
SERIAL_BELOW = 24 << 20  # below this total, processes cost more than they save

_ENGINE: Engine | None = None  # the engine of this process (inherited by forked workers)
_ENGINE_KEY: Any = None


@dataclass(frozen=True)
class Unit:
    pieces: tuple[Piece, ...]
    nbytes: int

    def __reduce__(self):
        # To a worker as plain tuples, which pickle in C: a named tuple costs a Python call
        # each way (100,000 files: a third of a second of the parent's time).
        return (_unit_of_rows, ([(tuple(p.spec), p.start, p.end) for p in self.pieces],
                                self.nbytes))


def _unit_of_rows(rows: list[tuple], nbytes: int) -> Unit:
    make = InputSpec._make
    return Unit(tuple([Piece(make(spec), start, end) for spec, start, end in rows]), nbytes)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def plan(specs: Sequence[InputSpec], jobs: int) -> list[Unit]:
    return list(iter_plan(specs, jobs))


def _alone(spec: InputSpec, jobs: int) -> bool:
    """Whether `iter_plan` gives this input a unit (or several) of its own."""
    return spec.size >= UNIT_BYTES or (spec.kind == "log" and jobs > 1
                                       and spec.size >= 2 * SPLIT_MIN)


def iter_plan(specs: Iterable[InputSpec], jobs: int) -> Iterator[Unit]:
    """Units of work, in input order, each as soon as its inputs are known."""
    batch: list[Piece] = []
    batch_bytes = 0
    for spec in specs:
        size = spec.size
        if spec.kind == "log" and jobs > 1 and size >= 2 * SPLIT_MIN:
            n = min(max(jobs, size // PIECE_TARGET), size // SPLIT_MIN)
            step = size // n
            for k in range(n):
                start = k * step
                end = None if k == n - 1 else (k + 1) * step
                yield Unit((Piece(spec, start, end),), (end or size) - start)
            continue
        if size >= UNIT_BYTES:
            yield Unit((Piece(spec),), size)
            continue
        batch.append(Piece(spec))
        batch_bytes += size
        if batch_bytes >= UNIT_BYTES or len(batch) >= UNIT_FILES:
            yield Unit(tuple(batch), batch_bytes)
            batch, batch_bytes = [], 0
    if batch:
        yield Unit(tuple(batch), batch_bytes)


_PLAYBOOKS: dict = {}


def _playbook_key(dirs: Sequence[str]) -> tuple:
    from triage.classify.playbook import builtin_dir

    env = os.environ.get("TRIAGE_PLAYBOOKS", "")
    roots = [str(builtin_dir()), *map(str, dirs), *[d for d in env.split(os.pathsep) if d]]
    files = []
    for root in roots:
        try:
            for e in sorted(os.scandir(root), key=lambda e: e.name):
                if e.name.endswith((".yaml", ".yml")):
                    st = e.stat()
                    files.append((e.path, st.st_mtime_ns, st.st_size))
        except OSError:
            files.append((root, None, None))
    return (tuple(map(str, dirs)), env, tuple(files))


def cached_playbook(dirs: Sequence[str] = ()) -> Playbook:
    """load_playbooks(dirs), reused while no rules file changed (one load per process)."""
    key = _playbook_key(dirs)
    pb = _PLAYBOOKS.get(key)
    if pb is None:
        pb = load_playbooks(list(dirs))
        _PLAYBOOKS.clear()
        _PLAYBOOKS[key] = pb
    return pb


def _run_unit(unit: Unit) -> list[PieceResult]:
    assert _ENGINE is not None
    with _no_gc():
        return scan_unit(_ENGINE, unit.pieces)


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector off while scanning: a scan allocates hundreds of thousands
    of small acyclic objects (one occurrence per rank), and each full collection walks all of
    them again (a quarter of the time on 100,000 files). Nothing a scan builds is a cycle."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _dask_unit(unit: Unit, playbook_dirs: tuple[str, ...], backend: str | None) -> list[PieceResult]:
    """Entry point on a Dask worker: build (once per process) the engine, scan one unit."""
    global _ENGINE, _ENGINE_KEY
    key = (playbook_dirs, backend)
    if _ENGINE is None or _ENGINE_KEY != key:
        _ENGINE = Engine.build(load_playbooks(list(playbook_dirs)), backend)
        _ENGINE_KEY = key
    return _run_unit(unit)


def _hang_hook(occs, *, ranks, world_size, hosts, path_of, exits):
    """Ask the hang analysis who the silent rank is (collective timeouts only)."""
    try:
        from triage.analyze.hang import CollectiveObs, analyze
        from triage.parse.collectives import observe_line_all
    except ImportError:  # pragma: no cover - the hang module ships with triage
        return None
    from triage.records import SourceRef

    obs = []
    for o in occs:
        src = SourceRef(path_of[o.input_index], o.line_rel)
        msg = o.message
        found = observe_line_all(_strip(msg), rank=o.rank, source=src, host=o.host)
        if not found and o.rank is not None and o.family in ("collective_timeout", "comm_error",
                                                               "collective_mismatch"):
            found = [CollectiveObs(rank=o.rank, pg=o.fields.get("pg"),
                                   seq=int(o.fields["seq"]) if o.fields.get("seq", "").isdigit() else None,
                                   op=o.fields.get("op"), shape=None, state="timed_out",
                                   source=src, host=o.host)]
        obs.extend(found)
    if not obs:
        return None
    return analyze(obs, world_size=world_size, known_ranks=ranks, hosts=hosts)


def _strip(message: str) -> str:
    from triage.parse.prefix import split_prefix

    return message[split_prefix(message).offset:]


def scan(paths: Sequence[str | os.PathLike], *, playbook: Playbook | None = None,
         playbook_dirs: Sequence[str] = (), jobs: int | None = None,
         progress: Callable[[int, int], None] | None = None, dask_scheduler: str | None = None,
         backend: str | None = None) -> ScanResult:
    """Scan logs and return the classified failures and the root cause.

    `progress(done_bytes, total_bytes)` is called as work completes (from this process).
    """
    t0 = time.perf_counter()
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1", where="--jobs")
    items = expand([os.fspath(p) for p in paths])
    warnings: list[str] = []
    where = ", ".join(map(str, paths))[:200]
    if _streams(items, jobs, dask_scheduler):
        return _scan_streaming(items, warnings, jobs or default_jobs(), progress, t0,
                               playbook or cached_playbook(playbook_dirs), backend, where)
    specs = list(specs_from(items, warnings))
    text_specs = [s for s in specs if s.kind in TEXT_KINDS]
    probes = [s for s in specs if s.kind == KIND_PROBE]
    if not text_specs and not probes:
        raise InputError("no log files to scan", where=where, hint=_NO_LOGS_HINT)
    _engine_for(playbook or cached_playbook(playbook_dirs), backend)
    jobs = jobs or default_jobs()
    total = sum(s.size for s in text_specs)
    stdin_specs = [s for s in text_specs if s.kind == KIND_STDIN]
    file_specs = [s for s in text_specs if s.kind != KIND_STDIN]
    units = plan(file_specs, jobs)
    if any(s.size > (1 << 16) for s in file_specs):
        _numpy()  # large chunks count lines with numpy: import it once, before workers fork
    results: list[PieceResult] = []
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for s in stdin_specs:  # stdin is read here, never in a worker
        results.append(scan_piece(_ENGINE, Piece(s), tick))
    if dask_scheduler:
        results.extend(_scan_dask(units, dask_scheduler, tuple(playbook_dirs), backend, tick))
    elif jobs == 1 or len(units) <= 1 or total < SERIAL_BELOW:
        with _no_gc():
            for u in units:
                results.extend(scan_unit(_ENGINE, u.pieces, tick))
    else:
        with _no_gc():  # also off in the forked workers, which inherit it
            results.extend(_scan_pool(units, jobs, tick))
    with _no_gc():
        return merge(text_specs, results, seconds=time.perf_counter() - t0, warnings=warnings,
                     hang=_hang_hook, probes=probes)


def _engine_for(playbook: Playbook, backend: str | None) -> Engine:
    """The engine of this process for `playbook` (built once; forked workers inherit it)."""
    global _ENGINE, _ENGINE_KEY
    key = (backend, id(playbook))
    if _ENGINE is None or _ENGINE_KEY != key:
        _ENGINE = Engine.build(playbook, backend)
        _ENGINE_KEY = key
    return _ENGINE


STREAM_MIN = 8192  # files from which the workers start while the rest are still looked at


def _streams(items: list[tuple], jobs: int | None, dask_scheduler: str | None) -> bool:
    """Many files, worker processes, no stdin: worth starting before every file is stat-ed."""
    if dask_scheduler or (jobs or default_jobs()) < 2 or len(items) < STREAM_MIN:
        return False
    return all(it[0] != STDIN for it in items)


_NO_LOGS_HINT = "pass log files, a run directory, a glob, .gz files or - for stdin"


def _scan_streaming(items: list[tuple], warnings: list[str], jobs: int,
                    progress: Callable[[int, int], None] | None, t0: float, playbook: Playbook,
                    backend: str | None, where: str) -> ScanResult:
    """`scan` for a directory of many files. The workers look at the files themselves (stat,
    kind, rank hint: 5 us a file that this process would otherwise spend beside them, on the
    same cores) and scan them: each takes a block of BLOCK_ITEMS listed items, numbers its files
    by their place in the listing (the order of `scan`'s numbering, with gaps where an item is
    not a file to read) and scans the small ones; files big enough to be units of their own (or
    to be split) come back and are scanned after the blocks. Same results as `scan`: a file
    already taken under another name in an earlier block (a hard link, a symlink) makes this
    process look at that block again itself, with every file taken so far in mind."""
    _engine_for(playbook, backend)
    text_specs: list[InputSpec] = []
    probes: list[InputSpec] = []
    later: list[InputSpec] = []
    results: list[PieceResult] = []
    seen: set[int] = set()
    total = done = 0  # the total grows as files are looked at

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    blocks = [(i, items[i:i + BLOCK_ITEMS], jobs) for i in range(0, len(items), BLOCK_ITEMS)]
    import multiprocessing as mp

    with _no_gc(), mp.get_context("fork").Pool(processes=jobs) as pool:
        for (first, block, _), got in zip(blocks, pool.imap(_look_and_scan, blocks)):
            rows, warns, idents, res, nbytes = got
            if not seen.isdisjoint(idents):  # a file taken in an earlier block: look again here
                rows, warns, idents, res, nbytes = _look_and_scan((first, block, jobs), seen)
            seen.update(idents)
            warnings.extend(warns)
            for index, kind, size, rank, attempt, mtime in rows:
                path = block[index - first][1]  # the listing's own string, not a copy
                spec = InputSpec(index, path, path, kind, size, rank, attempt, mtime)
                if kind in TEXT_KINDS:
                    text_specs.append(spec)
                    total += spec.size
                    if _alone(spec, jobs):
                        later.append(spec)
                elif kind == KIND_PROBE:
                    probes.append(spec)
            results.extend(res)
            tick(nbytes)
        if later:
            results.extend(_scan_pool(list(iter_plan(later, jobs)), jobs, tick, pool))
    if not text_specs and not probes:
        raise InputError("no log files to scan", where=where, hint=_NO_LOGS_HINT)
    with _no_gc():
        return merge(text_specs, results, seconds=time.perf_counter() - t0, warnings=warnings,
                     hang=_hang_hook, probes=probes)


BLOCK_ITEMS = 2048  # listed items a worker looks at and scans in one task (streaming scans)


def _look_and_scan(task: tuple, seen: set[int] | None = None) -> tuple:
    """One block of a streaming scan (in a worker, or here with `seen`): its files looked at
    and numbered by position, the small ones scanned. Returns (spec rows, warnings, file
    identities, results, bytes scanned); the big files are left to the caller (`_alone`)."""
    first, block, jobs = task
    warns: list[str] = []
    idents: list[int] = []
    specs = list(specs_from(block, warns, first=first, seen=set() if seen is None else set(seen),
                            idents=idents))
    small = [s for s in specs if s.kind in TEXT_KINDS and not _alone(s, jobs)]
    res: list[PieceResult] = []
    assert _ENGINE is not None
    with _no_gc():
        for unit in iter_plan(small, jobs):
            res.extend(scan_unit(_ENGINE, unit.pieces))
    # rows without the paths (specs_from takes a file's path as listed): the caller has them
    return ([(s.index, s.kind, s.size, s.rank_hint, s.attempt, s.mtime) for s in specs], warns,
            idents, res, sum(s.size for s in small))


def _run_sized(unit: Unit) -> tuple[int, list[PieceResult]]:
    return unit.nbytes, _run_unit(unit)


def _scan_pool(units: list[Unit], jobs: int, tick: Callable[[int], None],
               pool: Any = None) -> list[PieceResult]:
    """Units on `jobs` forked workers (or on `pool`), biggest first: one large file must not
    start last."""
    import multiprocessing as mp

    units = sorted(units, key=lambda u: -u.nbytes)
    out: list[PieceResult] = []
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(
                mp.get_context("fork").Pool(processes=min(jobs, len(units))))
        for nbytes, res in pool.imap(_run_sized, units):
            out.extend(res)
            tick(nbytes)
    return out


def _scan_dask(units: list[Unit], address: str, playbook_dirs: tuple[str, ...],
               backend: str | None, tick: Callable[[int], None]) -> list[PieceResult]:
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError("--dask-scheduler needs dask.distributed",
                         hint="pip install 'dask[distributed]'") from exc
    try:
        client = Client(address, timeout="20s")
    except Exception as exc:
        raise UsageError(f"cannot reach the Dask scheduler ({exc})", where=address,
                         hint="check the address (tcp://host:8786) and that the scheduler runs") from exc
    out: list[PieceResult] = []
    try:
        futures = client.map(_dask_unit, units, playbook_dirs=playbook_dirs, backend=backend,
                             pure=False)
        for unit, fut in zip(units, futures):
            out.extend(fut.result())
            tick(unit.nbytes)
    finally:
        client.close()
    return out
