"""--from-probe (offline, through triage.analyze.diverge) and the bisect tables of the case."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from triage.bisect.outcome import Outcome
from triage.case import CaseStore
from triage.case.bisect import BisectDAO
from triage.cli import app
from triage.errors import CaseError


def _record(step, rank, checksum="c32:00000001", nan=0):
    # the triage.probe/1 line format written by triage/probe.py (see its module docstring)
    return json.dumps({"schema": "triage.probe/1", "kind": "step", "step": step, "rank": rank,
                       "world_size": 2, "loss": None if nan else 0.5, "grad_norm": 1.0,
                       "param_checksum": checksum, "numel": 10,
                       "nonfinite": {"loss": nan, "grads": 0, "params": 0}})


def test_from_probe_every_fifth_step_gives_an_interval(tmp_path):
    d = tmp_path / "probe"
    d.mkdir()
    for rank in (0, 1):
        lines = [_record(s, rank, checksum="c32:bad" if (rank == 1 and s >= 25) else "c32:ok")
                 for s in range(0, 50, 5)]
        (d / f"rank{rank}.jsonl").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["bisect", "step", "--from-probe", str(d), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["culprit"] == 25 and out["interval"] == [21, 25] and out["trials"] == 0


@pytest.mark.slow
def test_from_probe_on_a_real_nan_run(real_run_nan):
    """A real 4-rank gloo job whose loss turns NaN at step 12 and raises there: the probe's last
    records are the clean steps before it, so offline bisection honestly finds no bad step and
    says how far the records are clean (the crash itself is the scanner's business)."""
    r = CliRunner().invoke(app, ["bisect", "step", "--from-probe", str(real_run_nan.probe_dir), "--json"])
    out = json.loads(r.stdout)
    assert r.exit_code == 1, r.output
    assert out["culprit"] is None
    assert out["interval"] == [real_run_nan.fault_step - 1, real_run_nan.fault_step - 1]


def test_from_probe_clean_run_has_no_culprit(tmp_path):
    d = tmp_path / "probe"
    d.mkdir()
    (d / "rank0.jsonl").write_text("\n".join(_record(s, 0) for s in range(10)) + "\n")
    r = CliRunner().invoke(app, ["bisect", "step", "--from-probe", str(d), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["culprit"] is None


def test_bisect_tables_migrate_from_blank_and_number_trials(tmp_path):
    store = CaseStore.open(tmp_path / "c.db")
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"bisect_sessions", "bisect_trials"} <= tables
    dao = BisectDAO(store, clock=lambda: "2026-01-01T00:00:00Z")
    row = dao.create("ranks", "ranks", {"template": "x {ranks}"}, lambda sid: f"/f/{sid}")
    assert row.folder == f"/f/{row.id}" and row.status == "running"
    for key in [(0, 1), (2,), (0, 1)]:
        dao.add_trial(row.id, key, {"ranks": "0,1"}, Outcome.BAD, exit_code=1, seconds=0.5,
                      timed_out=False, output="t.log")
    trials = dao.trials(row.id)
    assert [t.seq for t in trials] == [1, 2, 3] and trials[1].key == (2,)
    dao.finish(row.id, "done", {"ok": 1})
    assert dao.session(row.id).result == {"ok": 1}
    with pytest.raises(CaseError):
        dao.session(999)
    store.close()
    # the rows survive reopening (a crash between trials loses nothing stored)
    again = CaseStore.open(tmp_path / "c.db", create=False)
    assert len(BisectDAO(again).trials(row.id)) == 3
