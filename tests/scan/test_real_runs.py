"""`triage scan` on logs of real 4-rank gloo jobs with injected faults (tests/realruns.py).

The truth comes from the job itself (what it injected, on which rank and step); the scan must
name the faulty rank, the family and the step, and call the other ranks' failures symptoms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from triage.scan import scan

pytestmark = pytest.mark.slow

FAULT_RUNS = ["real_run_exception", "real_run_sigkill", "real_run_nan", "real_run_hang",
              "real_run_data_error"]


def expected_step(run, message: str) -> int:
    """The contract: the step the error states, else the last step the rank reported.

    The demo trainer logs `step N` after step N completes, so an error inside step N that does
    not state its step is attributed to step N-1.
    """
    if f"step {run.fault_step}" in message:
        return run.fault_step
    return run.fault_step - 1


def expected_root_family(run) -> str:
    # A hung rank leaves no error of its own: the others' timeouts point at it.
    return "hang" if run.fault == "hang" else run.expected_family


@pytest.mark.parametrize("fixture", FAULT_RUNS)
def test_scan_names_faulty_rank_family_and_step(request, fixture):
    run = request.getfixturevalue(fixture)
    result = scan([run.outdir], jobs=1)
    rc = result.root_cause
    assert rc is not None, "a failed run must have a root cause"
    assert rc.rank == run.fault_rank, rc.why
    assert rc.family == expected_root_family(run), (rc.family, rc.message, rc.why)
    if run.fault != "hang":
        assert rc.step == expected_step(run, rc.message)
    # every other rank's failure is a symptom (or the same failure elsewhere), never a root
    for f in result.failures:
        if f is not rc:
            assert f.role in ("symptom", "independent")
            if f.family in ("comm_error", "collective_timeout"):
                assert f.role == "symptom"
    # the quoted line exists at the stated place
    with open(os.path.join(rc.source.path), encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    assert rc.message.strip() in lines[rc.source.line - 1]


def test_console_alone_is_enough(real_run_exception):
    """The interleaved console by itself attributes the failure to the right rank."""
    run = real_run_exception
    result = scan([run.console], jobs=1)
    assert result.root_cause.rank == run.fault_rank
    assert result.root_cause.source.path == str(run.console)
    assert {r.rank for r in result.ranks} == set(range(4))


def test_per_rank_tree_alone_is_enough(real_run_nan):
    """The torchrun --log-dir tree (per-rank files, no prefixes) attributes by path."""
    run = real_run_nan
    result = scan([run.attempt_dir], jobs=1)
    assert result.root_cause.rank == run.fault_rank
    assert result.root_cause.family == run.expected_family


def test_clean_run_has_no_root_cause(real_run_clean):
    result = scan([real_run_clean.outdir], jobs=1)
    assert result.root_cause is None
    assert result.failures == ()
    assert result.max_step is not None and result.max_step >= 19


def test_cli_json_contract_on_real_run(real_run_sigkill, tmp_path):
    """Run the CLI as a user would; stdout is exactly one JSON object per the contract."""
    run = real_run_sigkill
    proc = subprocess.run([sys.executable, "-m", "triage", "scan", str(run.outdir), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "triage.scan/1"
    assert set(data) == {"schema", "inputs", "root_cause", "failures", "signatures", "stats"}
    rc = data["root_cause"]
    assert set(rc) == {"family", "rank", "host", "step", "time", "message", "source", "role",
                       "signature", "playbook", "why"}
    assert rc["rank"] == run.fault_rank and rc["family"] == "signal" and rc["role"] == "root"
    assert rc["signature"].startswith("sig1:")
    sig_ids = {s["id"] for s in data["signatures"]}
    assert {f["signature"] for f in data["failures"]} <= sig_ids


def test_cli_terminal_summary(real_run_exception):
    run = real_run_exception
    proc = subprocess.run([sys.executable, "-m", "triage", "scan", str(run.outdir)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    assert "Root cause" in proc.stdout
    assert f"rank {run.fault_rank}" in proc.stdout
    assert "Signatures" in proc.stdout
