"""Golden Markdown for a case report: real case file (the case store's ingest and the real
scanner over fixed log files), so only the clock needs pinning.

Hypotheses and bisection results are injected as view-model records (`hypotheses=`,
`bisections=` sources) to pin how those sections render, independently of the stages that
compute them; `test_case_sources` covers reading them from the case.
"""

from __future__ import annotations

import pytest

from tests.report.factories import advice, write_log
from tests.report.golden import check_golden
from triage.report import from_case, render_html, render_markdown
from triage.report.model import Bisection, Cause, Hypotheses, Hypothesis, Trial

NOW = "2026-11-23T01:00:00Z"

HYPS = Hypotheses(
    p_one_bug=0.912, verdict="one_bug",
    rows=(
        Hypothesis(name="one bug: OOM and timeouts share a cause", posterior=0.912,
                   causes=(Cause(label="cause 1", signatures=("sig1:aaaa", "sig1:bbbb"),
                                 incidents=2, conditions=("step>=40",)),),
                   evidence=("both signatures fire only past step 40",
                             "their rates move together across runs")),
        Hypothesis(name="two bugs", posterior=0.088,
                   causes=(Cause(label="cause 1", signatures=("sig1:aaaa",), incidents=1),
                           Cause(label="cause 2", signatures=("sig1:bbbb",), incidents=1))),
    ))
BIS = (Bisection(axis="step", signature="sig1:aaaa", status="found", culprit="41",
                 probability=0.97, command="python train.py --stop-at {step}",
                 trials=(Trial("20", "good"), Trial("41", "bad"), Trial("30", "good"),
                         Trial("40", "good"))),)


@pytest.fixture
def case_store(tmp_path, monkeypatch):
    from triage.case import CaseStore
    from triage.case.ingest import ingest_run

    monkeypatch.chdir(tmp_path)
    for name in ("attempt-1", "attempt-2"):
        (tmp_path / name).mkdir()
        write_log(tmp_path / name)
    # a second failed attempt: same failure, other bytes (ingest is idempotent by content)
    log2 = tmp_path / "attempt-2" / "console.log"
    log2.write_text("[rank0]: resuming from checkpoint step 30\n" + log2.read_text())
    (tmp_path / "attempt-0").mkdir()
    (tmp_path / "attempt-0" / "console.log").write_text(
        "".join(f"[rank{r}]: step {s} loss 1.0\n" for s in range(50) for r in range(4)))
    for i, name in enumerate(("attempt-0", "attempt-1", "attempt-2")):
        (tmp_path / name / "triage-run.yaml").write_text(
            f"seed: {i}\nversion: v1.{i}\nhosts: {{0: node-a, 1: node-a, 2: node-b, 3: node-b}}\n")
    store = CaseStore.open("case.db")
    for name in ("attempt-0", "attempt-1", "attempt-2"):
        ingest_run(store, [f"{name}/console.log"], run=name)
    yield store
    store.close()


def test_case_markdown_golden(case_store):
    data = from_case(case_store, now=NOW, advice=advice, hypotheses=lambda s: HYPS,
                     bisections=lambda s: BIS)
    assert data.sections() == ("summary", "timeline", "figure", "signatures", "suspects",
                               "hypotheses", "bisections", "reproduce", "excerpts")
    assert data.summary.confidence == "medium"  # P(one bug) = 0.912
    check_golden("case.md", render_markdown(data, {"rank-by-step": "case-rank-by-step.png"}))
    html = render_html(data)
    assert 'id="hypotheses"' in html and 'id="bisections"' in html and "91.2%" in html


def test_case_without_optional_stages(case_store):
    data = from_case(case_store, now=NOW, advice=advice, hypotheses=None, bisections=None)
    assert data.hypotheses is None and data.bisections is None
    md = render_markdown(data)
    assert "## Hypotheses" not in md and "## Bisection" not in md
    assert "2 of 3 run(s) failed" in data.summary.where_when


def test_hypotheses_from_the_real_ledger(case_store):
    """The default source reads triage.analyze.hypotheses on the real case."""
    from triage.report.case_sources import hypotheses_of

    hyps = hypotheses_of(case_store)
    assert hyps is not None and hyps.rows
    assert 0.0 <= hyps.p_one_bug <= 1.0
    assert hyps.verdict in ("one_bug", "many_bugs", "undecided")
    assert abs(sum(h.posterior for h in hyps.rows) - 1.0) < 0.05 or len(hyps.rows) >= 2
    best = hyps.rows[0]
    assert best.posterior == max(h.posterior for h in hyps.rows)
    assert any(line.startswith("where S1 = sig1:") for line in best.evidence)
    # a report reads the case, it never appends to the hypotheses' posterior log
    from triage.case.hypotheses import HypothesisDAO

    dao = HypothesisDAO(case_store)
    log = dao.log() if hasattr(dao, "log") else []
    assert list(log) == []
    data = from_case(case_store, now=NOW, advice=advice)
    assert data.hypotheses == hyps and "hypotheses" in data.sections()


def test_bisections_from_the_case(case_store):
    """Sessions written by the case's bisect DAO (the one writer of those tables) are read back,
    newest first, with their stored answer and trials."""
    from triage.bisect.outcome import Outcome
    from triage.case.bisect import BisectDAO
    from triage.report.case_sources import bisections_of

    assert bisections_of(case_store) is None
    dao = BisectDAO(case_store, clock=lambda: "2026-01-01T00:00:00Z")
    sid = dao.create("step", "step", {"template": "python train.py --stop-at {step}",
                                      "signature": "cuda_oom", "confidence": 0.99},
                     lambda i: f"bisect-{i}").id
    for key, step, outcome in ((0, "20", Outcome.GOOD), (1, "41", Outcome.BAD),
                               (2, "30", Outcome.GOOD)):
        dao.add_trial(sid, key, {"step": step}, outcome, exit_code=int(outcome is Outcome.BAD),
                      seconds=1.0, timed_out=False, output=None)
    dao.finish(sid, "done", {"axis": "step", "culprit": 31, "interval": [31, 31],
                             "confidence": 0.995})
    sid2 = dao.create("ranks", "ranks", {"template": "run --ranks {ranks}",
                                         "elements": ["0", "1", "2", "3"]},
                      lambda i: f"bisect-{i}").id
    dao.finish(sid2, "done", {"status": "found", "minimal": [2]})
    (ranks, step) = bisections_of(case_store)
    assert (ranks.axis, ranks.status, ranks.culprit, ranks.probability) == \
        ("ranks", "found", "2", None)
    assert (step.axis, step.status, step.culprit, step.probability) == \
        ("step", "found", "31", 0.995)
    assert step.signature == "cuda_oom" and step.command == "python train.py --stop-at {step}"
    assert [(t.value, t.outcome) for t in step.trials] == \
        [("20", "good"), ("41", "bad"), ("30", "good")]
    data = from_case(case_store, now=NOW, advice=advice, hypotheses=None)
    assert "bisections" in data.sections()
    md = render_markdown(data)
    assert "| step | `cuda_oom` | found | `31` | 99.5% | 3 |" in md
