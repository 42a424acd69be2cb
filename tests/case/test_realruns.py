"""Real logs of real 4-rank torch/gloo jobs (tests/realruns.py) ingested into one case.

What is checked comes from each job's own record of what it injected, never hard-coded: the same
fault at another rank and step must be the SAME signature, a different fault a different one;
exposure of the clean run counts; show gives verbatim lines with a file:line that holds them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from triage.analyze.rates import rates_for_case
from triage.analyze.suspects import suspects_for_case
from triage.case import CaseStore
from triage.case.ingest import ingest_run

pytestmark = pytest.mark.slow


def run_inputs(job) -> list[Path]:
    """What a user would hand to ingest: the console log and torchrun's --log-dir attempt."""
    return [job.console, job.attempt_dir]


@pytest.fixture(scope="module")
def jobs(real_run_exception, real_run_nan, real_run_clean, real_job):
    nan2 = real_job(fault="nan", fault_rank=1, fault_step=6)
    return {"exception": real_run_exception, "nan": real_run_nan, "clean": real_run_clean,
            "nan2": nan2}


@pytest.fixture(scope="module")
def case(jobs, tmp_path_factory):
    path = tmp_path_factory.mktemp("case") / "case.db"
    with CaseStore.open(path) as store:
        for name, job in jobs.items():
            res = ingest_run(store, run_inputs(job), run=name,
                             labels={"seed": str(job.seed), "fault": job.fault or "none"}, jobs=1)
            assert res.created
    return path


def test_failures_and_signatures_across_real_runs(case, jobs):
    with CaseStore.open(case, create=False) as store:
        assert store.integrity_check() == []
        incidents = {i.run: i for i in store.incidents()}
        runs = {r.name: r for r in store.runs()}
    assert set(incidents) == {"exception", "nan", "nan2"}
    assert not runs["clean"].failed and runs["clean"].world_size == jobs["clean"].nproc
    from triage.scan import scan
    for name in incidents:
        inj = jobs[name].first_injection
        root = incidents[name].root
        # the case stores exactly what the scanner found (its accuracy is tests/scan's business)
        found = scan([str(p) for p in run_inputs(jobs[name])], jobs=1).root_cause
        assert (root.signature, root.family, root.rank, root.step, root.path, root.line) == (
            found.signature, found.family, found.rank, found.step, found.source.path,
            found.source.line)
        assert root.rank == inj.rank
        # the step the error states, else the last step the rank printed before it
        assert root.step in (inj.step - 1, inj.step)
    # the same fault at another rank and step is one signature; another fault is another
    assert incidents["nan"].root.signature == incidents["nan2"].root.signature
    assert incidents["nan"].root.rank != incidents["nan2"].root.rank
    assert incidents["exception"].root.signature != incidents["nan"].root.signature
    # exposure: a clean run counts with every rank's steps
    assert runs["clean"].gpu_steps >= jobs["clean"].nproc * (jobs["clean"].steps - 1)
    assert runs["nan2"].gpu_steps < runs["nan"].gpu_steps < runs["clean"].gpu_steps
    assert runs["nan"].labels["fault"] == "nan"


def test_rates_and_suspects_on_real_runs(case, jobs):
    with CaseStore.open(case, create=False) as store:
        nan_sig = next(i.root.signature for i in store.incidents() if i.run == "nan")
        rates = {r.signature: r for r in rates_for_case(store, at_gpus=100_000).rates}
        sus = suspects_for_case(store)
        total = sum(r.gpu_steps for r in store.runs())
    assert rates[nan_sig].events == 2 and rates[nan_sig].gpu_steps == total
    assert rates[nan_sig].per_million_steps.value == pytest.approx(2 / total * 1e6)
    v = {x.signature: x for x in sus.verdicts}
    # every rank ran on this one machine: no host can be told apart, nothing is a suspect
    assert v[nan_sig].events == 2 and v[nan_sig].verdict == "too_few_events"
    assert not any(t.suspect for t in sus.tests)


def test_show_gives_verbatim_lines_with_file_and_line(case):
    with CaseStore.open(case, create=False) as store:
        occs = store.occurrences()
    assert occs
    for o in occs:
        lines = Path(o.path).read_text(errors="replace").splitlines()
        # verbatim from that line (the scanner may drop an outer launcher prefix like
        # "[default2]:" in front of "[rank2]:"; the rest is byte for byte)
        assert o.message and lines[o.line - 1].endswith(o.message), (o.path, o.line)


def test_ingesting_a_real_run_again_adds_nothing_via_cli(case, jobs, tmp_path):
    cmd = [sys.executable, "-m", "triage", "ingest", *map(str, run_inputs(jobs["nan"])),
           "--run", "nan-again", "--case", str(case), "--json", "--jobs", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["created"] is False and doc["run"] == "nan"
    with CaseStore.open(case, create=False) as store:
        assert [r.name for r in store.runs()] == ["exception", "nan", "clean", "nan2"]
