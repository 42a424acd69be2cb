"""The real-run fixtures do what tests/realruns.py promises (other suites rely on it)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_clean_run_finishes_on_every_rank(real_run_clean):
    r = real_run_clean
    assert r.returncode == 0 and not r.timed_out
    assert r.injected == () and r.expected_family is None
    text = r.console.read_text()
    for rank in range(r.nproc):
        assert f"[default{rank}]:" in text
        assert (r.rank_dir(rank) / "stderr.log").exists()
        assert f"step {r.steps - 1} | loss" in (r.rank_dir(rank) / "stderr.log").read_text()
        assert len((r.probe_dir / f"rank{rank}.jsonl").read_text().splitlines()) == r.steps
    assert "training finished" in text


@pytest.mark.parametrize("name, family, exc", [
    ("real_run_exception", "python_exception", "ValueError: expected a 2-D batch"),
    ("real_run_nan", "nonfinite", "FloatingPointError: loss is nan"),
    ("real_run_data_error", "python_exception", "ValueError: corrupt record"),
])
def test_raising_faults_leave_a_traceback_and_error_file(request, name, family, exc):
    r = request.getfixturevalue(name)
    assert r.returncode != 0 and not r.timed_out
    first = r.first_injection
    assert (first.fault, first.rank, first.step) == (r.fault, r.fault_rank, r.fault_step)
    assert r.expected_family == family
    error = json.loads((r.rank_dir(r.fault_rank) / "error.json").read_text())
    assert exc in error["message"]["message"]
    assert exc in (r.rank_dir(r.fault_rank) / "stderr.log").read_text()
    # the faulty rank never logged the step it failed at
    assert f"step {r.fault_step} | loss" not in (r.rank_dir(r.fault_rank) / "stderr.log").read_text()


def test_sigkill_leaves_no_error_file(real_run_sigkill):
    r = real_run_sigkill
    assert r.returncode != 0
    assert not (r.rank_dir(r.fault_rank) / "error.json").exists()
    assert "Signal 9 (SIGKILL)" in r.console.read_text()


def test_hang_times_out_the_other_ranks(real_run_hang):
    r = real_run_hang
    assert r.returncode != 0 and not r.timed_out
    text = r.console.read_text()
    assert "exitcode  : -15" in text
    assert not (r.rank_dir(r.fault_rank) / "error.json").exists()
    others = [k for k in range(r.nproc) if k != r.fault_rank]
    logs = {k: (r.rank_dir(k) / "stderr.log").read_text() for k in others}
    # the first rank(s) to time out exit; their peers may then see the connection close first
    assert any("Timed out waiting" in text for text in logs.values())
    assert all("Timed out waiting" in text or "Connection closed by peer" in text
               for text in logs.values())


def _probe(result, rank=0):
    lines = (result.probe_dir / f"rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_ddp_and_torch_optim_give_the_same_run(real_run_clean, real_run_ddp):
    """The fast defaults (hand-written gradient sync and SGD) change start-up time, not the
    training: the first update is bitwise identical, and later losses agree to float rounding
    (DDP's bucket lays gradients out in another order, so gloo sums some elements in another
    order)."""
    assert real_run_ddp.returncode == 0
    assert "gradient sync: DDP" in real_run_ddp.console.read_text()
    ddp, manual = _probe(real_run_ddp), _probe(real_run_clean)
    assert len(ddp) == len(manual) == real_run_clean.steps
    assert ddp[0]["param_checksum"] == manual[0]["param_checksum"]
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(ddp, manual)) < 1e-5
    for rank in range(1, real_run_ddp.nproc):  # and each run agrees with itself across ranks
        assert [r["param_checksum"] for r in _probe(real_run_ddp, rank)] == \
            [r["param_checksum"] for r in ddp]


def test_reduce_bug_run_matches_its_documented_truth(real_run_reduce_bug):
    r = real_run_reduce_bug
    kinds = [(i.detail["kind"], i.rank, i.step) for i in r.injected]
    assert kinds[0] == ("bitflip", 0, 0)
    assert r.expected_family is None  # the first wrong sum is silent...
    loud = [i for i in r.injected if i.detail["kind"] != "bitflip"][0]
    assert r.returncode != 0  # ...the run dies of a later one
    assert "FloatingPointError: loss is nan" in (r.rank_dir(loud.rank) / "stderr.log").read_text()
    assert "probe: parameter checksums differ across ranks at step 9" in r.console.read_text()


def test_scan_of_a_real_run_with_its_probe_records_names_the_silent_rank(real_run_reduce_bug):
    """The real gloo run of the reduction bug: the logs' first loud failure is a NaN on another
    rank steps later (the probe's periodic check logs the divergence at step 9); with the probe
    folder scanned too, the root cause is the first wrong sum, on the rank it hit, at step 0."""
    from triage.scan import scan

    r = real_run_reduce_bug
    first = r.injected[0]
    logs_only = scan([r.console], jobs=1)
    assert logs_only.root_cause.step is None or logs_only.root_cause.step > first.step
    both = scan([r.console, r.probe_dir], jobs=1)
    rc = both.root_cause
    assert (rc.rank, rc.step, rc.playbook) == (first.rank, first.step, "numerics.rank_divergence")
    assert rc.source.path.endswith(f"rank{first.rank}.jsonl")
    hosts = {s.rank: s.host for s in logs_only.ranks if s.host}
    assert rc.host == hosts.get(first.rank, rc.host)  # the logs' name for the host wins
    roles = {f.family: f.role for f in both.failures if f.family == "nonfinite"}
    assert roles == {"nonfinite": "symptom"}
