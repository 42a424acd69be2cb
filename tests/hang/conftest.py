"""Real gloo jobs whose ranks fall out of step, run once per test session.

`fault_run(world_size, fault)` returns the folder of a real job of `triage.demo.collective_faults`
(2, 4 or 8 ranks on CPU, process-group timeout 4 s, the last rank is the culprit, fault at step
2): logs/rank<R>.log, fr/trace_<R> (pickle dumps), fr_json/trace_<R>.json (JSON dumps) and
job.json (what was injected, which exit code each rank had; the analysis never reads it).
The first call runs all twelve jobs in one interpreter (`--batch`: torch is imported once and
each job forks from it), about a minute on 2 busy cores; each job takes 1-10 s. Runs are cached for the
session; set TRIAGE_HANG_RUNS_CACHE=/some/dir to keep them across sessions while developing
(runs are kept under a folder named by a hash of the job script, so an edited script runs
afresh); CI leaves it unset.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORLD_SIZES = (2, 4, 8)
FAULTS = ("extra", "skip", "shape", "sleep")
# 4 s, not the demo's 3 s: 8 ranks forking on 2 busy cores must not time out by accident
PG_TIMEOUT = 4.0


class _Runs:
    def __init__(self, root: Path):
        self.root = root
        self.done: dict[tuple[int, str], Path] = {}

    def _run_missing(self) -> None:
        """All jobs not on disk yet, in one interpreter (torch imported once, jobs fork)."""
        missing = [f"{ws}:{f}" for ws in WORLD_SIZES for f in FAULTS
                   if not (self.root / f"{f}-{ws}" / "job.json").exists()]
        if not missing:
            return
        cmd = [sys.executable, "-m", "triage.demo.collective_faults", str(self.root),
               "--batch", ",".join(missing), "--timeout", str(PG_TIMEOUT), "--json-dumps"]
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    def get(self, world_size: int, fault: str) -> Path:
        key = (world_size, fault)
        if key in self.done:
            return self.done[key]
        out = self.root / f"{fault}-{world_size}"
        if not (out / "job.json").exists():
            self._run_missing()
        job = json.loads((out / "job.json").read_text())
        assert job["fault"] == fault and job["world_size"] == world_size
        self.done[key] = out
        return out


@pytest.fixture(scope="session")
def fault_runs(tmp_path_factory) -> _Runs:
    cache = os.environ.get("TRIAGE_HANG_RUNS_CACHE")
    # keyed by the job script's text, so an edited job never reuses stale runs
    src = (REPO / "triage" / "demo" / "collective_faults.py").read_bytes()
    version = hashlib.sha1(src + repr((PG_TIMEOUT, WORLD_SIZES, FAULTS)).encode()).hexdigest()
    root = Path(cache) / f"v-{version[:12]}" if cache else tmp_path_factory.mktemp("hang-runs")
    root.mkdir(parents=True, exist_ok=True)
    return _Runs(root)


@pytest.fixture(scope="session")
def fault_run(fault_runs):
    return fault_runs.get
