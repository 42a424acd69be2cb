"""`triage demo` rendering (golden, from a fixed result) and its --json contract (one real run)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from triage.cli.demo import render
from triage.demo.launch import Injection, JobResult
from triage.demo.pipeline import CUSTOM, STOCK, DemoResult, DemoRun, RunSpec, compare_with_truth

GOLDEN = Path(__file__).parent / "golden"


def _job(name: str, rc: int, injected=()) -> JobResult:
    out = Path("/demo/runs") / name
    return JobResult(outdir=out, console=out / "console.log", log_dir=out / "logs", returncode=rc,
                     nproc=4, seed=0, steps=40, fault=None, fault_rank=None, fault_step=None,
                     duration=10.0, timed_out=False, probe_dir=out / "probe", command=(),
                     injected=tuple(injected))


def fixed_result() -> DemoResult:
    nan = DemoRun(RunSpec(8, CUSTOM), _job("custom-s8", 1, [Injection("reduce_bug", 0, 35, {"kind": "nan"})]),
                  root={"family": "nonfinite", "rank": 0, "step": 36, "signature": "sig1:a"},
                  first_bad_step=35)
    silent = DemoRun(RunSpec(6, CUSTOM), _job("custom-s6", 0, [Injection("reduce_bug", 3, 35, {"kind": "bitflip"})]),
                     first_bad_step=35)
    data = DemoRun(RunSpec(7, STOCK), _job("stock-s7", 1, [Injection("data_error", 3, 24, {"index": 4242})]),
                   root={"family": "python_exception", "rank": 3, "step": 23, "signature": "sig1:d"})
    clean = DemoRun(RunSpec(2, STOCK), _job("stock-s2", 0))
    result = DemoResult(outdir=Path("/demo"), runs=[nan, silent, data, clean], case=Path("/demo/case.db"),
                        seconds=61.0)
    result.signatures = [
        {"id": "sig1:d", "family": "python_exception", "template": "ValueError: corrupt record <NUM>",
         "runs": 1, "root_runs": 1, "ranks": [3]},
        {"id": "sig1:a", "family": "nonfinite", "template": "FloatingPointError: loss is nan at step <NUM>",
         "runs": 1, "root_runs": 1, "ranks": [0]},
        {"id": "sig1:z", "family": "comm_error", "template": "Connection closed by peer",
         "runs": 2, "root_runs": 0, "ranks": [1, 2]},
    ]
    result.hypotheses = {
        "verdict": "many_bugs", "p_one_bug": 0.1, "moved": ["mitigation: +0.50 (log10) for the best explanation"],
        "best": {"name": "{S1} {S2}", "posterior": 0.7, "causes": [
            {"signatures": ["sig1:a"], "runs": ["custom-s8"], "labels": ["S2"], "words": "S2 occurs only with mitigation=none"},
            {"signatures": ["sig1:d"], "runs": ["stock-s7"], "labels": ["S1"], "words": "S1 occurs at one steady rate"}]},
        "scored": [{"posterior": 0.7, "name": "{S1} {S2}", "causes": [["sig1:a"], ["sig1:d"]]},
                   {"posterior": 0.1, "name": "one bug", "causes": [["sig1:a", "sig1:d"]]},
                   {"posterior": 0.2, "name": "other", "causes": [["sig1:a"], ["sig1:d"]]}],
        "titles": {},
    }
    result.diverged = {"run": "custom-s6", "probe": "/demo/runs/custom-s6/probe", "silent": True,
                       "crash_step": None, "crash_rank": None, "first_bad_step": 35,
                       "summary": "first bad step 35: parameter checksums disagree: rank(s) 3 differ from rank(s) 0,1,2",
                       "probe_reported": {"step": 39, "odd_ranks": [3], "majority": [0, 1, 2]}}
    result.reports = {"html": "/demo/report.html", "md": "/demo/report.md"}
    result.checks = compare_with_truth(result)
    return result


def test_checks_compare_triage_with_the_truth():
    checks = fixed_result().checks
    assert checks["root_ranks"] == {"custom-s8": True, "stock-s7": True}
    assert checks["first_bad_step"] == {"custom-s8": True, "custom-s6": True}
    v = checks["verdict"]
    assert v["reduction_signatures"] == ["sig1:a"] and v["data_error_signatures"] == ["sig1:d"]
    assert v["p_reduction_one_cause"] == pytest.approx(1.0)
    assert v["p_data_error_separate"] == pytest.approx(0.9)
    assert v["best_data_error_separate"] and v["ok"]


def test_golden_render():
    buf = io.StringIO()
    render(fixed_result(), Console(file=buf, width=120, color_system=None))
    text = buf.getvalue()
    golden = GOLDEN / "demo_render.txt"
    if os.environ.get("TRIAGE_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.slow
def test_json_mode_prints_one_object_and_progress_goes_to_stderr(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "triage", "demo", "--plan", "stock:2", "--steps", "10", "--json",
         "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)  # nothing but the object on stdout
    assert obj["schema"] == "triage.demo/1"
    run = obj["runs"][0]
    assert [r["name"] for r in obj["runs"]] == ["stock-s2"]
    # the stock arm's only fault is the corrupt record, reached or not by this seed's shuffle
    assert all(i["fault"] == "data_error" for i in run["injected"])
    assert run["returncode"] == (1 if run["injected"] else 0)
    assert "run 1/1: stock-s2" in proc.stderr
    # one run: nothing to score if it was clean, which the demo says instead of failing
    if run["injected"]:
        assert obj["hypotheses"]["verdict"] == "one_bug"
    else:
        assert any(note.startswith("hypotheses: skipped") for note in obj["skipped"])
