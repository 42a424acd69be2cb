"""End to end: a reduced `triage demo` on real runs, checked against what the jobs injected.

One session-scoped demo run (SMALL_PLAN: seeds 1-10 in both arms, 20 real 4-rank jobs, about a
minute on 2 cores) feeds every test here; the truth comes from each job's own injection
records, never from constants in this file.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from triage.cli import app
from triage.cli.demo import render
from triage.classify.roles import DIVERGENCE_RULE
from triage.demo.pipeline import SMALL_PLAN, SMALL_STEPS, _probe_divergence, parse_plan, run_demo
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
        # a run fails exactly when something other than a wrong sum was injected, or a wrong
        # sum that is not silent (bitflips are; so is a x64 spike before the spike check)
        if not run.job.injected:
            assert not failed, run.spec.name
        if any(i.fault == "data_error" for i in run.job.injected):
            assert failed, run.spec.name
        # a root cause exactly for the failed runs, and for silent ones the probe flagged
        flagged = run.root is not None and "parameter checksums differ" in run.root["message"]
        assert (run.root is not None) == (failed or flagged), run.spec.name


def test_the_mitigation_arm_shows_the_data_error_and_no_reduction_symptom(small_demo):
    stock = [r for r in small_demo.runs if r.spec.allreduce == "stock"]
    assert all(i.fault == "data_error" for r in stock for i in r.job.injected)
    assert any(r.job.injected for r in stock) and any(not r.job.injected for r in stock)
    custom = [r for r in small_demo.runs if r.spec.allreduce == "custom"]
    assert any(r.root_fault() == "reduce_bug" for r in custom)


def test_verdict_is_the_injected_grouping(small_demo):
    """Two bugs were injected (the reduction bug, the corrupt record). The best explanation must
    be exactly that: every signature the reduction bug caused in one cause, the data error's
    in another; and the ledger must call it many bugs."""
    hyp = small_demo.hypotheses
    verdict = small_demo.checks["verdict"]
    # the truth's two groups, rebuilt here from each run's injections
    by_fault: dict[str, set[str]] = {}
    for r in small_demo.runs:
        if r.root is not None:
            by_fault.setdefault(r.root_fault(), set()).add(r.root["signature"])
    assert set(verdict["reduction_signatures"]) == by_fault["reduce_bug"]
    assert set(verdict["data_error_signatures"]) == by_fault["data_error"]
    assert len(by_fault["reduce_bug"]) >= 2  # several symptoms: "one bug, many buckets"
    assert not verdict["mixed_signatures"]
    best = sorted(sorted(c["signatures"]) for c in hyp["best"]["causes"])
    assert best == sorted([sorted(by_fault["reduce_bug"]), sorted(by_fault["data_error"])])
    assert verdict["best_is_truth"] and verdict["ok"]
    assert hyp["verdict"] == "many_bugs"
    assert hyp["best"]["posterior"] > 0.3
    # the marginals are sums over the scored hypotheses, so they agree with the best one
    assert verdict["p_reduction_one_cause"] >= hyp["best"]["posterior"] - 1e-6
    assert verdict["p_data_error_separate"] >= hyp["best"]["posterior"] - 1e-6
    words = next(c["words"] for c in hyp["best"]["causes"]
                 if set(c["signatures"]) == by_fault["reduce_bug"])
    assert "vanish with mitigation=stock-allreduce" in words


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
    checks = small_demo.checks["root_ranks"]
    for run in small_demo.runs:
        loud = [i for i in run.job.injected if i.detail.get("kind") != "bitflip"]
        if run.root is None or not loud:
            continue
        crash = loud[0]
        if _probe_divergence(run.root):
            # The probe saw the silent corruption before the crash (its records, or its
            # cross-rank check's log line): the root is then the first wrong sum (often a
            # bitflip), on the rank it hit, and the loud failure the logs show is the crash.
            first = next(i for i in run.job.injected if i.fault == "reduce_bug")
            assert run.root["rank"] == first.rank, run.spec.name
            assert first.step <= crash.step
            if crash.detail.get("kind") == "nan" and run.root["playbook"] == DIVERGENCE_RULE:
                assert run.crash is not None and run.crash["family"] == "nonfinite", run.spec.name
            continue
        if crash.fault == "data_error" or crash.detail.get("kind") in ("nan", "huge"):
            assert run.root["rank"] == crash.rank, run.spec.name
            key = crash.fault + (":" + crash.detail["kind"] if "kind" in crash.detail else "")
            from triage.demo.launch import EXPECTED_FAMILY
            assert run.root["family"] == EXPECTED_FAMILY[key], run.spec.name
    # seed 1 of the custom arm: a wrong sum on rank 1 at step 0 that only the probe's records
    # show, a NaN on rank 2 at step 9 in the logs. The records make the root cause.
    from_records = [r for r in small_demo.runs if r.root and r.root["playbook"] == DIVERGENCE_RULE
                    and r.root["message"].startswith('{"schema":"triage.probe/1"')]
    assert from_records
    for run in from_records:
        assert run.crash is not None and run.crash["step"] > run.root["step"], run.spec.name
    assert checks
    for name, hit in checks.items():
        # a miss only where a spike desynchronised the ranks: gloo's error then surfaces on
        # whichever rank noticed first (or, before the spike check, the ranks just diverge)
        run = next(r for r in small_demo.runs if r.spec.name == name)
        assert hit or any(i.detail.get("kind") == "spike" for i in run.job.injected), name


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


def test_a_job_that_outlives_its_timeout_is_kept_aside_and_run_again(tmp_path):
    out = tmp_path / "d"
    res = run_demo(out, plan=parse_plan("stock:1"), job_timeout=0.5)
    run = res.runs[0]
    aside = out / "runs" / "stock-s1.timed-out-1"
    assert run.timed_out_attempts == [str(aside)] and (aside / "console.log").exists()
    assert run.job.timed_out  # the second try timed out too: kept, and no third try
    assert not (out / "runs" / "stock-s1.timed-out-2").exists()
    summary = json.loads((out / "demo.json").read_text())
    assert summary["runs"][0]["timed_out_attempts"] == [str(aside)]
