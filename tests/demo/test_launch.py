"""run_job: bad arguments fail before anything starts; a timeout or a cancel kills the whole
job; a fork-launched job leaves the logs an exec-launched one does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from triage.demo.launch import TRAIN_SCRIPT, JobCancelled, build_command, run_job
from triage.errors import InputError, UsageError


@pytest.mark.parametrize("kwargs, match", [
    ({"fault": "meteor"}, "unknown fault"),
    ({"fault": "nan"}, "needs fault_step and fault_rank"),
    ({"fault": "nan", "fault_step": 1, "fault_rank": 4}, "not a rank of a 4-rank job"),
])
def test_bad_arguments_start_nothing(tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=match):
        run_job(tmp_path / "job", **kwargs)
    assert not (tmp_path / "job").exists()


def test_an_outdir_with_a_run_is_refused(tmp_path):
    (tmp_path / "console.log").write_text("old run")
    with pytest.raises(InputError, match="already holds a run"):
        run_job(tmp_path)


def test_the_command_is_torchrun_with_a_log_tree(tmp_path):
    cmd = build_command(nproc=4, log_dir=tmp_path / "logs", train_args=["--steps", "3"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert cmd[cmd.index("--tee") + 1] == "3" and cmd[cmd.index("--log-dir") + 1] == str(tmp_path / "logs")
    assert cmd[-4:] == ["-m", "triage.demo.train", "--steps", "3"]


def test_the_fork_launcher_runs_the_script_in_forked_workers(tmp_path):
    cmd = build_command(nproc=4, log_dir=tmp_path / "logs", train_args=["--steps", "3"],
                        launcher="fork")
    assert cmd[cmd.index("--start-method") + 1] == "fork"
    assert cmd[cmd.index("--run-path") + 1] == str(TRAIN_SCRIPT) and TRAIN_SCRIPT.is_file()
    assert "-m" not in cmd[3:] and cmd[-2:] == ["--steps", "3"]
    with pytest.raises(UsageError, match="unknown launcher"):
        build_command(nproc=4, log_dir=tmp_path, train_args=[], launcher="spawn")


def _alive_with(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_timeout_kills_the_whole_job(tmp_path):
    out = tmp_path / "hung"
    result = run_job(out, fault="hang", fault_rank=1, fault_step=2, steps=10, pg_timeout=300,
                     timeout=20)
    assert result.timed_out
    assert result.duration < 60
    assert _alive_with(str(out)) == []  # no worker or agent of this job survived
    assert [i.fault for i in result.injected] == ["hang"]


@pytest.mark.slow
def test_a_relative_outdir_keeps_every_output_inside_it(tmp_path, monkeypatch):
    """The job runs with cwd=outdir: a relative outdir must not nest a second copy inside it."""
    monkeypatch.chdir(tmp_path)
    result = run_job("rel/run", nproc=2, steps=2, timeout=240)
    assert result.returncode == 0
    out = tmp_path / "rel" / "run"
    assert (out / "console.log").exists() and (out / "probe").is_dir()
    assert not (out / "rel").exists()
    assert Path(result.console).is_absolute()


@pytest.mark.slow
def test_cancel_kills_the_whole_job(tmp_path):
    out = tmp_path / "cancelled"
    cancel = threading.Event()
    threading.Timer(8.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        run_job(out, fault="hang", fault_rank=1, fault_step=2, steps=10, pg_timeout=300,
                timeout=120, cancel=cancel, launcher="fork")
    assert time.monotonic() - started < 30
    assert _alive_with(str(out)) == []


@pytest.mark.slow
def test_a_fork_launched_job_leaves_what_an_exec_launched_one_does(tmp_path, real_run_data_error):
    """Same job, same fault: the console shows the failing rank's traceback with torch's
    "[rank<R>]:" prefix, and the scanner finds the same root cause (family, rank, step)."""
    from triage.scan import scan

    exec_run = real_run_data_error
    fork_run = run_job(tmp_path / "fork", fault="data_error", fault_rank=exec_run.fault_rank,
                       fault_step=exec_run.fault_step, steps=exec_run.steps,
                       seed=exec_run.seed, pg_timeout=15, timeout=120, launcher="fork")
    assert fork_run.returncode != 0 and not fork_run.timed_out
    assert fork_run.injected == exec_run.injected
    text = fork_run.console.read_text()
    r = fork_run.fault_rank
    assert f"[default{r}]:[rank{r}]: Traceback (most recent call last):" in text
    assert f"[default{r}]:[rank{r}]: ValueError: corrupt record" in text
    assert "start_method: fork" in text  # the agent says how it started the workers
    roots = []
    for run in (exec_run, fork_run):
        root = scan([run.console]).root_cause
        roots.append((root.family, root.rank, root.step))
    assert roots[0] == roots[1] and roots[0][:2] == ("python_exception", r)
