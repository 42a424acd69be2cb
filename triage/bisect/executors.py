"""Where trials run: here (a thread per parallel slot) or on a cluster through submitit.

Both executors take a batch of (point, output path) and return, per trial, the raw run and its
classification, in the order given. The session stores each one as it is collected.

- `LocalExecutor(jobs)`: trials run as child process groups of this process (trial.py), up to
  `jobs` at once in threads; with jobs == 1 in the calling thread, so Ctrl-C reaches the wait.
- `SubmititExecutor(folder, cluster, params)`: each trial is one submitit job
  (`cluster="slurm"` on a cluster; `"local"` runs them as local processes, which is how the
  tests exercise this path). The job runs `remote_trial`, which renders, runs and classifies the
  trial on the node and writes a small JSON result beside the output. We read that JSON and
  never `job.result()`: submitit's result pickle would be a pickle from another machine.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from triage.bisect.outcome import Outcome
from triage.bisect.trial import RawRun, Template, TrialSpec, kill_all, run_trial
from triage.errors import UsageError


@dataclass(frozen=True)
class Done:
    raw: RawRun
    outcome: Outcome
    signatures: tuple[str, ...]
    note: str | None


class LocalExecutor:
    def __init__(self, spec: TrialSpec, jobs: int = 1):
        self.spec = spec
        self.jobs = max(1, jobs)

    def run(self, batch: Sequence[tuple[Mapping[str, str], Path]]) -> list[Done]:
        if self.jobs == 1 or len(batch) == 1:
            return [Done(*run_trial(self.spec, point, out)) for point, out in batch]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(run_trial, self.spec, point, out) for point, out in batch]
            try:
                return [Done(*f.result()) for f in futures]
            except BaseException:
                kill_all()
                raise


def _spec_json(spec: TrialSpec) -> dict[str, Any]:
    return {"template": spec.template.text, "timeout": spec.timeout, "signature": spec.signature,
            "cwd": spec.cwd, "env": dict(spec.env)}


def remote_trial(spec: dict[str, Any], point: dict[str, str], output: str, result: str) -> None:
    """The body of one submitit job: run the trial on the node and write its result as JSON."""
    ts = TrialSpec(Template.parse(spec["template"]), spec["timeout"], spec["signature"],
                   spec["cwd"], spec["env"])
    raw, outcome, sigs, note = run_trial(ts, point, Path(output))
    Path(result).write_text(json.dumps({
        "exit_code": raw.exit_code, "seconds": raw.seconds, "timed_out": raw.timed_out,
        "error": raw.error, "outcome": outcome.value, "signatures": list(sigs), "note": note}))


class SubmititExecutor:
    def __init__(self, spec: TrialSpec, folder: Path, *, cluster: str = "slurm",
                 params: Mapping[str, Any] | None = None, jobs: int = 1):
        try:
            import submitit
        except ImportError:
            raise UsageError("--executor slurm needs submitit", where="--executor",
                             hint="pip install 'triage[cluster]'") from None
        self.spec = spec
        self.jobs = max(1, jobs)
        try:
            self.executor = submitit.AutoExecutor(folder=str(folder / "submitit"), cluster=cluster)
            timeout_min = max(1, int((spec.timeout or 3600) // 60) + 5)
            self.executor.update_parameters(timeout_min=timeout_min, **dict(params or {}))
        except Exception as exc:  # submitit says why: no sbatch here, an unknown parameter, ...
            raise UsageError(f"cannot use submitit's {cluster} executor: {exc}", where="--executor",
                             hint="run where Slurm's sbatch is available, or check --slurm "
                             "KEY=VALUE names (e.g. slurm_partition)") from None

    def run(self, batch: Sequence[tuple[Mapping[str, str], Path]]) -> list[Done]:
        jobs = []
        for point, out in batch:
            out.parent.mkdir(parents=True, exist_ok=True)
            res = out.with_suffix(".result.json")
            if res.exists():
                res.unlink()
            job = self.executor.submit(remote_trial, _spec_json(self.spec), dict(point), str(out),
                                       str(res))
            jobs.append((job, res, out))
        done = []
        try:
            for job, res, out in jobs:
                job.wait()
                if res.exists():
                    d = json.loads(res.read_text())
                    raw = RawRun(d["exit_code"], float(d["seconds"]), bool(d["timed_out"]), d["error"])
                    done.append(Done(raw, Outcome(d["outcome"]), tuple(d["signatures"]), d["note"]))
                else:  # the job died before writing its result: the command never ran to the end
                    note = f"submitit job {job.job_id} ended without a result (see {job.paths.stderr})"
                    done.append(Done(RawRun(None, 0.0, False, note), Outcome.ERROR, (), note))
        except BaseException:
            for job, _res, _out in jobs:
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            raise
        return done


def make_executor(kind: str, spec: TrialSpec, folder: Path, jobs: int,
                  params: Mapping[str, Any] | None = None):
    if kind == "local":
        return LocalExecutor(spec, jobs)
    if kind in ("slurm", "submitit-local"):
        return SubmititExecutor(spec, folder, cluster="slurm" if kind == "slurm" else "local",
                                params=params, jobs=jobs)
    raise UsageError(f"unknown executor {kind!r}", where="--executor",
                     hint="use local, slurm or submitit-local")


def environ_for_jobs() -> dict[str, str]:
    """PYTHONPATH that lets a submitit job import this triage even when it is not installed."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": root + (os.pathsep + path if path else "")}
