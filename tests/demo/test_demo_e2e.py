"""End to end: a reduced `triage demo` on real runs, checked against what the jobs injected.

One session-scoped demo run (SMALL_PLAN: fewer seeds than the default) feeds every test here;
the truth comes from each job's own injection records, never from constants in this file.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from triage.cli import app
from triage.cli.demo import render
from triage.demo.pipeline import SMALL_PLAN, SMALL_STEPS, parse_plan, run_demo
from triage.errors import UsageError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "triage-demo"
    return run_demo(out, plan=SMALL_PLAN, steps=SMALL_STEPS)


def test_every_run_ran_and_was_ingested(small_demo):
    assert [r.spec.name for r in small_demo.runs] == [s.name for s in SMALL_PLAN]
    assert small_demo.skipped == []
    assert small_demo.case is not None and small_demo.case.exists()
    for run in small_demo.runs:
        assert run.job.console.exists() and not run.job.timed_out
        failed = run.job.returncode != 0
        # a run fails exactly when something other than a silent wrong sum was injected
        loud = [i for i in run.job.injected if i.detail.get("kind") != "bitflip"]
        assert failed == bool(loud), run.spec.name
        assert (run.root is not None) == failed, run.spec.name


def test_verdict_against_the_truth(small_demo):
    """Two bugs were injected (the reduction bug, the corrupt record): triage must not claim one
    bug with confidence, and its checks must see the truth's two groups of signatures."""
    hyp = small_demo.hypotheses
    assert hyp["verdict"] in ("many_bugs", "undecided")
    assert hyp["p_one_bug"] < 0.8
    verdict = small_demo.checks["verdict"]
    reduce_runs = [r for r in small_demo.runs if r.root and r.job.first_injection.fault == "reduce_bug"]
    data_runs = [r for r in small_demo.runs if r.root and r.job.first_injection.fault == "data_error"]
    assert reduce_runs and data_runs
    assert set(verdict["reduction_signatures"]) == {r.root["signature"] for r in reduce_runs}
    assert set(verdict["data_error_signatures"]) == {r.root["signature"] for r in data_runs}
    # the marginals are sums over the scored hypotheses, so they agree with P(one bug):
    # one bug puts the reduction signatures together and the data error with them
    assert hyp["p_one_bug"] - 1e-6 <= verdict["p_reduction_one_cause"] <= 1.0
    assert 0.0 <= verdict["p_data_error_separate"] <= 1 - hyp["p_one_bug"] + 1e-6


def test_first_bad_step_is_the_step_of_the_wrong_sum(small_demo):
    diverged = small_demo.diverged
    assert diverged is not None
    run = next(r for r in small_demo.runs if r.spec.name == diverged["run"])
    wrong = [i for i in run.job.injected if i.fault == "reduce_bug"][0]
    assert diverged["first_bad_step"] == wrong.step
    assert diverged["bad_ranks"] == [wrong.rank]
    if not diverged["silent"]:  # it went wrong before it crashed
        assert diverged["first_bad_step"] < diverged["crash_step"]
    assert small_demo.checks["first_bad_step"] and all(small_demo.checks["first_bad_step"].values())


def test_root_cause_rank_and_family_match_the_injection(small_demo):
    for run in small_demo.runs:
        loud = [i for i in run.job.injected if i.detail.get("kind") != "bitflip"]
        if run.root is None or not loud:
            continue
        crash = loud[0]
        if "parameter checksums differ" in run.root["message"]:
            # The probe's cross-rank check saw the silent corruption before the crash: the root
            # is then the first injection (often a bitflip), on the rank it hit.
            first = run.job.injected[0]
            assert run.root["rank"] == first.rank, run.spec.name
            assert first.step <= crash.step
            continue
        if crash.fault == "data_error" or crash.detail.get("kind") in ("nan", "huge"):
            assert run.root["rank"] == crash.rank, run.spec.name
            key = crash.fault + (":" + crash.detail["kind"] if "kind" in crash.detail else "")
            from triage.demo.launch import EXPECTED_FAMILY
            assert run.root["family"] == EXPECTED_FAMILY[key], run.spec.name
    assert all(small_demo.checks["root_ranks"].values())


def test_outputs_exist_and_the_summary_is_json(small_demo):
    summary = json.loads((small_demo.outdir / "demo.json").read_text())
    assert summary["schema"] == "triage.demo/1"
    assert summary == json.loads(json.dumps(small_demo.to_json()))
    for path in small_demo.reports.values():
        assert (small_demo.outdir / path).exists() or __import__("pathlib").Path(path).exists()
    assert set(small_demo.reports) == {"html", "md"}


def test_rendered_summary_says_where_everything_is(small_demo):
    buf = io.StringIO()
    render(small_demo, Console(file=buf, width=160, color_system=None))
    text = buf.getvalue()
    for needle in ("1. Runs", "2. Signatures", "3. One bug or many?", "4. First bad step",
                   "Where everything is:", str(small_demo.case), small_demo.reports["html"]):
        assert needle in text


def test_bad_plan_is_a_usage_error_without_running_anything(tmp_path):
    with pytest.raises(UsageError):
        parse_plan("custom:1,x")
    res = CliRunner().invoke(app, ["demo", "--plan", "buggy:1", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2
    assert "bad plan item" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "d").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_demo(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    res = CliRunner().invoke(app, ["demo", "--plan", "custom:1", "--out", str(tmp_path)])
    assert res.exit_code == 3
    assert (tmp_path / "precious.txt").read_text() == "keep me"
