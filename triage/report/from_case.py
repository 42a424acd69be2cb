"""Build a post-mortem view-model from a whole case (`triage.case.CaseStore`).

What a case adds to a single scan: many runs (attempts), so exposure (clean runs count),
rates with intervals (triage.analyze.rates), suspect hosts by an exact test against exposure
(triage.analyze.suspects), and, where the case has them, hypotheses ("one bug or many") and
bisection results. Each of those sections is filled only when its stage exists in this tree
and the case holds data for it; a missing stage leaves the section out (`None`), never fails
the report.

Order and wording
- The timeline lists each failed run's root cause and independent failures (symptoms are
  consequences, shown per run in the excerpts and the figure), by time when every entry has
  one, else by run order (run id), then step.
- The figure has one row per run: how far the run got (grey bar, steps completed) and where it
  failed (root cause star, independent failures as diamonds).
- Signatures are sorted by root-cause runs, then runs, then id; rates are events per million
  GPU-steps (root or independent, at most one per run), as `triage rates` counts them.
- "How sure": the hypotheses' P(one bug) when the case has hypotheses; otherwise the same kind
  of explicit clause list as a scan report (same root signature in every failed run, playbook
  recognition, number of failed runs).

Determinism: clock injected (`now=`), every list sorted with a total order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from triage.records import SourceRef
from triage.report.excerpts import ExcerptRequest, read_excerpts
from triage.report.from_scan import (
    EXCERPT_CAP,
    TIMELINE_CAP,
    AdviceLookup,
    now_iso,
    parse_time,
    playbook_advice,
)
from triage.report.model import (
    Bisection,
    FigurePoint,
    Hypotheses,
    RankFigure,
    ReportData,
    Reproduce,
    SignatureRow,
    Summary,
    SuspectHost,
    Timeline,
    TimelineEntry,
)

SUSPECT_CAP = 20

HypothesesSource = Callable[[Any], "Hypotheses | None"]
BisectionsSource = Callable[[Any], "tuple[Bisection, ...] | None"]


def _with_hosts(incidents: Sequence[Any], runs: Sequence[Any]) -> list[Any]:
    """Incidents whose occurrences name their host, from the run's rank -> host map when the
    log line itself did not (a triage-run.yaml `hosts:` map, say)."""
    hosts = {r.id: r.hosts for r in runs}

    def fill(o: Any) -> Any:
        if o.host is None and o.rank is not None and o.rank in hosts.get(o.run_id, {}):
            return replace(o, host=hosts[o.run_id][o.rank])
        return o

    return [replace(inc, root=fill(inc.root), symptoms=tuple(map(fill, inc.symptoms)),
                    independent=tuple(map(fill, inc.independent))) for inc in incidents]


def _where(o: Any) -> str:
    text = f"rank {o.rank}" if o.rank is not None else "an unknown rank"
    return f"{text} (host {o.host})" if o.host else text


def _order_key(o: Any) -> tuple:
    t = parse_time(o.time)
    return (t is None, t.timestamp() if t else 0.0, o.run_id, o.step if o.step is not None else -1,
            o.rank if o.rank is not None else -1, o.id)


def _entry(o: Any) -> TimelineEntry:
    return TimelineEntry(time=o.time, step=o.step, rank=o.rank, host=o.host, family=o.family,
                         role=o.role, message=o.message, source=SourceRef(o.path, o.line),
                         signature=o.signature, run=o.run)


def _timeline(incidents: Sequence[Any]) -> Timeline | None:
    occ = [o for inc in incidents for o in (inc.root, *inc.independent)]
    if not occ:
        return None
    by_time = all(parse_time(o.time) for o in occ)
    occ.sort(key=_order_key if by_time else
             (lambda o: (o.run_id, o.step if o.step is not None else -1, o.id)))
    return Timeline(entries=tuple(_entry(o) for o in occ[:TIMELINE_CAP]),
                    ordered_by="time" if by_time else "run, then step",
                    omitted=max(0, len(occ) - TIMELINE_CAP))


def _figure(runs: Sequence[Any], incidents: Sequence[Any]) -> RankFigure | None:
    if not incidents:
        return None
    ordered = sorted(runs, key=lambda r: r.id)
    row = {r.id: i for i, r in enumerate(ordered)}
    points = []
    for inc in incidents:
        for o in (inc.root, *inc.independent):
            if o.step is not None and o.run_id in row:
                points.append(FigurePoint(rank=row[o.run_id], x=float(o.step), family=o.family,
                                          role=o.role))
    if not points:
        return None
    progress = tuple((row[r.id], r.steps_completed) for r in ordered
                     if r.steps_completed is not None)
    return RankFigure(axis="step", points=tuple(sorted(points, key=lambda p: (p.rank, p.x))),
                      progress=progress, row_label="run",
                      row_labels=tuple(r.name for r in ordered),
                      caption="Where each run failed: one row per run; grey bars: steps "
                              "completed; star: root cause, diamond: independent failure.")


def _signatures(store: Any, sigs: Sequence[Any], incidents: Sequence[Any],
                advice: AdviceLookup) -> tuple[SignatureRow, ...]:
    rates: dict[str, float] = {}
    try:
        from triage.analyze.rates import rates_for_case  # noqa: PLC0415 - optional stage
    except ImportError:
        rates_for_case = None
    if rates_for_case is not None:
        for r in rates_for_case(store).rates:
            value = r.per_million_steps.value
            if value == value:  # not NaN (no exposure)
                rates[r.signature] = round(value, 3)
    first_steps: dict[str, int] = {}
    for o in store.occurrences():
        if o.step is not None:
            first_steps[o.signature] = min(first_steps.get(o.signature, o.step), o.step)
    rows = []
    for s in sigs:
        rate = rates.get(s.id)
        rows.append(SignatureRow(
            id=s.id, family=s.family, template=s.template, count=s.occurrences,
            ranks=tuple(sorted(s.ranks)), hosts=tuple(sorted(s.hosts)),
            first_step=first_steps.get(s.id), playbook=s.playbook, rate=rate,
            rate_unit="per million GPU-steps (root or independent, once per run)"
            if rate is not None else None,
            runs=s.runs, advice=advice(s.playbook) if s.playbook else None))
    # hosts a signature was seen on, also where only the run metadata names the host
    seen_hosts: dict[str, set[str]] = {}
    for inc in incidents:
        for o in (inc.root, *inc.symptoms, *inc.independent):
            if o.host:
                seen_hosts.setdefault(o.signature, set()).add(o.host)
    rows = [row if row.hosts else replace(row, hosts=tuple(sorted(seen_hosts.get(row.id, ()))))
            for row in rows]
    by_sig = {s.id: s for s in sigs}
    rows.sort(key=lambda r: (-by_sig[r.id].root_runs, -(r.runs or 0), r.id))
    return tuple(rows)


def _suspects(store: Any, incidents: Sequence[Any]) -> tuple[SuspectHost, ...] | None:
    roots: Counter[str] = Counter(inc.root.host for inc in incidents if inc.root.host)
    fails: Counter[str] = Counter()
    ranks: dict[str, set[int]] = {}
    for inc in incidents:
        for o in (inc.root, *inc.symptoms, *inc.independent):
            if o.host:
                fails[o.host] += 1
                if o.rank is not None:
                    ranks.setdefault(o.host, set()).add(o.rank)
    try:
        from triage.analyze.suspects import suspects_for_case  # noqa: PLC0415 - optional stage
    except ImportError:
        suspects_for_case = None
    rows: list[SuspectHost] = []
    if suspects_for_case is not None:
        best: dict[str, Any] = {}
        for t in suspects_for_case(store).tests:
            if t.kind == "host" and t.observed > 0 and (
                    t.unit not in best or t.p_adjusted < best[t.unit].p_adjusted):
                best[t.unit] = t
        for host, t in best.items():
            verdict = "suspect" if t.suspect else "not significant"
            rows.append(SuspectHost(
                host=host, failures=fails.get(host, 0), root_causes=roots.get(host, 0),
                ranks=tuple(sorted(ranks.get(host, ()))), score=t.p_adjusted,
                reason=(f"{t.observed} event(s) of {t.signature} where {t.expected:.2f} were "
                        f"expected from exposure; adjusted p = {t.p_adjusted:.3g} ({verdict})")))
        rows.sort(key=lambda r: (r.score if r.score is not None else 2.0, -r.root_causes,
                                 -r.failures, r.host))
    if not rows:  # no exposure test possible (hosts known only from the run metadata, say)
        for host in fails:
            rows.append(SuspectHost(host=host, failures=fails[host], root_causes=roots[host],
                                    ranks=tuple(sorted(ranks.get(host, ()))),
                                    reason=f"{roots[host]} root cause(s), {fails[host]} "
                                           "failure(s); no exposure test available"))
        rows.sort(key=lambda r: (-r.root_causes, -r.failures, r.host))
    return tuple(rows[:SUSPECT_CAP]) or None


def _summary(runs: Sequence[Any], incidents: Sequence[Any], hyps: Hypotheses | None) -> Summary:
    failed = len(incidents)
    if not incidents:
        return Summary(
            what=f"No run in the case failed ({len(runs)} run(s)).",
            where_when=f"The runs completed {sum(r.gpu_steps for r in runs):,} GPU-steps "
                       "between them.",
            how_sure="Nothing to be sure about: a failure no playbook rule knows would not show "
                     "here.", confidence="unknown", reasons=("no failure was found",))
    first = min((inc.root for inc in incidents), key=_order_key)
    root_sigs = Counter(inc.root.signature for inc in incidents)
    top_sig, top_n = sorted(root_sigs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    what = (f"The first failure in the case was {first.family} on {_where(first)} in run "
            f"{first.run}" + (f" at step {first.step}" if first.step is not None else "") + ".")
    where_when = (f"{failed} of {len(runs)} run(s) failed over "
                  f"{sum(r.gpu_steps for r in runs):,} GPU-steps; "
                  + (f"each failed run has its own root signature ({len(root_sigs)})."
                     if top_n == 1 and len(root_sigs) > 1 else
                     f"the most common root cause is {top_sig} in {top_n} run(s)"
                     + (f", and {len(root_sigs) - 1} other root signature(s) appear."
                        if len(root_sigs) > 1 else ".")))
    pro, con = [], []
    if all(inc.root.playbook for inc in incidents):
        pro.append("a playbook rule recognised every root cause")
    else:
        con.append("some root causes matched no playbook rule")
    if len(root_sigs) == 1 and failed > 1:
        pro.append("every failed run has the same root signature")
    elif len(root_sigs) > 1:
        con.append(f"{len(root_sigs)} different root signatures")
    if failed == 1:
        con.append("a single failed run")
    if hyps is not None and hyps.p_one_bug is not None:
        p = hyps.p_one_bug
        certainty = max(p, 1 - p)  # how sure of the verdict, whichever way it goes
        level = "high" if certainty >= 0.95 else "medium" if certainty >= 0.75 else "low"
        how_sure = (f"The hypotheses give P(one bug) = {p:.1%}"
                    + (f" (verdict: {hyps.verdict})" if hyps.verdict else "") + ".")
        clause = (f"P(one bug) = {p:.1%} over {len(hyps.rows)} hypotheses"
                  + ("" if level != "low" else ": the evidence cannot tell yet"))
        reasons = ((f"- {clause}" if level == "low" else f"+ {clause}"),) + tuple(
            f"+ {x}" for x in pro) + tuple(f"- {x}" for x in con)
    else:
        level = ("high" if len(pro) >= 2 and not con else
                 "low" if not pro or len(con) >= 2 else "medium")
        how_sure = f"Confidence: {level} (" + "; ".join(pro + con) + ")."
        reasons = tuple(f"+ {p}" for p in pro) + tuple(f"- {c}" for c in con)
    return Summary(what=what, where_when=where_when, how_sure=how_sure, confidence=level,
                   reasons=reasons)


def _reproduce(case_path: str, runs: Sequence[Any], incidents: Sequence[Any]) -> Reproduce:
    import shlex  # noqa: PLC0415

    quoted = shlex.quote(case_path)
    commands = (f"triage report --case {quoted} --format html -o report.html",)
    facts: list[tuple[str, str]] = [("runs", str(len(runs))), ("failed runs", str(len(incidents)))]
    for name, values in (("world sizes", {r.world_size for r in runs if r.world_size}),
                         ("seeds", {r.seed for r in runs if r.seed}),
                         ("versions", {r.version for r in runs if r.version})):
        if values:
            facts.append((name, ", ".join(sorted(str(v) for v in values))))
    notes = []
    if incidents:
        first = min((inc.root for inc in incidents), key=_order_key)
        run = next((r for r in runs if r.id == first.run_id), None)
        bits = [f"run {first.run}"]
        if run is not None and run.seed:
            bits.append(f"seed {run.seed}")
        if run is not None and run.version:
            bits.append(f"version {run.version}")
        if first.step is not None:
            bits.append(f"step {first.step}")
        notes.append("The earliest failure is " + ", ".join(bits) + "; rerun with the same "
                     "seed, version and world size past that step to reproduce it.")
    return Reproduce(commands=commands, facts=tuple(facts), notes=tuple(notes))


def _excerpts(incidents: Sequence[Any]):
    requests, seen = [], set()
    for inc in sorted(incidents, key=lambda i: _order_key(i.root)):
        for o in (inc.root, *inc.independent):
            if o.signature in seen:
                continue
            seen.add(o.signature)
            requests.append(ExcerptRequest(
                title=f"{'root cause' if o.role == 'root' else o.role}: {o.family} on "
                      f"rank {o.rank if o.rank is not None else '?'}, run {o.run}",
                source=SourceRef(o.path, o.line), message=o.message))
            if len(requests) >= EXCERPT_CAP:
                return read_excerpts(requests)
    return read_excerpts(requests) if requests else None


def default_hypotheses(store: Any) -> Hypotheses | None:
    """Hypotheses from triage.analyze.hypotheses when that stage is in the tree (else None)."""
    try:
        from triage.report import case_sources  # noqa: PLC0415
    except ImportError:
        return None
    return case_sources.hypotheses_of(store)


def default_bisections(store: Any) -> tuple[Bisection, ...] | None:
    try:
        from triage.report import case_sources  # noqa: PLC0415
    except ImportError:
        return None
    return case_sources.bisections_of(store)


def from_case(store: Any, *, now: datetime | str | None = None,
              advice: AdviceLookup | None = None,
              hypotheses: HypothesesSource | None = default_hypotheses,
              bisections: BisectionsSource | None = default_bisections) -> ReportData:
    """The report of a whole case. `hypotheses`/`bisections`: sources (None to leave out)."""
    lookup = advice if advice is not None else playbook_advice()
    runs = sorted(store.runs(), key=lambda r: r.id)
    incidents = _with_hosts(sorted(store.incidents(), key=lambda i: i.run_id), runs)
    sigs = store.signatures()
    hyps = hypotheses(store) if hypotheses is not None else None
    bis = bisections(store) if bisections is not None else None
    case_path = str(getattr(store, "path", "case.db"))
    name = Path(case_path).name
    failed = len(incidents)
    title = (f"Post-mortem: case {name}, {failed} of {len(runs)} run(s) failed" if runs
             else f"Post-mortem: case {name} (empty)")
    facts = [("runs", str(len(runs))), ("failed", str(failed)),
             ("signatures", str(len(sigs))),
             ("GPU-steps", f"{sum(r.gpu_steps for r in runs):,}")]
    return ReportData(
        title=title,
        generated_at=now_iso(now),
        source_kind="case",
        inputs=tuple(r.name for r in runs),
        summary=_summary(runs, incidents, hyps),
        timeline=_timeline(incidents),
        figure=_figure(runs, incidents),
        signatures=_signatures(store, sigs, incidents, lookup) if sigs else None,
        suspects=_suspects(store, incidents) if incidents else None,
        hypotheses=hyps,
        bisections=bis or None,
        reproduce=_reproduce(case_path, runs, incidents),
        excerpts=_excerpts(incidents),
        facts=tuple(facts),
    )
