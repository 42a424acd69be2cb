"""A killed ingest leaves no half run; two ingests at once both land.

SIGKILL test: a forked child runs real ingests (real files, the real scanner, the real store)
one run after another; it is killed (1) by the parent after a random delay, or (2) by itself at a
random SQL statement inside a run's write transaction (so kills inside the transaction, COMMIT
included, are certain, not left to luck). After each kill: PRAGMA integrity_check, foreign keys,
every run whole (its counts match its rows), no signature without occurrences, and every run
the child had reported committed is there. 50 iterations; fork keeps each one cheap.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triage.case import CaseStore
from triage.case.ingest import ingest_run

from tests.case.synthlogs import write_run

ITERATIONS = 50
RUNS_PER_CHILD = 8


def _child(case: str, folders: list[str], kill_at: int | None, pipe) -> None:
    store = CaseStore.open(Path(case))
    if kill_at is not None:
        count = [0]

        def trace(stmt: str) -> None:
            if store.conn.in_transaction or stmt.startswith("COMMIT"):
                count[0] += 1
                if count[0] >= kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
        store.conn.set_trace_callback(trace)
    for folder in folders:
        res = ingest_run(store, [Path(folder)], run=Path(folder).name, jobs=1)
        pipe.send(res.run)
    os._exit(0)


def _check_whole(case: Path, committed: set[str]) -> int:
    with CaseStore.open(case, create=False) as store:
        assert store.integrity_check() == []
        names = {r.name for r in store.runs()}
        assert committed <= names
        orphan = store.conn.execute("SELECT count(*) FROM signatures WHERE id NOT IN"
                                    " (SELECT signature FROM occurrences)").fetchone()[0]
        assert orphan == 0
        for inc in store.incidents():  # a failed run always has its root cause
            assert inc.root.role == "root"
        assert sum(r.failed for r in store.runs()) == len(store.incidents())
        return len(names)


@pytest.mark.skipif(sys.platform != "linux", reason="needs fork and SIGKILL")
def test_sigkill_at_random_points_leaves_no_half_run(tmp_path):
    rng = random.Random(1234)
    case = tmp_path / "case.db"
    CaseStore.open(case).close()
    # warm the scanner (rules compiled once) in the parent, so every forked child inherits it
    with CaseStore.open(tmp_path / "warm.db") as warm:
        ingest_run(warm, [write_run(tmp_path / "warm", world=2, steps=2)], run="w", jobs=1)
    ctx = multiprocessing.get_context("fork")
    made = 0
    kills = {"timer": 0, "in_transaction": 0}
    total = 0
    for it in range(ITERATIONS):
        folders = []
        for _ in range(RUNS_PER_CHILD):
            fault = rng.choice([None, "ima", "nan", "value"])
            world = rng.choice([4, 8, 16])
            folders.append(str(write_run(tmp_path / "logs" / f"run{made:04d}", world=world,
                                         steps=rng.randint(5, 40), fault=fault,
                                         fault_rank=rng.randrange(world), fault_step=3,
                                         hosts={r: f"n{r // 4}" for r in range(world)},
                                         seed=made)))
            made += 1
        parent_end, child_end = ctx.Pipe(duplex=False)
        in_tx = it % 2 == 1
        kill_at = rng.randint(1, 60) if in_tx else None
        proc = ctx.Process(target=_child, args=(str(case), folders, kill_at, child_end))
        proc.start()
        child_end.close()
        if not in_tx:
            time.sleep(rng.uniform(0.0, 0.08))
            proc.kill()
        proc.join(60)
        assert proc.exitcode is not None, "child did not finish"
        committed: set[str] = set()
        while parent_end.poll():
            try:
                committed.add(parent_end.recv())
            except EOFError:
                break
        parent_end.close()
        if proc.exitcode == -signal.SIGKILL:
            kills["in_transaction" if in_tx else "timer"] += 1
        total = _check_whole(case, committed)
        assert total >= len(committed)
    # most children died before finishing, in both ways
    assert kills["in_transaction"] >= ITERATIONS // 2 - 3
    assert kills["timer"] >= 5
    assert 0 < total < made
    # what survived can be ingested again only as "already there"; the rest lands now
    with CaseStore.open(case) as store:
        before = {r.name for r in store.runs()}
        for folder in sorted((tmp_path / "logs").iterdir())[:20]:
            res = ingest_run(store, [folder], run=folder.name, jobs=1)
            assert res.created == (folder.name not in before)
        assert store.integrity_check() == []


def _ingest_cli(case: Path, folder: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "triage", "ingest", str(folder), "--run", name,
                             "--case", str(case), "--json", "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_ingests_both_land(tmp_path):
    case = tmp_path / "case.db"  # not created yet: both processes race to create and migrate it
    a = write_run(tmp_path / "a", world=16, steps=200, fault="nan", fault_rank=3, fault_step=150)
    b = write_run(tmp_path / "b", world=16, steps=200, fault="ima", fault_rank=9, fault_step=120)
    procs = [_ingest_cli(case, a, "a"), _ingest_cli(case, b, "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert all(json.loads(o[0])["created"] for o in outs)
    # the same files twice at once: one run
    c = write_run(tmp_path / "c", world=8, steps=100)
    procs = [_ingest_cli(case, c, "c1"), _ingest_cli(case, c, "c2")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    created = sorted(json.loads(o[0])["created"] for o in outs)
    assert created == [False, True]
    with CaseStore.open(case, create=False) as store:
        names = sorted(r.name for r in store.runs())
        assert names[:2] == ["a", "b"] and len(names) == 3 and names[2] in ("c1", "c2")
        assert store.integrity_check() == []
        roots = {i.run: i.root for i in store.incidents()}
        assert set(roots) == {"a", "b"} and (roots["a"].rank, roots["b"].rank) == (3, 9)
        assert roots["a"].signature != roots["b"].signature
