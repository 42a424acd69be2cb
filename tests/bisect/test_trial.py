"""Templates and the trial runner with real subprocesses: placeholders, injection, outcomes,
process-group timeouts, signature classification through the real scanner."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from triage.bisect.outcome import Outcome
from triage.bisect.session import parse_ranges
from triage.bisect.trial import Template, TrialSpec, run_command, run_trial
from triage.errors import UsageError

SCRIPTS = Path(__file__).parent / "scripts"
PY = sys.executable


def test_template_renders_whole_arguments():
    t = Template.parse(f"{PY} run.py --step={{step}} '{{seed}} x' {{ranks}}")
    assert t.render({"step": "7", "seed": "3", "ranks": "0,1"}) == [PY, "run.py", "--step=7", "3 x", "0,1"]
    assert t.placeholders() == {"step", "seed", "ranks"}


def test_template_leaves_other_braces_alone():
    t = Template.parse("""prog '{"a": 1}' {step} {0.__class__} {value!r}""")
    assert t.render({"step": "1"}) == ["prog", '{"a": 1}', "1", "{0.__class__}", "{value!r}"]


@pytest.mark.parametrize("text", ["prog 'unterminated", "", "   "])
def test_bad_templates_are_usage_errors(text):
    with pytest.raises(UsageError):
        Template.parse(text)


def test_template_must_use_the_axis_placeholder():
    with pytest.raises(UsageError, match=r"never uses \{step\}"):
        Template.parse("./repro.sh 5").require("step")


@settings(max_examples=200, deadline=None)
@given(value=st.text(min_size=0, max_size=40), prefix=st.text(alphabet="abc-=", max_size=5))
def test_a_value_is_never_split_or_reinterpreted(value, prefix):
    t = Template.parse(f"prog {prefix}{{step}} tail")
    argv = t.render({"step": value})
    assert argv == ["prog", prefix + value, "tail"]


@pytest.mark.parametrize("evil", ["1; rm -rf /", "$(touch {marker})", "`touch {marker}`",
                                  "a && touch {marker}", "x' 'y", "--help", "\n{marker}\n|| true"])
def test_injection_attempts_stay_one_literal_argument(tmp_path, evil):
    marker = tmp_path / "pwned"
    evil = evil.format(marker=marker)
    argv_out = tmp_path / "argv.json"
    spec = TrialSpec(Template.parse(f"{PY} {SCRIPTS / 'argv_dump.py'} --seed {{seed}} {{seed}}"),
                     timeout=30, env={"ARGV_OUT": str(argv_out)})
    raw, outcome, _, _ = run_trial(spec, {"seed": evil}, tmp_path / "out.log")
    assert outcome is Outcome.GOOD, (tmp_path / "out.log").read_text()
    assert json.loads(argv_out.read_text()) == ["--seed", evil, evil]
    assert not marker.exists()


def test_exit_codes_map_to_outcomes(tmp_path):
    def outcome(code: int):
        spec = TrialSpec(Template.parse(f"{PY} -c 'import sys; sys.exit({code})' {{step}}"), timeout=30)
        return run_trial(spec, {"step": "1"}, tmp_path / f"o{code}.log")[1]

    assert outcome(0) is Outcome.GOOD
    assert outcome(125) is Outcome.SKIP
    assert outcome(1) is Outcome.BAD
    assert outcome(139) is Outcome.BAD


def test_point_is_exported_to_the_environment(tmp_path):
    out = tmp_path / "o.log"
    spec = TrialSpec(Template.parse(f"{PY} -c 'import os; print(os.environ[\"TRIAGE_BISECT_STEP\"])' {{step}}"))
    run_trial(spec, {"step": "42"}, out)
    assert out.read_text().strip() == "42"


def test_a_missing_program_is_an_error_outcome(tmp_path):
    spec = TrialSpec(Template.parse(str(tmp_path / "no-such-program") + " {step}"))
    raw, outcome, _, note = run_trial(spec, {"step": "1"}, tmp_path / "o.log")
    assert outcome is Outcome.ERROR and raw.error and "cannot run" in note


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_whole_process_group(tmp_path):
    pids_out = tmp_path / "pids"
    t0 = time.monotonic()
    raw = run_command([PY, str(SCRIPTS / "spawn_sleep.py")], tmp_path / "o.log", timeout=3,
                      env={"PIDS_OUT": str(pids_out)})
    assert raw.timed_out and raw.exit_code is None
    assert time.monotonic() - t0 < 30
    parent, child = map(int, pids_out.read_text().split())
    deadline = time.monotonic() + 10
    while (_alive(parent) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(parent) and not _alive(child)


def test_signature_decides_bad_versus_unrelated(tmp_path):
    """The scanner classifies the captured output: the target family is bad, another is not."""
    def run(kind: str, sig: str):
        spec = TrialSpec(Template.parse(f"{PY} {SCRIPTS / 'emit.py'} {{value}}"), timeout=60,
                         signature=sig)
        return run_trial(spec, {"value": kind}, tmp_path / f"{kind}-{sig[:8]}.log")

    _, outcome, sigs, _ = run("oom", "cuda_oom")
    assert outcome is Outcome.BAD and sigs and sigs[0].startswith("sig1:")
    _, outcome, _, note = run("value", "cuda_oom")
    assert outcome is Outcome.UNRELATED and "signature not found" in note
    _, outcome, _, _ = run("oom", sigs[0])  # the exact id the scan gave
    assert outcome is Outcome.BAD
    _, outcome, _, _ = run("ok", "cuda_oom")
    assert outcome is Outcome.GOOD


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30)), min_size=1, max_size=6))
def test_parse_ranges_property(parts):
    text = ",".join(f"{a}-{a + w}" if w else str(a) for a, w in parts)
    want = sorted({x for a, w in parts for x in range(a, a + w + 1)})
    assert parse_ranges(text, "--ranks") == want


@pytest.mark.parametrize("bad", ["", "a-b", "5-3", "1,,2", "0-99999999"])
def test_parse_ranges_rejects(bad):
    with pytest.raises(UsageError):
        parse_ranges(bad, "--seeds")


def test_bisect_library_never_imports_the_terminal_stack():
    import subprocess as sp
    code = ("import sys, triage.bisect, triage.bisect.executors, triage.case.bisect; "
            "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))")
    out = sp.run([PY, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
