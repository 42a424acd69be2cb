"""Golden outputs of `triage scan`: the full --json object per fixture, and one terminal rendering.

Each run is a real subprocess (`python -m triage scan PATH --json`) with cwd = a copy of
tests/scan/fixtures (mtimes pinned, see conftest), so paths in the output are relative and stable.
`stats.seconds` (and the seconds in the terminal header) are scrubbed; everything else is compared
exactly, byte for byte, in the order the CLI prints it.

The goldens depend on the playbooks as well as on the scanner: a new or changed rule changes
them. Regenerate on purpose and review the diff:

    TRIAGE_REGEN_GOLDEN=1 python -m pytest tests/scan/test_golden.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.scan.conftest import GOLDEN, REPO

REGEN = bool(os.environ.get("TRIAGE_REGEN_GOLDEN"))

# fixture path (relative to the fixtures folder) -> golden file stem
CASES = {
    "nccl_hang_8rank.log": "nccl_hang_8rank",
    "nccl_mismatch_4rank.log": "nccl_mismatch_4rank",
    "cuda_oom_tee.log": "cuda_oom_tee",
    "slurm-48213.out": "slurm-48213",
    "megatron_nan.log": "megatron_nan",
    "deepspeed_overflow.log": "deepspeed_overflow",
    "mpirun_chained.log": "mpirun_chained",
    "rank_files": "rank_files",
    "rank_files_gz": "rank_files_gz",
    "torchrun_logdir": "torchrun_logdir",
    "hostile_copy.log": "hostile_copy",
}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(COLUMNS="120", NO_COLOR="1", TERM="dumb", CI="1", PYTHONIOENCODING="utf-8")
    env.pop("TRIAGE_PLAYBOOKS", None)
    return env


def run_scan(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triage", "scan", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden {path}; run with TRIAGE_REGEN_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the golden (TRIAGE_REGEN_GOLDEN=1 to update on purpose)"


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_scan_json_golden(fixture, scan_fixtures):
    proc = run_scan([fixture, "--json", "--jobs", "1"], cwd=scan_fixtures)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert data["schema"] == "triage.scan/1"
    assert isinstance(data["stats"]["seconds"], (int, float))
    data["stats"]["seconds"] = 0.0
    check_golden(CASES[fixture] + ".json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def test_scan_json_same_with_two_jobs(scan_fixtures):
    """--jobs 2 over a directory of files gives the same object as --jobs 1 (inputs this small
    may be scanned serially whatever --jobs says; the flag must not change the answer)."""
    one = run_scan(["rank_files", "--json", "--jobs", "1"], cwd=scan_fixtures)
    two = run_scan(["rank_files", "--json", "--jobs", "2"], cwd=scan_fixtures)
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    a["stats"]["seconds"] = b["stats"]["seconds"] = 0
    assert a == b


_SECONDS_RE = re.compile(r" in \d+(?:\.\d+)? s;")


def test_scan_terminal_golden(scan_fixtures):
    proc = run_scan(["cuda_oom_tee.log", "--jobs", "1"], cwd=scan_fixtures)
    assert proc.returncode == 0, proc.stderr
    text = _SECONDS_RE.sub(" in <SECONDS> s;", proc.stdout)
    assert "<SECONDS>" in text
    assert "\x1b[" not in text  # NO_COLOR and a pipe: no escape codes
    check_golden("cuda_oom_tee.txt", text)
