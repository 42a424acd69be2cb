"""Launch the demo job under torchrun and keep everything it leaves behind.

`run_job(outdir, ...)` starts

    python -m torch.distributed.run --standalone --nproc-per-node N --log-dir OUT/logs \\
        --tee 3 --monitor-interval 0.5 -m triage.demo.train ARGS...

(`launcher="exec"`, the default: every worker is a fresh interpreter, torchrun's usual mode),
or with `launcher="fork"`

    python -m torch.distributed.run ... --start-method fork \\
        --run-path .../triage/demo/train.py ARGS...

where torchrun forks the workers from its own process, which has imported torch already.
Both are real torchrun jobs on gloo. Fork costs about a third of the CPU time (one torch import
per job instead of five: ~2.7 CPU-s instead of ~8 on this machine) and is what `triage demo`
uses to afford ~30 runs. What differs in the logs: the agent names the entry point
`run_script_path (start_method: fork)`, its "Root Cause (first observed failure)" is the
lowest-numbered failed rank it polls (not the earliest by time), and the workers' traceback
frames start in torch's multiprocessing wrapper. train.py prints a worker's exception itself
(elastic's fork wrapper would send it to the agent only) and restores the default signal
handlers the fork inherited from the agent, so the console shows what an exec-mode job shows.

It runs in its own process group and writes:

    OUT/console.log          the launcher's interleaved stdout+stderr, every worker line
                             prefixed "[default<R>]:" by --tee, plus the agent's own messages
    OUT/logs/<run id>/attempt_0/<R>/stdout.log|stderr.log|error.json
                             torchrun's per-rank tree (error.json only for ranks that raised
                             under @record)
    OUT/probe/rank<R>.jsonl  probe records (when probe=True)
    OUT/truth/truth-rank<R>.jsonl
                             what the job really injected (for tests; triage never reads it)
    OUT/job.json             the command, fault arguments, exit code and duration

Invariants
- `--standalone` makes torchrun start its own c10d store on a free port of localhost, so jobs
  never collide on a port and never touch the network. The rendezvous id (the first component
  under logs/) is random per launch; `JobResult.attempt_dir` finds it.
- The job runs in its own session; its whole process group is killed (SIGTERM, then SIGKILL
  after 5 s) on timeout or when the caller is interrupted, so a hung job never outlives its
  caller; `JobResult.timed_out` says so.
- OMP_NUM_THREADS=1 and PYTHONHASHSEED=0 are set for the workers unless ``env`` overrides them;
  the repository root is put on PYTHONPATH so the workers import this checkout of triage.

Limits: one node, one attempt (no --max-restarts: restarts with the default rendezvous were
racy here, see DESIGN.md). In fork mode one job in a few hundred has been seen to hang after
training finished (every rank logged "training finished", the agent kept polling); the job
timeout bounds it and `triage demo` runs such a job once more (see pipeline.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from triage.errors import InputError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("exception", "sigkill", "hang", "nan", "data_error", "reduce_bug")

# The family a correct triage gives the root cause of each injection (DESIGN.md taxonomy).
# A hang has no error of its own: the root is the other ranks' collective timeout, and the hung
# rank is the culprit. reduce_bug's family depends on how the sum went wrong (see train.py);
# "bitflip" is silent (no failure at all, only the probe sees it); "spike" desynchronises the
# ranks' collectives, which gloo reports as "Received data size doesn't match expected size"
# and aborts (SIGABRT) on a rank that may not be the one where the bug fired.
EXPECTED_FAMILY: dict[str, str | None] = {
    "exception": "python_exception",
    "sigkill": "signal",
    "hang": "collective_timeout",
    "nan": "nonfinite",
    "data_error": "python_exception",
    "reduce_bug:bitflip": None,
    "reduce_bug:nan": "nonfinite",
    "reduce_bug:huge": "python_exception",
    "reduce_bug:spike": "collective_mismatch",
}


@dataclass(frozen=True)
class Injection:
    """One fault the job really injected (read from OUT/truth, never from the logs)."""

    fault: str
    rank: int
    step: int
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """A finished (or killed) demo job: where its outputs are and what was injected."""

    outdir: Path
    console: Path
    log_dir: Path
    returncode: int
    nproc: int
    seed: int
    steps: int
    fault: str | None  # as requested: "nan", "reduce_bug,data_error", or None
    fault_rank: int | None
    fault_step: int | None
    duration: float
    timed_out: bool
    probe_dir: Path | None
    command: tuple[str, ...]
    injected: tuple[Injection, ...] = ()

    @property
    def faults(self) -> tuple[str, ...]:
        return tuple(f for f in (self.fault or "").split(",") if f)

    @property
    def attempt_dir(self) -> Path | None:
        """OUT/logs/<run id>/attempt_<N> of the last attempt, or None if torchrun made none."""
        attempts = sorted(self.log_dir.glob("*/attempt_*"), key=lambda p: p.stat().st_mtime)
        return attempts[-1] if attempts else None

    def rank_dir(self, rank: int) -> Path | None:
        attempt = self.attempt_dir
        return attempt / str(rank) if attempt is not None else None

    @property
    def first_injection(self) -> Injection | None:
        return min(self.injected, key=lambda i: (i.step, i.rank)) if self.injected else None

    @property
    def expected_family(self) -> str | None:
        """The family of the root cause triage should find (None: no failure expected)."""
        first = self.first_injection
        if first is None:
            return None
        key = first.fault
        if first.fault == "reduce_bug":
            key += ":" + str(first.detail.get("kind"))
        return EXPECTED_FAMILY.get(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "outdir": str(self.outdir),
            "console": str(self.console),
            "log_dir": str(self.log_dir),
            "returncode": self.returncode,
            "nproc": self.nproc,
            "seed": self.seed,
            "steps": self.steps,
            "fault": self.fault,
            "fault_rank": self.fault_rank,
            "fault_step": self.fault_step,
            "duration": round(self.duration, 3),
            "timed_out": self.timed_out,
            "probe_dir": str(self.probe_dir) if self.probe_dir else None,
            "command": list(self.command),
            "injected": [{"fault": i.fault, "rank": i.rank, "step": i.step, **i.detail}
                         for i in self.injected],
        }


def _normalise_fault(fault: str | Sequence[str] | None) -> str | None:
    if fault is None:
        return None
    parts = [fault] if isinstance(fault, str) else list(fault)
    kinds = [k for part in parts for k in part.split(",") if k]
    for k in kinds:
        if k not in FAULTS:
            raise UsageError(f"unknown fault {k!r}", hint="choose from " + ", ".join(FAULTS))
    return ",".join(kinds) or None


LAUNCHERS = ("exec", "fork")
TRAIN_SCRIPT = REPO_ROOT / "triage" / "demo" / "train.py"


def build_command(*, nproc: int, log_dir: Path, train_args: Sequence[str],
                  launcher: str = "exec") -> list[str]:
    """torchrun's command line. `launcher`: "exec" starts every worker as a fresh interpreter
    (`-m triage.demo.train`, torchrun's usual mode); "fork" has torchrun fork the workers from
    its own process, which has imported torch already (`--start-method fork --run-path`)."""
    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {launcher!r}", hint="choose from " + ", ".join(LAUNCHERS))
    entry = (["--start-method", "fork", "--run-path", str(TRAIN_SCRIPT)] if launcher == "fork"
             else ["-m", "triage.demo.train"])
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone",
        "--nproc-per-node", str(nproc),
        "--log-dir", str(log_dir),
        "--tee", "3",
        "--monitor-interval", "0.5",
        *entry,
        *train_args,
    ]


def run_job(
    outdir: str | os.PathLike[str],
    *,
    nproc: int = 4,
    fault: str | Sequence[str] | None = None,
    fault_step: int | None = None,
    fault_rank: int | None = None,
    seed: int = 0,
    steps: int = 40,
    timeout: float = 300.0,
    pg_timeout: float = 20.0,
    probe: bool = True,
    probe_check: int = 0,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    launcher: str = "exec",
    cancel: threading.Event | None = None,
) -> JobResult:
    """Run the demo job once under torchrun and return where everything is.

    A failing job is a normal result (see ``returncode``); only a job that cannot be started
    raises, or one that is cancelled (``cancel`` set while it runs: it is killed, and
    `JobCancelled` raised). ``outdir`` must not already hold a run (its console.log).
    """
    fault = _normalise_fault(fault)
    out = Path(outdir).resolve()  # the job runs with cwd=out: every path must be absolute
    if (out / "console.log").exists():
        raise InputError("already holds a run", where=str(out), hint="use a fresh directory")
    needs_target = {"exception", "sigkill", "hang", "nan"}
    if fault and needs_target & set(fault.split(",")) and (fault_step is None or fault_rank is None):
        raise UsageError(f"fault {fault!r} needs fault_step and fault_rank")
    if fault_rank is not None and not 0 <= fault_rank < nproc:
        raise UsageError(f"fault_rank {fault_rank} is not a rank of a {nproc}-rank job")
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    truth_dir = out / "truth"
    probe_dir = out / "probe" if probe else None

    train_args = ["--steps", str(steps), "--seed", str(seed), "--pg-timeout", str(pg_timeout)]
    if fault:
        train_args += ["--fault", fault]
    if fault_step is not None:
        train_args += ["--fault-step", str(fault_step)]
    if fault_rank is not None:
        train_args += ["--fault-rank", str(fault_rank)]
    if probe_dir is not None:
        train_args += ["--probe", str(probe_dir)]
        if probe_check:
            train_args += ["--probe-check", str(probe_check)]
    train_args += list(extra_args)
    cmd = build_command(nproc=nproc, log_dir=log_dir, train_args=train_args, launcher=launcher)

    child_env = dict(os.environ)
    child_env.setdefault("OMP_NUM_THREADS", "1")
    child_env["PYTHONHASHSEED"] = "0"
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env["TRIAGE_DEMO_TRUTH"] = str(truth_dir)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if env:
        child_env.update(env)

    console = out / "console.log"
    started = time.monotonic()
    timed_out = False
    with open(console, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, cwd=str(out), start_new_session=True)
        try:
            returncode, timed_out = _wait(proc, started + timeout, cancel)
        except BaseException:  # Ctrl-C, a dying caller, a cancel: never leave the job running
            _kill_group(proc)
            raise
    duration = time.monotonic() - started

    result = JobResult(
        outdir=out, console=console, log_dir=log_dir, returncode=returncode, nproc=nproc,
        seed=seed, steps=steps, fault=fault, fault_rank=fault_rank, fault_step=fault_step,
        duration=duration, timed_out=timed_out, probe_dir=probe_dir, command=tuple(cmd),
        injected=read_truth(truth_dir),
    )
    (out / "job.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result


class JobCancelled(Exception):
    """run_job's `cancel` event was set while the job ran (the job was killed)."""


def _wait(proc: subprocess.Popen, deadline: float,
          cancel: threading.Event | None) -> tuple[int, bool]:
    """(return code, timed out): wait for the job until `deadline`; kill it on a timeout."""
    while True:
        left = deadline - time.monotonic()
        try:
            return proc.wait(timeout=max(0.0, min(left, 0.2) if cancel is not None else left)), False
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                raise JobCancelled("cancelled") from None
            if time.monotonic() >= deadline:
                return _kill_group(proc), True


def _kill_group(proc: subprocess.Popen) -> int:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def read_truth(truth_dir: Path) -> tuple[Injection, ...]:
    found: list[Injection] = []
    for path in sorted(truth_dir.glob("truth-rank*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            detail = {k: v for k, v in rec.items() if k not in ("fault", "rank", "step")}
            found.append(Injection(rec["fault"], int(rec["rank"]), int(rec["step"]), detail))
    return tuple(sorted(found, key=lambda i: (i.step, i.rank, i.fault)))


def load_job(outdir: str | os.PathLike[str]) -> JobResult:
    """Rebuild a JobResult from OUT/job.json (for cached runs)."""
    out = Path(outdir)
    try:
        d = json.loads((out / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"no readable job.json: {exc}", where=str(out)) from None
    return JobResult(
        outdir=out, console=out / "console.log", log_dir=out / "logs", returncode=d["returncode"],
        nproc=d["nproc"], seed=d["seed"], steps=d["steps"], fault=d["fault"],
        fault_rank=d["fault_rank"], fault_step=d["fault_step"], duration=d["duration"],
        timed_out=d["timed_out"], probe_dir=out / "probe" if d["probe_dir"] else None,
        command=tuple(d["command"]), injected=read_truth(out / "truth"),
    )
