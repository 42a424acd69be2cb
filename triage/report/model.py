"""The report's view-model: what a post-mortem says, independent of how it is rendered.

A builder per source fills one `ReportData` (`triage.report.from_scan` for one scan,
`triage.report.from_case` for a whole case); renderers (`triage.report.render`) turn it into
Markdown, HTML or JSON. Renderers never compute anything: every number, sentence and ordering
is decided here or in a builder, so the three formats always say the same thing.

Invariants
- Every record is frozen and every collection is a tuple, already sorted by the builder.
- Every section is optional (`None` = the source has nothing to say about it); a renderer shows
  a section only when it is present, so a report works with whatever exists.
- Text that came from a log (messages, templates, hosts, excerpt lines) is kept verbatim here;
  escaping is the renderer's job (HTML autoescape, Markdown code spans), never the builder's.
- `to_json()` is the `triage.report/1` contract: plain JSON types, keys in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from triage.records import SourceRef

REPORT_SCHEMA = "triage.report/1"

# Closed vocabulary of the summary's confidence, with an honest "unknown".
CONFIDENCE_LEVELS = ("high", "medium", "low", "unknown")


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and enums to JSON types, keeping field order."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):
        return value.value
    return value


@dataclass(frozen=True)
class Summary:
    """Three sentences: what failed first; where and when; how sure (and why)."""

    what: str
    where_when: str
    how_sure: str
    confidence: str  # one of CONFIDENCE_LEVELS
    reasons: tuple[str, ...] = ()  # what the confidence rests on, one short clause each

    @property
    def sentences(self) -> tuple[str, str, str]:
        return (self.what, self.where_when, self.how_sure)


@dataclass(frozen=True)
class TimelineEntry:
    time: str | None
    step: int | None
    rank: int | None
    host: str | None
    family: str
    role: str
    message: str  # verbatim log line
    source: SourceRef
    signature: str
    run: str | None = None  # the run (attempt) it belongs to, in a case report


@dataclass(frozen=True)
class Timeline:
    entries: tuple[TimelineEntry, ...]
    ordered_by: str  # "time" | "step" | "order"
    omitted: int = 0  # entries left out past the report's cap


@dataclass(frozen=True)
class FigurePoint:
    rank: int  # the row: a rank, or an index into RankFigure.row_labels
    x: float  # a step, or seconds since the first failure
    family: str
    role: str


@dataclass(frozen=True)
class RankFigure:
    """Data for the rank-by-step (or rank-by-time) figure; drawn by triage.report.figures."""

    axis: str  # "step" | "time" | "order"
    points: tuple[FigurePoint, ...]
    progress: tuple[tuple[int, int], ...] = ()  # (rank, last step reported), axis == "step"
    time_origin: str | None = None  # ISO time of x == 0, axis == "time"
    caption: str = ""
    row_label: str = "rank"  # what a row is: "rank", or "run" in a case report
    row_labels: tuple[str, ...] = ()  # names of rows 0..n-1 when rows are not ranks


@dataclass(frozen=True)
class Advice:
    """A playbook rule's advice (triage.classify.playbook), copied so renderers need no I/O."""

    rule_id: str
    title: str
    causes: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignatureRow:
    id: str
    family: str
    template: str
    count: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    first_step: int | None
    playbook: str | None
    rate: float | None = None  # occurrences per `rate_unit`
    rate_unit: str | None = None  # e.g. "per 1,000 rank-steps", "per run"
    runs: int | None = None  # runs it appeared in (case reports)
    advice: Advice | None = None


@dataclass(frozen=True)
class SuspectHost:
    host: str
    failures: int
    root_causes: int
    ranks: tuple[int, ...]
    score: float | None = None  # the suspects analysis' score when a case computed one
    reason: str = ""


@dataclass(frozen=True)
class Cause:
    label: str
    signatures: tuple[str, ...]
    incidents: int
    conditions: tuple[str, ...] = ()  # "host=gpu-07", "step>=4000", ...


@dataclass(frozen=True)
class Hypothesis:
    name: str
    posterior: float
    causes: tuple[Cause, ...]
    evidence: tuple[str, ...] = ()  # what moved it most, one line each


@dataclass(frozen=True)
class Hypotheses:
    rows: tuple[Hypothesis, ...]  # best first
    p_one_bug: float | None = None
    verdict: str | None = None  # "one_bug" | "many_bugs" | "undecided"


@dataclass(frozen=True)
class Trial:
    value: str  # the axis value tried (a step, a seed, a set of ranks)
    outcome: str  # good | bad | skip | unrelated | flaky | error


@dataclass(frozen=True)
class Bisection:
    axis: str
    signature: str | None
    status: str  # "found" | "running" | "inconclusive" | ...
    culprit: str | None
    probability: float | None
    command: str | None
    trials: tuple[Trial, ...] = ()


@dataclass(frozen=True)
class Reproduce:
    commands: tuple[str, ...]  # shell lines, in order
    facts: tuple[tuple[str, str], ...] = ()  # ("world size", "4"), ("seed", "1234"), ...
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Excerpt:
    """Verbatim lines of one input around one failure line."""

    title: str
    source: SourceRef  # the failure line itself
    first_line: int  # 1-based number of lines[0]
    lines: tuple[str, ...]  # verbatim, newline stripped, long lines cut with a marker
    numbers: tuple[int, ...] = ()  # each line's number when not contiguous from first_line

    @property
    def numbered(self) -> tuple[tuple[int, str, bool], ...]:
        """(line number, text, is the failure line) for each line."""
        numbers = self.numbers or tuple(range(self.first_line, self.first_line + len(self.lines)))
        return tuple((n, text, n == self.source.line) for n, text in zip(numbers, self.lines))


@dataclass(frozen=True)
class ReportData:
    title: str
    generated_at: str  # ISO 8601, injected (never read from the clock by a renderer)
    source_kind: str  # "scan" | "case"
    inputs: tuple[str, ...]
    summary: Summary | None = None
    timeline: Timeline | None = None
    figure: RankFigure | None = None
    signatures: tuple[SignatureRow, ...] | None = None
    suspects: tuple[SuspectHost, ...] | None = None
    hypotheses: Hypotheses | None = None
    bisections: tuple[Bisection, ...] | None = None
    reproduce: Reproduce | None = None
    excerpts: tuple[Excerpt, ...] | None = None
    warnings: tuple[str, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()  # the header's key facts (runs, ranks, steps, ...)

    def sections(self) -> tuple[str, ...]:
        """Names of the sections present, in report order."""
        order = ("summary", "timeline", "figure", "signatures", "suspects", "hypotheses",
                 "bisections", "reproduce", "excerpts")
        return tuple(name for name in order if getattr(self, name) is not None)

    def to_json(self) -> dict[str, Any]:
        body = _plain(self)
        return {"schema": REPORT_SCHEMA, "sections": list(self.sections()), **body}
