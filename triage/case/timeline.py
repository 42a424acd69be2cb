"""Where each run failed, as data for a rank-by-step picture (the CLI draws it with rich).

Two views:
- case view (no run given): one row per run, how far it got (steps completed), and the step,
  rank and family of its root cause;
- run view (`run=NAME`): one row per rank of that run, how far that rank got, and each failure
  on it (root, symptom, independent) at its step.

Rows are sorted (runs by id, ranks by number) so the picture and its JSON are deterministic.
`cells()` maps steps onto a fixed number of columns; a failure always wins its column over
progress, and a root cause over a symptom, so the failure point is never hidden by scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triage.case.store import CaseStore

MARK = {"root": "X", "independent": "o", "symptom": "x"}
_PRIORITY = {"X": 3, "o": 2, "x": 1, "-": 0, " ": -1}


@dataclass(frozen=True)
class Mark:
    step: int | None
    role: str
    family: str
    signature: str
    rank: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "role": self.role, "family": self.family,
                "signature": self.signature, "rank": self.rank}


@dataclass(frozen=True)
class Row:
    label: str  # run name, or "rank N"
    host: str | None
    steps: int | None  # how far it got
    marks: tuple[Mark, ...]

    def cells(self, width: int, max_step: int) -> str:
        scale = max(1, max_step)
        cols = [" "] * width
        col = lambda s: min(width - 1, max(0, round(s * (width - 1) / scale)))  # noqa: E731
        if self.steps is not None:
            for c in range(col(self.steps) + 1):
                cols[c] = "-"
        for m in self.marks:
            c = col(m.step if m.step is not None else (self.steps or 0))
            sym = MARK.get(m.role, "?")
            if _PRIORITY[sym] > _PRIORITY.get(cols[c], -1):
                cols[c] = sym
        return "".join(cols)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "host": self.host, "steps": self.steps,
                "marks": [m.to_json() for m in self.marks]}


@dataclass(frozen=True)
class Timeline:
    run: str | None  # None: the case view
    max_step: int
    rows: tuple[Row, ...]

    def to_json(self) -> dict[str, Any]:
        return {"schema": "triage.timeline/1", "run": self.run, "max_step": self.max_step,
                "rows": [r.to_json() for r in self.rows]}


def build_timeline(store: CaseStore, run: str | None = None, *, roots_only: bool = True) -> Timeline:
    if run is None:
        occ_by_run: dict[int, list] = {}
        for inc in store.incidents():
            shown = (inc.root,) + (() if roots_only else inc.symptoms + inc.independent)
            occ_by_run[inc.run_id] = [Mark(o.step, o.role, o.family, o.signature, o.rank)
                                      for o in shown]
        rows = tuple(Row(r.name, None, r.steps_completed, tuple(occ_by_run.get(r.id, ())))
                     for r in store.runs())
    else:
        the_run = store.run(run)
        marks: dict[int | None, list[Mark]] = {}
        for o in store.occurrences(run=the_run.id):
            marks.setdefault(o.rank, []).append(Mark(o.step, o.role, o.family, o.signature, o.rank))
        ranks = {r.rank: r for r in the_run.ranks}
        rows_l = [Row(f"rank {k}", ranks[k].host if k in ranks else None,
                      ranks[k].last_step if k in ranks else None, tuple(marks.get(k, ())))
                  for k in sorted(set(ranks) | {k for k in marks if k is not None})]
        if None in marks:
            rows_l.append(Row("rank ?", None, None, tuple(marks[None])))
        rows = tuple(rows_l)
        run = the_run.name
    steps = [r.steps for r in rows if r.steps is not None]
    steps += [m.step for r in rows for m in r.marks if m.step is not None]
    return Timeline(run, max(steps, default=0), rows)
