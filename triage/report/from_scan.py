"""Build a post-mortem view-model from one scan (`triage.scan.scan(paths)`).

What a single scan can tell: what failed first and where (the scan's root cause), the order of
failures across ranks (timeline, figure), the signatures with their counts and a rate per
1,000 rank-steps of exposure, hosts that carry the failures, and verbatim excerpts. It cannot
tell hypotheses or bisections: those need a case (`triage.report.from_case`).

How sure ("confidence"): a small, explicit rule set rather than a score, so a reader can check
it. Each clause for or against is kept in `Summary.reasons`:
  + a playbook rule recognised the root cause (a known failure, with advice)
  + the root cause is strictly the earliest failure by timestamp, or the only rank that failed
  + every other failure is a symptom of it
  - no playbook rule matched (generic family), or other failures are independent of it
  - another rank failed at the same moment (tie), or the order rests on file order only
  - some inputs were damaged or skipped (scan warnings)
high = at least two clauses for and none against; low = no clause for, or two or more
against; medium otherwise; unknown when no failure was found.

Determinism: the clock is injected (`now=`, else SOURCE_DATE_EPOCH, else the wall clock), and
every list is sorted with a total order, so the same scan gives the same report byte for byte.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from triage.records import Failure, ScanResult
from triage.report.excerpts import ExcerptRequest, read_excerpts
from triage.report.model import (
    Advice,
    FigurePoint,
    RankFigure,
    ReportData,
    Reproduce,
    SignatureRow,
    Summary,
    SuspectHost,
    Timeline,
    TimelineEntry,
)

TIMELINE_CAP = 40  # entries shown; the rest are counted as omitted
EXCERPT_CAP = 12  # root cause + the first failure of up to 11 other signatures
RATE_PER = 1000  # rates are per 1,000 rank-steps


def now_iso(now: datetime | str | None = None) -> str:
    """The report's clock: `now`, else $SOURCE_DATE_EPOCH (reproducible builds), else now."""
    if isinstance(now, str):
        return now
    if now is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        now = (datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch and epoch.isdigit()
               else datetime.now(timezone.utc))
    return now.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from a log; naive times are taken as UTC. None if unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


AdviceLookup = Callable[[str], "Advice | None"]


def playbook_advice() -> AdviceLookup:
    """Advice from the playbooks (triage.classify.playbook), looked up by rule id.

    A rule id the loaded playbooks do not know gives no advice (the report says so); a broken
    playbook file is an error of its own (PlaybookError), not hidden here.
    """
    from triage.classify.playbook import load_playbooks  # noqa: PLC0415 - loads YAML

    books = load_playbooks()

    def lookup(rule_id: str) -> Advice | None:
        try:
            rule = books.get(rule_id)
        except KeyError:  # UnknownRuleError: an id from an older playbook, or a custom one
            return None
        return advice_from_rule(rule_id, rule)

    return lookup


def advice_from_rule(rule_id: str, rule: Any) -> Advice:
    """Copy a playbook rule's advice. Causes may be plain text or (category, text) records."""

    def texts(name: str) -> tuple[str, ...]:
        value = getattr(rule, name, None) or ()
        if isinstance(value, str):
            value = (value,)
        out = []
        for v in value:
            text = getattr(v, "text", None)
            category = getattr(v, "category", None)
            out.append(f"{text} ({category})" if text and category else str(text or v))
        return tuple(out)

    return Advice(rule_id=rule_id, title=str(getattr(rule, "title", "") or rule_id),
                  causes=texts("causes"), next_steps=texts("next_steps"),
                  references=texts("references"))


def _where(f: Failure) -> str:
    text = f"rank {f.rank}" if f.rank is not None else "an unknown rank"
    return f"{text} (host {f.host})" if f.host else text


def _when(f: Failure) -> str:
    if f.step is not None and f.time:
        return f"at step {f.step} ({f.time})"
    if f.step is not None:
        return f"at step {f.step}"
    return f"at {f.time}" if f.time else "at an unknown step and time"


def _confidence(result: ScanResult) -> tuple[str, tuple[str, ...]]:
    root = result.root_cause
    if root is None:
        return "unknown", ("no failure was found",)
    pro: list[str] = []
    con: list[str] = []
    others = [f for f in result.failures if f != root]
    if root.playbook:
        pro.append(f"playbook rule {root.playbook} recognised it")
    else:
        con.append("no playbook rule matched it")
    other_ranks = {f.rank for f in others if f.rank != root.rank}
    root_t = parse_time(root.time)
    if not other_ranks:
        pro.append("no other rank failed")
    elif root_t is not None:
        times = [parse_time(f.time) for f in others if f.rank != root.rank]
        known = [t for t in times if t is not None]
        if known and all(t > root_t for t in known):
            pro.append("it is the earliest failure by timestamp")
        elif any(t == root_t for t in known):
            con.append("another rank failed at the same time")
        elif not known:
            con.append("the other ranks' failures carry no timestamp")
    else:
        con.append("the order of failures rests on steps and file order, not timestamps")
    independent = [f for f in others if f.role == "independent"]
    if others and not independent and all(f.role == "symptom" for f in others):
        pro.append("every other failure is a symptom of it")
    elif independent:
        con.append(f"{len(independent)} failure(s) are independent of it")
    if result.warnings:
        con.append(f"{len(result.warnings)} input problem(s) during the scan")
    if len(pro) >= 2 and not con:
        level = "high"
    elif not pro or len(con) >= 2:
        level = "low"
    else:
        level = "medium"
    return level, tuple(f"+ {p}" for p in pro) + tuple(f"- {c}" for c in con)


def hang_culprit(result: ScanResult) -> Any:
    """The scan's hang verdict when it names culprits (triage.analyze.hang), else None."""
    hang = result.hang
    if hang is None or getattr(hang, "verdict", None) != "culprit" or not hang.culprits:
        return None
    return hang


def _hang_sentence(hang: Any) -> str:
    ranks = ", ".join(str(r) for r in hang.culprits)
    where = f" (host {', '.join(hang.hosts)})" if hang.hosts else ""
    at = ""
    if hang.op or hang.seq is not None:
        at = " at " + " ".join(x for x in (hang.op, f"seq {hang.seq}" if hang.seq is not None
                                           else None) if x)
    return f"The hang analysis names rank {ranks}{where} as the culprit{at}: {hang.why}"


def _summary(result: ScanResult) -> Summary:
    root = result.root_cause
    level, reasons = _confidence(result)
    if root is None:
        lines = sum(i.lines for i in result.inputs)
        return Summary(
            what=f"No failure was found in {len(result.inputs)} input(s) ({lines:,} lines).",
            where_when=(f"The ranks seen reported up to step {result.max_step}."
                        if result.max_step is not None else "No training step was reported."),
            how_sure="Nothing to be sure about: a failure whose wording no playbook rule knows "
                     "would not show here (check the inputs, or add a rule).",
            confidence=level, reasons=reasons)
    others = [f for f in result.failures if f != root]
    ranks = sorted({f.rank for f in others if f.rank is not None and f.rank != root.rank})
    follow = (f"{len(others)} other failure(s) followed on {len(ranks)} other rank(s)"
              if others else "nothing else failed")
    what = f"The first failure was {root.family} on {_where(root)}."
    where_when = (f"It happened {_when(root)} ({root.source.path}:{root.source.line}); "
                  f"{follow}.")
    hang = hang_culprit(result)
    if hang is not None:
        where_when += " " + _hang_sentence(hang).rstrip(".") + "."
        reasons = reasons + ("+ the collectives point at the culprit rank(s)",)
    kept = "; ".join(r[2:] for r in reasons)
    how_sure = f"Confidence: {level} ({kept})."
    return Summary(what=what, where_when=where_when, how_sure=how_sure, confidence=level,
                   reasons=reasons)


def _entry(f: Failure) -> TimelineEntry:
    return TimelineEntry(time=f.time, step=f.step, rank=f.rank, host=f.host, family=f.family,
                         role=f.role, message=f.message, source=f.source, signature=f.signature)


def timeline_of(failures: Iterable[Failure], cap: int = TIMELINE_CAP) -> Timeline:
    """Failures in incident order: by time when all have one, else by step, else as found."""
    indexed = list(enumerate(failures))
    if indexed and all(parse_time(f.time) for _, f in indexed):
        ordered = sorted(indexed, key=lambda p: (parse_time(p[1].time), p[0]))
        by = "time"
    elif indexed and all(f.step is not None for _, f in indexed):
        ordered = sorted(indexed, key=lambda p: (p[1].step, p[0]))
        by = "step"
    else:
        ordered, by = indexed, "order"
    entries = tuple(_entry(f) for _, f in ordered[:cap])
    return Timeline(entries=entries, ordered_by=by, omitted=max(0, len(ordered) - cap))


def figure_of(result: ScanResult) -> RankFigure | None:
    ranked = [(i, f) for i, f in enumerate(result.failures) if f.rank is not None]
    if not ranked:
        return None
    progress = tuple(sorted((r.rank, r.last_step) for r in result.ranks
                            if r.last_step is not None))
    if any(f.step is not None for _, f in ranked):
        points = tuple(FigurePoint(rank=f.rank, x=float(f.step), family=f.family, role=f.role)
                       for _, f in ranked if f.step is not None)
        hang = hang_culprit(result)
        if hang is not None:  # a hung rank logs no error: mark it where it stopped
            last = {r.rank: r.last_step for r in result.ranks}
            points += tuple(FigurePoint(rank=r, x=float(last[r]), family="hang", role="culprit")
                            for r in hang.culprits if last.get(r) is not None)
        missing = len(ranked) - len(points)
        caption = "Failures by rank and training step; grey bars: steps each rank reported."
        if missing:
            caption += f" {missing} failure(s) without a step are not drawn."
        return RankFigure(axis="step", points=points, progress=progress, caption=caption)
    times = [(i, f, parse_time(f.time)) for i, f in ranked]
    if all(t is not None for _, _, t in times):
        origin = min(t for _, _, t in times)
        points = tuple(FigurePoint(rank=f.rank, x=(t - origin).total_seconds(), family=f.family,
                                   role=f.role) for _, f, t in times)
        origin_text = next(f.time for _, f, t in times if t == origin)
        return RankFigure(axis="time", points=points, time_origin=origin_text,
                          caption=f"Failures by rank and seconds after {origin_text}.")
    points = tuple(FigurePoint(rank=f.rank, x=float(n), family=f.family, role=f.role)
                   for n, (_, f) in enumerate(ranked))
    return RankFigure(axis="order", points=points,
                      caption="Failures by rank, in the order the scan found them "
                              "(the logs carry neither steps nor timestamps).")


def exposure_rank_steps(result: ScanResult) -> int | None:
    """Rank-steps the scan saw (the sum of each rank's last step); None when unknown."""
    steps = [r.last_step for r in result.ranks if r.last_step is not None]
    total = sum(s for s in steps if s > 0)
    return total or None


def signature_rows(result: ScanResult, advice: AdviceLookup) -> tuple[SignatureRow, ...]:
    exposure = exposure_rank_steps(result)
    root_sig = result.root_cause.signature if result.root_cause else None
    first_seen = {}
    for i, f in enumerate(result.failures):
        first_seen.setdefault(f.signature, i)
    rows = []
    for s in result.signatures:
        rate = round(s.count * RATE_PER / exposure, 3) if exposure else None
        rows.append(SignatureRow(
            id=s.id, family=s.family, template=s.template, count=s.count,
            ranks=tuple(sorted(s.ranks)), hosts=tuple(sorted(s.hosts)), first_step=s.first_step,
            playbook=s.playbook, rate=rate,
            rate_unit=f"per {RATE_PER:,} rank-steps" if rate is not None else None,
            advice=advice(s.playbook) if s.playbook else None))
    rows.sort(key=lambda r: (r.id != root_sig, first_seen.get(r.id, len(first_seen)),
                             -r.count, r.id))
    return tuple(rows)


def suspect_hosts(failures: Iterable[Failure]) -> tuple[SuspectHost, ...]:
    """Hosts ordered by root causes, then failures: where to look first."""
    count: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    ranks: dict[str, set[int]] = {}
    for f in failures:
        if not f.host:
            continue
        count[f.host] += 1
        if f.role == "root":
            roots[f.host] += 1
        if f.rank is not None:
            ranks.setdefault(f.host, set()).add(f.rank)
    rows = []
    for host in count:
        why = []
        if roots[host]:
            why.append("the root cause ran here")
        why.append(f"{count[host]} failure(s) on {len(ranks.get(host, ()))} rank(s)")
        rows.append(SuspectHost(host=host, failures=count[host], root_causes=roots[host],
                                ranks=tuple(sorted(ranks.get(host, ()))), reason="; ".join(why)))
    rows.sort(key=lambda r: (-r.root_causes, -r.failures, r.host))
    return tuple(rows)


def _quote(arg: str) -> str:
    import shlex  # noqa: PLC0415

    return shlex.quote(arg)


def _input_args(result: ScanResult, paths: Sequence[str] | None) -> str:
    """The paths to name in commands: the user's own, else the inputs (their common folder
    when there are many)."""
    if paths:
        return " ".join(_quote(str(p)) for p in paths)
    names = [i.path for i in result.inputs]
    if len(names) > 5:
        common = os.path.commonpath(names) if all(not n.startswith("-") for n in names) else ""
        if common:
            return _quote(common)
    return " ".join(_quote(n) for n in names) or "PATH..."


def reproduce_of(result: ScanResult, paths: Sequence[str] | None = None) -> Reproduce:
    paths = _input_args(result, paths)
    commands = (f"triage scan {paths}", f"triage report {paths} --format html -o report.html")
    facts = []
    if result.world_size is not None:
        facts.append(("world size", str(result.world_size)))
    if result.ranks:
        facts.append(("ranks seen", str(len(result.ranks))))
    if result.max_step is not None:
        facts.append(("highest step reported", str(result.max_step)))
    root = result.root_cause
    notes = []
    if root is not None:
        if root.step is not None:
            facts.append(("failure step", str(root.step)))
        if root.rank is not None:
            facts.append(("failing rank", str(root.rank)))
        if root.host:
            facts.append(("failing host", root.host))
        notes.append("To reproduce the failure itself, rerun the job with the same world size "
                     "and seed and let it pass the failure step; record the runs in a case "
                     "(triage ingest) so bisection and hypotheses can use them.")
    return Reproduce(commands=commands, facts=tuple(facts), notes=tuple(notes))


def excerpts_of(result: ScanResult, cap: int = EXCERPT_CAP):
    requests: list[ExcerptRequest] = []
    seen: set[str] = set()
    ordered = list(result.failures)
    if result.root_cause is not None:
        ordered = [result.root_cause] + [f for f in ordered if f != result.root_cause]
    for f in ordered:
        if f.signature in seen:
            continue
        seen.add(f.signature)
        who = f"rank {f.rank}" if f.rank is not None else "unknown rank"
        label = "root cause" if f is result.root_cause else f.role
        requests.append(ExcerptRequest(title=f"{label}: {f.family} on {who}", source=f.source,
                                       message=f.message))
        if len(requests) >= cap:
            break
    return read_excerpts(requests)


def from_scan(result: ScanResult, *, now: datetime | str | None = None,
              advice: AdviceLookup | None = None,
              paths: Sequence[str] | None = None) -> ReportData:
    """The report of one scan.

    `advice` defaults to the playbooks' (tests inject fixed advice); `paths` are the paths the
    user scanned (files or folders), named in the how-to-reproduce commands.
    """
    lookup = advice if advice is not None else playbook_advice()
    root = result.root_cause
    hang = hang_culprit(result)
    if hang is not None:
        title = (f"Post-mortem: hang, culprit rank {', '.join(map(str, hang.culprits))}"
                 + (f" ({', '.join(hang.hosts)})" if hang.hosts else ""))
    elif root is not None:
        title = f"Post-mortem: {root.family} on {_where(root)}"
    else:
        title = "Post-mortem: no failure found"
    facts = [("inputs", str(len(result.inputs))),
             ("lines", f"{sum(i.lines for i in result.inputs):,}"),
             ("failures", str(len(result.failures))),
             ("signatures", str(len(result.signatures)))]
    if result.ranks:
        facts.append(("ranks", str(len(result.ranks))))
    if result.max_step is not None:
        facts.append(("highest step", str(result.max_step)))
    suspects = suspect_hosts(result.failures)
    return ReportData(
        title=title,
        generated_at=now_iso(now),
        source_kind="scan",
        inputs=tuple(i.path for i in result.inputs),
        summary=_summary(result),
        timeline=timeline_of(result.failures) if result.failures else None,
        figure=figure_of(result),
        signatures=signature_rows(result, lookup) if result.signatures else None,
        suspects=suspects or None,
        reproduce=reproduce_of(result, paths),
        excerpts=excerpts_of(result) if result.failures else None,
        warnings=tuple(result.warnings),
        facts=tuple(facts),
    )
