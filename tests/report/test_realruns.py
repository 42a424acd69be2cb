"""Reports from real 4-rank torch (gloo) jobs: the demo's session fixtures, the real scanner,
and a real case file built by the case store's ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triage.report import from_case, from_scan, render_html, render_markdown

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _scan(job):
    from triage.scan import scan

    return scan([str(job.console), str(job.attempt_dir)])


def test_scan_report_names_the_injected_fault(real_run_exception):
    job = real_run_exception
    inj = job.first_injection
    data = from_scan(_scan(job), now="2026-01-01T00:00:00Z")
    assert data.summary is not None
    assert f"rank {inj.rank}" in data.summary.what
    assert data.figure is not None and data.figure.axis in ("step", "time")
    root_points = [p for p in data.figure.points if p.role == "root"]
    assert [p.rank for p in root_points] == [inj.rank]
    # the appendix quotes the real log line, with its real file:line
    first = data.excerpts[0]
    text = Path(first.source.path).read_text(errors="replace").splitlines()[first.source.line - 1]
    assert [t for _, t, hit in first.numbered if hit] == [text.rstrip("\r")]
    assert "ValueError" in text
    md = render_markdown(data)
    html = render_html(data)
    assert "ValueError" in md and "ValueError" in html


def test_hang_report_names_the_hung_rank(real_run_hang):
    job = real_run_hang
    data = from_scan(_scan(job), now="2026-01-01T00:00:00Z")
    hung = job.fault_rank
    assert f"rank {hung}" in data.summary.what + data.summary.where_when
    marks = [p.rank for p in data.figure.points if p.role in ("root", "culprit")]
    assert hung in marks


def test_case_report_from_real_runs(tmp_path, real_run_exception, real_run_clean, real_run_nan):
    from triage.case import CaseStore
    from triage.case.ingest import ingest_run

    case = tmp_path / "case.db"
    with CaseStore.open(case) as store:
        for name, job in (("clean", real_run_clean), ("exception", real_run_exception),
                          ("nan", real_run_nan)):
            ingest_run(store, [job.console, job.attempt_dir], run=name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1700000000"}
    res = subprocess.run([sys.executable, "-m", "triage", "report", "--case", str(case),
                          "--format", "json"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["source_kind"] == "case" and doc["inputs"] == ["clean", "exception", "nan"]
    assert "2 of 3 run(s) failed" in doc["summary"]["where_when"]
    roots = {e["run"]: e for e in doc["timeline"]["entries"] if e["role"] == "root"}
    assert set(roots) == {"exception", "nan"}
    assert roots["exception"]["rank"] == real_run_exception.first_injection.rank
    assert roots["nan"]["rank"] == real_run_nan.first_injection.rank
    assert doc["figure"]["row_labels"] == ["clean", "exception", "nan"]
    rated = [s for s in doc["signatures"] if s["rate"] is not None]
    assert rated and all(s["rate_unit"].startswith("per million GPU-steps") for s in rated)
    with CaseStore.open(case, create=False) as store:
        html = render_html(from_case(store, now="2026-01-01T00:00:00Z"))
    assert 'id="suspects"' in html or 'id="signatures"' in html
