"""run_job: bad arguments fail before anything starts; a timeout kills the whole job."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.demo.launch import build_command, run_job
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
