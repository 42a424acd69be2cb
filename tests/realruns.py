"""Session-scoped fixtures that run real multi-process torch jobs, once per test session.

Every fixture returns a `triage.demo.launch.JobResult` for a real 4-rank DDP/gloo job on CPU
started by `run_job` (torchrun --standalone --tee 3 --log-dir). What the job really injected is
on the result, never hard-coded in tests:

    result.fault, result.fault_rank, result.fault_step   what was asked for
    result.injected      Injection(fault, rank, step, detail) records written by the job itself
    result.first_injection, result.expected_family, result.returncode
    result.console       OUT/console.log  (interleaved, "[default<R>]:" prefixes)
    result.attempt_dir   OUT/logs/<run id>/attempt_0  (per-rank stdout.log, stderr.log, error.json)
    result.rank_dir(r)   OUT/logs/<run id>/attempt_0/<r>
    result.probe_dir     OUT/probe (rank<R>.jsonl probe records, every step)

The fixtures (20 steps, seed 0, process-group timeout 15 s):

| fixture               | injects                                        | expected root family, rank |
| --------------------- | ---------------------------------------------- | -------------------------- |
| real_run_clean        | nothing; exit 0                                | none                       |
| real_run_exception    | ValueError in the data path, rank 2, step 12   | python_exception, 2        |
| real_run_sigkill      | SIGKILL, rank 1, step 12                       | signal, 1                  |
| real_run_hang         | rank 2 sleeps before the all-reduce at step 12;| collective_timeout on the  |
|                       | ranks 0,1,3 time out after 15 s (a rank whose  | first rank to time out;    |
|                       | peer timed out first may see "Connection closed| the hung rank 2 is the     |
|                       | by peer" instead); the agent SIGTERMs rank 2   | culprit (it logs nothing)  |
|                       | (exit -15, no traceback, no error.json)        |                            |
| real_run_nan          | NaN loss, rank 3, step 12 (FloatingPointError) | nonfinite, 3               |
| real_run_data_error   | corrupt record ValueError, rank 1, step 7      | python_exception, 1        |
| real_run_reduce_bug   | the custom all-reduce's rare bug, seed 4: a    | nonfinite, 1 (crash); the  |
|                       | silent wrong sum on rank 0 at step 0 (probe:   | probe's first bad step is  |
|                       | checksums differ from step 0), then a NaN sum  | 0 on rank 0                |
|                       | on rank 1 at step 16 -> FloatingPointError at  |                            |
|                       | step 17 (read both from result.injected)       |                            |
| real_run_ddp          | nothing; real DDP and torch.optim.SGD instead  | none                       |
|                       | of the fast defaults (same losses to rounding) |                            |

In each failing run the other ranks fail as symptoms (gloo "Connection closed by peer" or a
timeout) and the agent prints its ChildFailedError summary to the console.

`real_job(**kwargs)` runs any other job (same keywords as `run_job`, minus ``outdir``), cached
by its arguments for the session. Set TRIAGE_REALRUNS_CACHE=/some/dir to keep runs across
sessions while developing (a cached run is reused when its job.json exists); CI leaves it unset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from triage.demo.launch import JobResult, load_job, run_job

DEFAULTS = {"nproc": 4, "seed": 0, "steps": 20, "pg_timeout": 15.0}


class _JobCache:
    def __init__(self, root: Path):
        self.root = root
        self.runs: dict[str, JobResult] = {}

    def get(self, **kwargs) -> JobResult:
        args = {**DEFAULTS, **kwargs}
        args.setdefault("timeout", 240.0)
        key_src = json.dumps({k: v for k, v in args.items() if k != "timeout"}, sort_keys=True,
                             default=str)
        key = hashlib.sha1(key_src.encode()).hexdigest()[:12]
        if key in self.runs:
            return self.runs[key]
        outdir = self.root / f"job-{key}"
        if (outdir / "job.json").exists():
            result = load_job(outdir)
        else:
            if outdir.exists():
                shutil.rmtree(outdir)
            result = run_job(outdir, **args)
        self.runs[key] = result
        return result


@pytest.fixture(scope="session")
def real_job(tmp_path_factory):
    """Factory: ``real_job(fault="nan", fault_step=5, fault_rank=0)`` -> JobResult (cached)."""
    cache_dir = os.environ.get("TRIAGE_REALRUNS_CACHE")
    root = Path(cache_dir) if cache_dir else tmp_path_factory.mktemp("realruns")
    root.mkdir(parents=True, exist_ok=True)
    return _JobCache(root).get


@pytest.fixture(scope="session")
def real_run_clean(real_job):
    return real_job()


@pytest.fixture(scope="session")
def real_run_exception(real_job):
    return real_job(fault="exception", fault_rank=2, fault_step=12)


@pytest.fixture(scope="session")
def real_run_sigkill(real_job):
    return real_job(fault="sigkill", fault_rank=1, fault_step=12)


@pytest.fixture(scope="session")
def real_run_hang(real_job):
    return real_job(fault="hang", fault_rank=2, fault_step=12)


@pytest.fixture(scope="session")
def real_run_nan(real_job):
    return real_job(fault="nan", fault_rank=3, fault_step=12)


@pytest.fixture(scope="session")
def real_run_data_error(real_job):
    return real_job(fault="data_error", fault_rank=1, fault_step=7)


@pytest.fixture(scope="session")
def real_run_reduce_bug(real_job):
    return real_job(fault="reduce_bug", seed=4, probe_check=10)


@pytest.fixture(scope="session")
def real_run_ddp(real_job):
    # DDP imports torch._dynamo: slow to start on a busy machine, so a longer group timeout
    return real_job(extra_args=("--sync", "ddp", "--optim", "torch"), pg_timeout=60.0)
