"""Adapters from the case's analysis stages to the report's view-model: hypotheses, bisections.

Each adapter reads one stage's public API and copies what the report shows into
`triage.report.model` records, so the report never depends on a stage's internals and a stage
that is not in this tree (or has nothing recorded in the case) simply gives `None`: the report
then leaves the section out.

Stages: hypotheses (triage.analyze.hypotheses) and bisection results (triage.case.bisect).
"""

from __future__ import annotations

from typing import Any

from triage.report.model import Bisection, Cause, Hypotheses, Hypothesis, Trial


HYPOTHESES_SHOWN = 6


def hypotheses_of(store: Any, limit: int = HYPOTHESES_SHOWN) -> Hypotheses | None:
    """The case's hypotheses ledger, best first; None when the stage or its data is absent.

    Scores the case without appending to its posterior log (a report reads, never records).
    Evidence lines are the ledger's own words: what moved the answer, and each cause of the
    best explanation described by its most probable rate profile.
    """
    try:
        from triage.analyze.hypotheses import analyse_case  # noqa: PLC0415 - optional stage
    except ImportError:
        return None
    if not store.incidents():
        return None
    ledger, _ = analyse_case(store, record=False, limit=limit)
    rows = []
    for scored in ledger.listed(limit):
        evidence: tuple[str, ...] = ()
        if scored is ledger.best:
            names = sorted(ledger.labels.items(), key=lambda kv: (len(kv[1]), kv[1]))
            evidence = tuple(ledger.moved_words()) + tuple(
                f"{c.id}: {ledger.describe_cause(c)}" for c in scored.causes) + (
                "where " + ", ".join(f"{lab} = {sig}" for sig, lab in names),)
        rows.append(Hypothesis(
            name=scored.name, posterior=float(scored.posterior),
            causes=tuple(Cause(label=c.id, signatures=tuple(c.signatures),
                               incidents=len(c.incidents),
                               conditions=tuple(f"{k}={','.join(map(str, v))}"
                                                for k, v in sorted(c.conditions.items())))
                         for c in scored.causes),
            evidence=evidence))
    verdict = getattr(ledger.verdict, "value", ledger.verdict)
    return Hypotheses(rows=tuple(rows), p_one_bug=float(ledger.p_one_bug), verdict=str(verdict))


TRIALS_SHOWN = 40


def bisections_of(store: Any) -> tuple[Bisection, ...] | None:
    """Bisection sessions recorded in the case (triage.case.bisect), newest first; None when
    the stage is absent or the case has none. Each shows its latest stored answer (the
    session's own `result`, as `triage bisect` printed it) and its trials in order."""
    try:
        from triage.case.bisect import BisectDAO  # noqa: PLC0415 - optional stage
    except ImportError:
        return None
    dao = BisectDAO(store)
    out = []
    for row in sorted(dao.sessions(), key=lambda r: -r.id):
        result = row.result or {}
        culprit, status, probability = _answer(row.kind, row.status, result)
        trials = tuple(Trial(value=_point_text(t.point, t.key),
                             outcome=getattr(t.outcome, "value", str(t.outcome)))
                       for t in dao.trials(row.id)[:TRIALS_SHOWN])
        template = row.spec.get("template")
        out.append(Bisection(axis=row.axis, signature=row.spec.get("signature"), status=status,
                             culprit=culprit, probability=probability,
                             command=str(template) if template else None, trials=trials))
    return tuple(out) or None


def _answer(kind: str, session_status: str, result: dict) -> tuple[str | None, str, float | None]:
    """(culprit text, status, probability) from a session's stored result."""
    if kind == "step":
        culprit = result.get("culprit")
        conf = result.get("confidence")
        if culprit is not None:
            return str(culprit), "found", conf
        interval = result.get("interval")
        status = session_status if session_status != "done" else "inconclusive"
        if interval:
            status += f" (culprit in {interval[0]}..{interval[1]})"
        return None, status, conf
    if kind == "seed":
        seeds = result.get("reproducing") or []
        return (", ".join(map(str, seeds)) or None,
                str(result.get("verdict") or session_status), result.get("depends_on_seed"))
    minimal = result.get("minimal")
    return (", ".join(map(str, minimal)) if minimal else None,
            str(result.get("status") or session_status), None)


def _point_text(point: Any, key: Any) -> str:
    if point:
        values = list(dict(point).values())
        return values[0] if len(values) == 1 else " ".join(f"{k}={v}" for k, v in
                                                          sorted(dict(point).items()))
    return str(key)
