"""Commands over the case store: ingest, runs, signatures, show, timeline, rates, suspects.

Each body opens the case, calls one library function (triage.case, triage.analyze.rates,
triage.analyze.suspects) and renders its records: a rich table for people, `--json` for
programs (one object on stdout). Read-only commands open the case with `create=False`, so a
typo in --case is an error, not a new empty case.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from triage.cli.common import (add_plain_row, err, handle_errors, out, print_json, safe_text,
                               stack_lines, want_progress, warn)

CaseOpt = Annotated[Optional[Path], typer.Option(
    "--case", help="Case file (default: $TRIAGE_CASE, else .triage/case.db).", dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _open(case: Path | None, create: bool = False):
    from triage.case import CaseStore
    return CaseStore.open(case, create=create)


def _short(sig: str) -> str:
    """Enough of a signature id to recognise it and to give to `triage show` as a prefix."""
    return sig if len(sig) <= 15 else sig[:15]


def _duration(hours: float | None, digits: int = 3) -> str:
    if hours is None or math.isinf(hours):
        return "inf"
    sec = hours * 3600
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if sec >= size:
            return f"{sec / size:.{digits}g} {unit}"
    return f"{sec:.2g} s"


def _mtbf(r) -> str:
    """MTBF in wall time where GPU-hours are known, else in steps of the whole job."""
    if r.mtbf_hours is not None:
        iv = r.mtbf_hours
        return f"{_duration(iv.value)} [{_duration(iv.lower, 2)}, {_duration(iv.upper, 2)}]"
    if r.mtbf_steps is not None:
        return _interval(r.mtbf_steps)
    return "-"


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and (math.isinf(x) or math.isnan(x))):
        return "inf" if x is not None and math.isinf(x) else "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 10 ** digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def _interval(iv) -> str:
    if iv is None:
        return "-"
    hi = _fmt(iv.upper, 2) if iv.upper is not None else "inf"
    return f"{_fmt(iv.value)} [{_fmt(iv.lower, 2)}, {hi}]"


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders of ONE run (launch attempt).")],
    run: Annotated[Optional[str], typer.Option("--run", help="Name of this run (default: from triage-run.yaml, else folder name + hash).")] = None,
    label: Annotated[Optional[list[str]], typer.Option("--label", help="key=value, repeatable (seed, version, mitigation, anything).")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Scanner worker processes.")] = None,
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """Scan one run's logs and store it in the case (idempotent: the same files add nothing)."""
    with handle_errors():
        from triage.case.ingest import ingest_run
        from triage.case.meta import parse_labels
        labels = parse_labels(label)
        with _open(case, create=True) as store:
            if want_progress(json):
                with err.status(f"ingesting {len(paths)} path(s)"):
                    res = ingest_run(store, paths, run=run, labels=labels, jobs=jobs)
            else:
                res = ingest_run(store, paths, run=run, labels=labels, jobs=jobs)
            for w in res.warnings:
                warn(w)
            if json:
                print_json({"schema": "triage.ingest/1", "case": str(store.path), **res.to_json()})
            elif res.created:
                state = "failed" if res.failed else "clean"
                out.print(f"run {res.run!r} added to {store.path} ({state}, {res.occurrences} "
                          f"occurrence(s), {res.signatures} signature(s), {res.new_signatures} new, "
                          f"{res.gpu_steps} GPU-steps)", soft_wrap=True, markup=False)
            else:
                out.print(f"already in the case as run {res.run!r}: nothing added",
                          soft_wrap=True, markup=False)


def runs(case: CaseOpt = None, json: JsonOpt = False) -> None:
    """List the runs in the case with their metadata and exposure."""
    with handle_errors():
        with _open(case) as store:
            rows = store.runs()
            incidents = {i.run_id: i for i in store.incidents()}
            if json:
                print_json({"schema": "triage.runs/1", "runs": [
                    {**r.to_json(), "root_cause": incidents[r.id].root.to_json()
                     if r.id in incidents else None} for r in rows]})
                return
            t = Table(title=f"{len(rows)} run(s) in {store.path.name}", title_justify="left")
            for col in ("run", "world", "steps", "GPU-steps", "labels", "outcome"):
                t.add_column(col, justify="right" if col in ("world", "steps", "GPU-steps") else "left")
            for r in rows:
                inc = incidents.get(r.id)
                outcome = (f"{inc.root.family} rank {inc.root.rank} step {inc.root.step}"
                           if inc else "clean")
                add_plain_row(t, r.name, str(r.world_size or "-"), str(r.steps_completed
                          if r.steps_completed is not None else "-"), str(r.gpu_steps),
                          " ".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "-", outcome)
            out.print(t)


def signatures(case: CaseOpt = None, json: JsonOpt = False) -> None:
    """List every signature in the case: how many runs, as root cause, on which ranks/hosts."""
    with handle_errors():
        with _open(case) as store:
            sigs = sorted(store.signatures(), key=lambda s: (-s.root_runs, -s.runs, s.id))
            if json:
                print_json({"schema": "triage.signatures/1", "signatures": [s.to_json() for s in sigs]})
                return
            t = Table(title=f"{len(sigs)} signature(s)", title_justify="left")
            for col in ("signature", "family", "runs", "root", "hosts", "template"):
                t.add_column(col, justify="right" if col in ("runs", "root", "hosts") else "left",
                             overflow="fold" if col == "template" else "ellipsis",
                             no_wrap=col in ("signature", "family"))
            for s in sigs:
                add_plain_row(t, _short(s.id), s.family, str(s.runs), str(s.root_runs),
                          str(len(s.hosts)), s.template)
            out.print(t)


def show(
    signature: Annotated[str, typer.Argument(help="Signature id or a unique prefix of it.")],
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """Every occurrence of one signature: run, rank, host, step, verbatim line with file:line."""
    with handle_errors():
        with _open(case) as store:
            sig = store.signature(signature)
            occs = store.occurrences(signature=sig.id)
            if json:
                print_json({"schema": "triage.show/1", "signature": sig.to_json(),
                            "occurrences": [o.to_json() for o in occs]})
                return
            out.print(f"{sig.id}  {sig.family}  ({sig.runs} run(s), root cause in {sig.root_runs})")
            out.print(f"  {safe_text(sig.template)}", markup=False)
            shown: tuple = ()
            for o in occs:
                out.print(f"\n{safe_text(o.run)}  rank {o.rank if o.rank is not None else '?'}  "
                          f"host {safe_text(o.host or '?')}  "
                          f"step {o.step if o.step is not None else '?'}  {o.role}", markup=False)
                out.print(safe_text(f"  {o.path}:{o.line}: {o.message}"), markup=False,
                          soft_wrap=True)
                if o.frames and o.frames == shown:
                    out.print("  (the same stack as above)", markup=False)
                elif o.frames:
                    shown = o.frames
                    for line in stack_lines(o.frames):
                        out.print(safe_text(f"  {line}"), markup=False, soft_wrap=True)


def timeline(
    run: Annotated[Optional[str], typer.Option("--run", help="Draw one run rank by rank (default: every run).")] = None,
    all_failures: Annotated[bool, typer.Option("--all", help="Case view: mark symptoms too, not only root causes.")] = False,
    width: Annotated[int, typer.Option("--width", min=10, max=400, help="Columns for the step axis.")] = 60,
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """A rank-by-step picture of where each run failed (X root cause, x symptom, o independent)."""
    with handle_errors():
        from triage.case.timeline import build_timeline
        with _open(case) as store:
            tl = build_timeline(store, run, roots_only=not all_failures)
            if json:
                print_json(tl.to_json())
                return
            title = f"run {tl.run}: ranks by step" if tl.run else "runs by step"
            t = Table(title=f"{title} (0 .. {tl.max_step}; - progress, X root cause, "
                      "x symptom, o independent)", title_justify="left")
            t.add_column("run" if tl.run is None else "rank")
            if tl.run is not None:
                t.add_column("host")
            t.add_column("steps", justify="right")
            t.add_column("0" + " " * (width - 1 - len(str(tl.max_step))) + str(tl.max_step),
                         no_wrap=True)
            t.add_column("failure")
            for row in tl.rows:
                first = next((m for m in row.marks if m.role == "root"), row.marks[0] if row.marks else None)
                what = (f"{first.family} @ {first.step if first.step is not None else '?'}"
                        + (f" rank {first.rank}" if tl.run is None and first.rank is not None else "")
                        if first else "")
                cells = [row.label] + ([row.host or "?"] if tl.run is not None else [])
                cells += [str(row.steps) if row.steps is not None else "?",
                          row.cells(width, tl.max_step), what]
                add_plain_row(t, *cells)
            out.print(t)


def rates(
    at_gpus: Annotated[Optional[int], typer.Option("--at-gpus", min=1, help="Project the mean time between failures at this many GPUs.")] = None,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999, help="Interval level.")] = 0.95,
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """Per signature: occurrences per million GPU-steps (and per GPU-hour) with exact intervals."""
    with handle_errors():
        from triage.analyze.rates import rates_for_case
        with _open(case) as store:
            rep = rates_for_case(store, at_gpus=at_gpus, confidence=confidence)
            if json:
                print_json(rep.to_json())
                return
            hours = f", {_fmt(rep.gpu_hours)} GPU-hours over {rep.timed_runs} timed run(s)" \
                if rep.gpu_hours else ""
            out.print(f"{rep.runs} run(s), {rep.failed_runs} failed, {rep.gpu_steps} GPU-steps{hours}; "
                      f"{round(rep.confidence * 100, 1):g}% exact Poisson intervals")
            t = Table(title_justify="left")
            cols = ["signature", "family", "events", "per 1M GPU-steps [interval]"]
            if rep.gpu_hours:
                cols.append("per GPU-hour [interval]")
            if at_gpus:
                unit = "wall time" if rep.gpu_hours else "steps"
                cols.append(f"MTBF at {at_gpus:,} GPUs ({unit})")
            for c in cols:
                t.add_column(c, justify="left" if c in ("signature", "family") else "right",
                             no_wrap=c in ("signature", "family", "events"))
            for r in ([rep.any_failure] if rep.any_failure else []) + list(rep.rates):
                cells = [_short(r.signature) if r.signature != "*" else "(any)", r.family,
                         str(r.events), _interval(r.per_million_steps)]
                if rep.gpu_hours:
                    cells.append(_interval(r.per_gpu_hour))
                if at_gpus:
                    cells.append(_mtbf(r))
                add_plain_row(t, *cells)
            out.print(t)


def suspects(
    signature: Annotated[Optional[str], typer.Argument(help="Only this signature (id or prefix).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0001, max=0.5, help="Family-wise error level (Holm).")] = 0.05,
    show_all: Annotated[bool, typer.Option("--all", help="Show every test, not only the 20 strongest.")] = False,
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """Hosts and ranks where a signature concentrates beyond what their exposure explains."""
    with handle_errors():
        from triage.analyze.suspects import suspects_for_case
        with _open(case) as store:
            rep = suspects_for_case(store, alpha=alpha, signature=signature)
            if json:
                print_json(rep.to_json())
                return
            out.print("events: runs where the signature was the root cause or an independent failure")
            v = Table(title_justify="left")
            for c in ("signature", "family", "events", "hosts", "verdict", "suspects"):
                v.add_column(c, justify="right" if c in ("events", "hosts") else "left")
            for x in rep.verdicts:
                add_plain_row(v, _short(x.signature), x.family, str(x.events), str(x.distinct_hosts),
                          x.verdict, ", ".join(x.suspects) or "-")
            out.print(v)
            tests = rep.tests if show_all else [t for t in rep.tests if t.observed > 0][:20]
            out.print(f"p = P(K >= observed | spread by exposure), exact Poisson-binomial; Holm over "
                      f"{rep.hypotheses.get('host', 0)} host and {rep.hypotheses.get('rank', 0)} "
                      f"rank tests; alpha {rep.alpha:g}")
            t = Table(title_justify="left")
            for c in ("signature", "kind", "unit", "observed", "expected", "p", "p (Holm)", "suspect"):
                t.add_column(c, justify="left" if c in ("signature", "kind", "unit") else "right")
            for x in tests:
                add_plain_row(t, _short(x.signature), x.kind, x.unit, str(x.observed),
                          f"{x.expected:.2f}", _fmt(x.p_value), _fmt(x.p_adjusted),
                          "yes" if x.suspect else "no")
            out.print(t)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("runs")(runs)
    app.command("signatures")(signatures)
    app.command("show")(show)
    app.command("timeline")(timeline)
    app.command("rates")(rates)
    app.command("suspects")(suspects)
