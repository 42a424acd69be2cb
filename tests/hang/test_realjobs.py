"""The culprit from real gloo jobs (2, 4 and 8 ranks, four faults), whatever the dump order.

Each job (tests/hang/conftest.py) makes its last rank go off-script at step 2 of a loop that
issues all_reduce [20] then broadcast [1] per step (flight-recorder seq 1, 2, 3, ...):

    extra  an extra broadcast [3] before the all-reduce  -> collective #5, off_script
    skip   skips the broadcast                           -> collective #6, off_script
    sleep  sleeps before the all-reduce (SIGTERMed)      -> collective #5, behind
    shape  all-reduces [21] under DETAIL                 -> DETAIL's collective #4 (its own
           count), found in the logs; the dumps stop before the mismatch and say nothing
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.analyze.hang import analyze, analyze_paths, read_log_observations
from triage.cli import app
from triage.parse.flight_recorder import load_dump, observations_from_dumps

from .conftest import FAULTS, WORLD_SIZES

pytestmark = pytest.mark.slow

EXPECT = {  # fault -> (process group, seq, op of the script, the culprit's state)
    "extra": ("0", 5, "all_reduce", "off_script"),
    "skip": ("0", 6, "broadcast", "off_script"),
    "sleep": ("0", 5, "all_reduce", "behind"),
    "shape": ("detail:0", 4, "all_reduce", "off_script"),
}
CASES = [(ws, f) for ws in WORLD_SIZES for f in FAULTS]


def _truth(run: Path) -> dict:
    return json.loads((run / "job.json").read_text())


def _dumps(run: Path):
    return [load_dump(p) for p in sorted((run / "fr").iterdir())]


def _log_obs(run: Path):
    out = []
    for p in sorted((run / "logs").iterdir()):
        out.extend(read_log_observations(p)[0])
    return out


def _orders(n: int, seed: int):
    """Every permutation up to 4 dumps (24); for 8 (40,320) every rotation, its reversal and
    200 seeded random orders."""
    idx = list(range(n))
    if n <= 4:
        return list(itertools.permutations(idx))
    rng = random.Random(seed)
    rots = [tuple(idx[k:] + idx[:k]) for k in range(n)]
    return rots + [tuple(reversed(r)) for r in rots] + [tuple(rng.sample(idx, n))
                                                         for _ in range(200)]


@pytest.mark.parametrize("ws,fault", CASES, ids=[f"{f}-{ws}" for ws, f in CASES])
def test_whole_run_folder(fault_run, ws, fault):
    run = fault_run(ws, fault)
    truth = _truth(run)
    v = analyze_paths([run])
    pg, seq, op, state = EXPECT[fault]
    assert (v.verdict, v.culprits) == ("culprit", (truth["culprit"],)), v.why
    assert (v.process_group, v.seq, v.op) == (pg, seq, op)
    assert v.ranks[truth["culprit"]].state == state
    assert sorted(v.ranks) == list(range(ws))
    assert all(v.ranks[r].state in ("waiting", "behind") for r in range(ws - 1)), v.ranks


@pytest.mark.parametrize("ws,fault", CASES, ids=[f"{f}-{ws}" for ws, f in CASES])
def test_every_dump_order(fault_run, ws, fault):
    run = fault_run(ws, fault)
    culprit = _truth(run)["culprit"]
    dumps = _dumps(run)
    assert sorted(d.rank for d in dumps) == list(range(ws))
    logs = _log_obs(run) if fault == "shape" else []
    first = None
    for order in _orders(len(dumps), seed=ws):
        v = analyze(observations_from_dumps([dumps[i] for i in order]) + logs)
        assert v.culprits == (culprit,), (order, v.why)
        first = first or v
        assert v == first  # the same answer, word for word, whatever the order


@pytest.mark.parametrize("ws,fault", [c for c in CASES if c[0] > 2],
                         ids=[f"{f}-{ws}" for ws, f in CASES if ws > 2])
def test_one_non_culprit_dump_missing(fault_run, ws, fault):
    run = fault_run(ws, fault)
    culprit = _truth(run)["culprit"]
    dumps = _dumps(run)
    extra = [run / "logs"] if fault == "shape" else []
    for missing in range(ws):
        if missing == culprit:
            continue
        kept = [Path(d.path) for d in dumps if d.rank != missing]
        for paths in (kept, list(reversed(kept))):
            v = analyze_paths(extra + paths)
            assert (v.verdict, v.culprits) == ("culprit", (culprit,)), (missing, v.why)


@pytest.mark.parametrize("fault", FAULTS)
def test_two_ranks_with_one_dump_never_blames_the_innocent(fault_run, fault):
    run = fault_run(2, fault)
    v = analyze_paths([run / "fr" / "trace_1"])  # rank 0's dump is missing
    assert v.culprits in ((), (1,))


@pytest.mark.parametrize("ws", WORLD_SIZES)
def test_shape_dumps_alone_are_honestly_undecided(fault_run, ws):
    # DETAIL stops the mismatched all-reduce before it runs: no dump records it
    v = analyze_paths([fault_run(ws, "shape") / "fr"])
    assert (v.verdict, v.culprits) == ("undecided", ())


@pytest.mark.parametrize("fault", ["sleep"])
@pytest.mark.parametrize("ws", [4, 8])
def test_logs_alone_find_the_silent_sleeper(fault_run, ws, fault):
    run = fault_run(ws, fault)
    v = analyze_paths([run / "logs"])
    assert (v.verdict, v.culprits) == ("culprit", (ws - 1,))
    assert v.ranks[ws - 1].state == "silent"


@pytest.mark.parametrize("fault", ["extra", "skip"])
def test_gloo_logs_alone_are_undecided(fault_run, fault):
    # every rank times out and gloo does not say in which collective
    v = analyze_paths([fault_run(4, fault) / "logs"])
    assert (v.verdict, v.culprits) == ("undecided", ())


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("ws", WORLD_SIZES)
def test_json_dumps_read_like_pickles(fault_run, fault, ws):
    run = fault_run(ws, fault)
    pick = observations_from_dumps(_dumps(run))
    js = observations_from_dumps([load_dump(p) for p in sorted((run / "fr_json").iterdir())])
    strip = [(o.rank, o.pg, o.seq, o.op, o.shape, o.state) for o in pick]
    assert strip == [(o.rank, o.pg, o.seq, o.op, o.shape, o.state) for o in js]
    assert analyze(js).culprits == analyze(pick).culprits


def test_cli_json_on_a_real_run(fault_run):
    run = fault_run(4, "skip")
    res = CliRunner().invoke(app, ["hang", str(run / "fr"), str(run / "logs"), "--json"])
    assert res.exit_code == 0, res.output
    j = json.loads(res.stdout)
    assert j["schema"] == "triage.hang/1" and j["verdict"] == "culprit"
    assert j["culprits"] == [3] and j["seq"] == 6 and j["op"] == "broadcast"
    assert j["ranks"]["3"]["state"] == "off_script"
