"""`triage bisect` end to end: real trial processes, a real SQLite case, the public JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli import app

SCRIPTS = Path(__file__).parent / "scripts"
GOLDEN = Path(__file__).parent / "golden"
PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = ["schema", "axis", "culprit", "interval", "confidence", "trials", "flake_rate", "outcomes"]


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(app, list(args), env=env)
    return result


def calls(state: Path) -> int:
    return len((state / "calls").read_text().splitlines())


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TRIAGE_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"golden {name} differs (TRIAGE_REGEN_GOLDEN=1 to update)"


def test_step_deterministic_json_contract(tmp_path):
    r = cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 613", "--good", "0",
            "--bad", "1000", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert list(out) == CONTRACT_KEYS
    assert out["schema"] == "triage.bisect/1" and out["axis"] == "step"
    assert out["culprit"] == 613 and out["interval"] == [613, 613] and out["confidence"] >= 0.99
    assert set(out["outcomes"]) == {"good", "bad", "skip", "unrelated"}
    assert out["trials"] == sum(out["outcomes"].values()) <= 25


def test_step_human_output_golden(tmp_path):
    r = cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 613", "--good", "0",
            "--bad", "1000")
    assert r.exit_code == 0
    check_golden("step_deterministic.txt", r.stdout)


def test_step_flaky_with_skips_and_false_alarms(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = {"SKIP_STEPS": "610,614", "FALSE_ALARM": "0.02"}
    # One trial at a time: the script draws each outcome from its call count, so trials run in
    # parallel take the counts in whatever order they start, and the search's path (whether it
    # ever tests a skipped step) changes from run to run. Parallel trials: the tests below.
    r = cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 613 0.5 {state}",
            "--good", "0", "--bad", "1000", "--jobs", "1", "--json", env=env)
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["culprit"] == 613
    assert 0.2 < out["flake_rate"] < 0.8
    assert out["trials"] == calls(state)  # every trial ran once and was stored
    assert out["outcomes"]["skip"] >= 1


def test_an_untestable_neighbour_leaves_an_honest_interval(tmp_path):
    # git bisect's "the first bad commit could be any of": 612 cannot be tested
    r = cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 613", "--good", "0",
            "--bad", "1000", "--max-trials", "30", "--json", env={"SKIP_STEPS": "612"})
    out = json.loads(r.stdout)
    assert r.exit_code == 1
    assert out["culprit"] is None and out["interval"] == [612, 613]


def test_values_axis(tmp_path):
    revs = ["a1", "b2", "c3", "d4", "e5", "f6", "g7"]
    script = f"import sys; sys.exit(1 if sys.argv[1] >= 'e5' else 0)"
    r = cli("bisect", "step", "--cmd", f"{PY} -c \"{script}\" {{value}}", "--values", ",".join(revs), "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["axis"] == "value" and out["culprit"] == "e5"


def test_signature_filters_unrelated_failures(tmp_path):
    # before step 50 the job dies of a ValueError (another bug); from 50 on of a CUDA OOM
    script = tmp_path / "two_bugs.py"
    script.write_text(
        "import subprocess, sys\n"
        f"kind = 'oom' if int(sys.argv[1]) >= 50 else ('value' if int(sys.argv[1]) % 3 == 0 else 'ok')\n"
        f"sys.exit(subprocess.call([sys.executable, {str(SCRIPTS / 'emit.py')!r}, kind]))\n")
    r = cli("bisect", "step", "--cmd", f"{PY} {script} {{step}}", "--good", "0", "--bad", "64",
            "--signature", "cuda_oom", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["culprit"] == 50


def test_resume_continues_without_rerunning(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    cmd = f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 3001 0.6 {state}"
    r = cli("bisect", "step", "--cmd", cmd, "--good", "0", "--bad", "5000", "--max-trials", "6", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["culprit"] is None
    assert calls(state) == 6
    r = cli("bisect", "resume", "1", "--max-trials", "500", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["culprit"] == 3001 and out["trials"] == calls(state)
    r2 = cli("bisect", "replay", "1", "--json")
    assert json.loads(r2.stdout) == out
    log = json.loads(cli("bisect", "log", "1", "--json").stdout)
    assert [t["seq"] for t in log["trials"]] == list(range(1, out["trials"] + 1))
    assert all((Path(log["folder"]) / t["output"]).exists() for t in log["trials"])


def test_ctrl_c_then_resume(tmp_path):
    """A real SIGINT to a running `triage bisect`: the trial is killed, the session resumes."""
    state = tmp_path / "state"
    state.mkdir()
    slow = tmp_path / "slow.py"
    slow.write_text("import subprocess, sys, time\ntime.sleep(0.3)\n"
                    f"sys.exit(subprocess.call([sys.executable, {str(SCRIPTS / 'fail_at.py')!r}] + sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRIAGE_CASE=str(tmp_path / "case.db"))
    cmd = f"{PY} {slow} {{step}} 777 1.0 {state}"
    proc = subprocess.Popen([PY, "-m", "triage", "bisect", "step", "--cmd", cmd, "--good", "0",
                             "--bad", "1000", "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((state / "calls").exists() and calls(state) >= 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "triage bisect resume 1" in err
    r = subprocess.run([PY, "-m", "triage", "bisect", "resume", "--json"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["culprit"] == 777
    # trials stored before the interrupt were not run again; at most the interrupted one was lost
    assert calls(state) - res["trials"] <= 1


def test_seed_survey(tmp_path):
    script = tmp_path / "seedy.py"
    script.write_text("import sys\nsys.exit(1 if int(sys.argv[1]) in (2, 5) else 0)\n")
    r = cli("bisect", "seed", "--cmd", f"{PY} {script} {{seed}}", "--seeds", "0-7", "--repeats", "2",
            "--jobs", "2", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["schema"] == "triage.bisect.seed/1"
    assert out["reproducing"] == ["2", "5"] and out["trials"] == 16
    assert out["depends_on_seed"] > 0.5


def test_ranks_delta_debugging(tmp_path):
    r = cli("bisect", "ranks", "--cmd", f"{PY} {SCRIPTS / 'ranks_fail.py'} {{ranks}}", "--ranks", "0-15",
            "--json", env={"BAD_SET": "3,12"})
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["status"] == "found" and out["minimal"] == [3, 12]


def test_hosts_flaky(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the job's hosts\n" + "\n".join(f"node{i:02d}" for i in range(8)) + "\n")
    state = tmp_path / "state"
    state.mkdir()
    r = cli("bisect", "ranks", "--cmd", f"{PY} {SCRIPTS / 'ranks_fail.py'} {{hosts}} 0.5 {state}",
            "--hosts", str(hosts), "--json", env={"BAD_SET": "node05"})
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["axis"] == "hosts" and out["minimal"] == ["node05"] and out["repeats"] > 1
    assert out["trials"] == calls(state)


def test_ranks_that_never_fail_are_flaky(tmp_path):
    r = cli("bisect", "ranks", "--cmd", f"{PY} -c 'pass' {{ranks}}", "--ranks", "0-3", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["status"] == "did_not_reproduce"


def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")  # the [cluster] extra
    r = cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 3", "--good", "0",
            "--bad", "4", "--executor", "submitit-local", "--jobs", "2", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert out["culprit"] == 3


@pytest.mark.parametrize("args,code,text", [
    (["step", "--cmd", "prog 'oops", "--good", "0", "--bad", "9"], 2, "cannot split"),
    (["step", "--cmd", "prog 5", "--good", "0", "--bad", "9"], 2, "never uses {step}"),
    (["step", "--cmd", "prog {step}", "--good", "9", "--bad", "3"], 2, "must be after"),
    (["step", "--cmd", "/no/such/prog {step}", "--good", "0", "--bad", "9"], 6, "could not run"),
    (["step", "--cmd", "prog {step}", "--good", "0", "--bad", "9", "--signature", "bogus"], 2, "neither"),
    (["seed", "--cmd", "prog {seed}", "--seeds", "9-1"], 2, "backwards"),
    (["ranks", "--cmd", "prog {ranks}"], 2, "exactly one of"),
    (["log", "42"], 5, "no bisect session 42"),
])
def test_bad_input_is_one_line_and_an_exit_code(args, code, text):
    if args[0] == "log":
        cli("bisect", "step", "--cmd", f"{PY} {SCRIPTS / 'fail_at.py'} {{step}} 2", "--good", "0", "--bad", "3")
    r = cli("bisect", *args)
    assert r.exit_code == code, r.output
    assert text in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_every_bisect_command_has_help_and_is_documented():
    doc = (ROOT / "docs" / "bisect.md").read_text()
    for name in ["step", "seed", "ranks", "log", "resume", "replay"]:
        r = cli("bisect", name, "--help")
        assert r.exit_code == 0 and "--json" in r.stdout
        assert f"triage bisect {name}" in doc
