"""`triage hypotheses`: one bug or many, with numbers; `add`, `list`, `remove`, `next`, `log`.

Each body opens the case, calls one library function of triage.analyze.hypotheses (or
hyp_next, or the DAO in triage.case.hypotheses) and renders the result: plain fixed text for
people (deterministic, so golden files stay byte-stable), `--json` for programs (one object on
stdout). Scoring the case also appends a row to the posterior log, once per evidence state
(`--no-record` to skip).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from triage.cli.common import err, handle_errors, print_json, safe_lines, want_progress

CaseOpt = Annotated[Optional[Path], typer.Option(
    "--case", help="Case file (default: $TRIAGE_CASE, else .triage/case.db).", dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]

app = typer.Typer(help="One bug or many: hypotheses over the incidents of the case, scored.",
                  no_args_is_help=False, invoke_without_command=True)


def _open(case: Path | None):
    from triage.case import CaseStore
    return CaseStore.open(case, create=False)


def _analyse(store, json: bool, record: bool, limit: int):
    from triage.analyze.hypotheses import analyse_case
    if want_progress(json):
        with err.status("scoring hypotheses"):
            return analyse_case(store, record=record, limit=limit)
    return analyse_case(store, record=record, limit=limit)


def _log10(x: float) -> str:
    return "-inf" if x == -math.inf else f"{x:+.2f}"


def render(ledger, ev, limit: int) -> str:
    """The ledger for people: verdict, best explanation, evidence, hypotheses, signatures."""
    t = ledger.tables
    lines = [f"One bug or many: {len(t.incidents)} incidents of {len(t.signatures)} signature(s) "
             f"in {len(t.runs)} runs ({t.total_exposure:.3g} GPU-steps)",
             f"verdict: {ledger.verdict.value.replace('_', ' ')} "
             f"(P(one bug) = {ledger.p_one_bug:.3f})", ""]
    best = ledger.best
    lines.append(f"best explanation: {best.name} (posterior {best.posterior:.3f}, "
                 f"log10 Bayes factor vs one bug {_log10(ledger.bayes_factor_log10(best))})")
    for c in best.causes:
        lines.append(f"  {c.id}  {ledger.sig_list(c.signatures)}: {len(c.incidents)} incident(s) "
                     f"in {len(c.runs)} run(s)")
        lines.append(f"      {ledger.describe_cause(c)}")
        for note in ledger.mitigation_notes(c):
            lines.append(f"      {note}")
    words = ledger.moved_words()
    if words:
        lines += ["", "evidence that moved it most:"] + [f"  {w}" for w in words]
    lines += ["", "hypotheses (posterior, log10 Bayes factor vs one bug):"]
    for s in ledger.listed(limit):
        lines.append(f"  {s.posterior:7.4f}  {_log10(ledger.bayes_factor_log10(s)):>7}  "
                     f"{s.id}  {s.name}")
    con = ledger.considered
    lines.append(f"  ({con.n_considered} hypotheses considered"
                 + (", all partitions enumerated" if con.exact else ", partitions searched")
                 + ")")
    for note in con.notes:
        lines.append(f"  note: {note}")
    lines += ["", "signatures:"]
    for sig, lab in sorted(ledger.labels.items(), key=lambda kv: int(kv[1][1:])):
        n = int((t.sig_index == t.signatures.index(sig)).sum())
        title = ledger.titles.get(sig, "")
        lines.append(f"  {lab:<4} {sig}  {n} incident(s)  {title}"[:160].rstrip())
    return "\n".join(lines)


@app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    case: CaseOpt = None,
    json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Hypotheses to list.")] = 10,
    record: Annotated[bool, typer.Option("--record/--no-record",
                                         help="Append this result to the posterior log.")] = True,
) -> None:
    """Score every hypothesis over the incidents: posterior, Bayes factors, the best explanation."""
    if ctx.invoked_subcommand is not None:
        return
    with handle_errors():
        with _open(case) as store:
            ledger, ev = _analyse(store, json, record, limit)
            if json:
                print_json(ledger.to_json(limit))
            else:
                print(safe_lines(render(ledger, ev, limit)))


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="YAML file: name, note, causes (see docs/hypotheses.md).")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace a hypothesis of the same name.")] = False,
    case: CaseOpt = None,
    json: JsonOpt = False,
) -> None:
    """Add your own hypothesis (causes as signatures and conditions, claims, a note)."""
    with handle_errors():
        from triage.analyze.hyp_evidence import build_tables
        from triage.analyze.hyp_user import compile_spec, load_spec
        from triage.analyze.hypotheses import evidence_from_case
        from triage.case.hypotheses import HypothesisDAO
        spec, text = load_spec(file)
        with _open(case) as store:
            compile_spec(spec, build_tables(evidence_from_case(store)), str(file))  # check now
            stored = HypothesisDAO(store).add(spec.name, str(file), text, replace=replace)
        if json:
            print_json({"schema": "triage.hypothesis-added/1", "name": stored.name,
                        "causes": len(spec.causes)})
        else:
            print(f"hypothesis {stored.name!r} added ({len(spec.causes)} cause(s)); "
                  "score it with: triage hypotheses")


@app.command("list")
def list_(case: CaseOpt = None, json: JsonOpt = False) -> None:
    """List the user hypotheses stored in the case."""
    with handle_errors():
        from triage.case.hypotheses import HypothesisDAO
        with _open(case) as store:
            rows = HypothesisDAO(store).all()
        if json:
            print_json({"schema": "triage.hypotheses-list/1", "hypotheses": [
                {"name": h.name, "source": h.source, "added_at": h.added_at} for h in rows]})
            return
        if not rows:
            print("no user hypotheses; add one with: triage hypotheses add FILE")
        for h in rows:
            print(f"{h.name}  (from {h.source}, {h.added_at})")


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Name of the hypothesis.")],
           case: CaseOpt = None) -> None:
    """Remove a user hypothesis from the case."""
    with handle_errors():
        from triage.case.hypotheses import HypothesisDAO
        with _open(case) as store:
            HypothesisDAO(store).remove(name)
        print(f"hypothesis {name!r} removed")


@app.command("next")
def next_(
    case: CaseOpt = None,
    json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Experiments to list.")] = 5,
) -> None:
    """The experiment with the highest expected information gain about the hypotheses."""
    with handle_errors():
        from triage.analyze.hyp_next import next_experiments
        with _open(case) as store:
            ledger, _ev = _analyse(store, json, False, 10)
        exps = next_experiments(ledger, limit)
        if json:
            print_json({"schema": "triage.hypotheses-next/1", "p_one_bug": round(ledger.p_one_bug, 6),
                        "experiments": [e.to_json() for e in exps]})
            return
        print(f"P(one bug) = {ledger.p_one_bug:.3f}; best: {ledger.best.name} "
              f"({ledger.best.posterior:.3f})")
        print("experiments by expected information gain (one run of "
              f"{exps[0].gpu_steps:.3g} GPU-steps each):" if exps else "no experiment to propose")
        for k, e in enumerate(exps, 1):
            print(f"  {k}. {e.description}: {e.eig_bits:.3f} bits")
            for o in e.outcomes[:4]:
                what = "runs clean" if o.what == "clean" else \
                    f"fails with {ledger.labels.get(o.what, o.what)}"
                print(f"       {what:<22} p={o.probability:.2f}  ->  P(one bug) "
                      f"{o.p_one_bug_after:.3f}")
        print("signatures: " + ", ".join(f"{lab} = {sig}" for sig, lab in sorted(
            ledger.labels.items(), key=lambda kv: int(kv[1][1:]))))


@app.command("log")
def log(
    case: CaseOpt = None,
    json: JsonOpt = False,
    recorded: Annotated[bool, typer.Option("--recorded", help="Show the stored posterior log "
                                           "instead of replaying the runs.")] = False,
    points: Annotated[int, typer.Option("--points", min=2, help="Replay at most this many points.")] = 25,
) -> None:
    """How the posteriors moved as runs were added (replayed in ingestion order)."""
    with handle_errors():
        from triage.analyze.hypotheses import evidence_from_case, replay, stored_hypotheses
        from triage.case.hypotheses import HypothesisDAO
        with _open(case) as store:
            if recorded:
                rows = HypothesisDAO(store).log()
                if json:
                    print_json({"schema": "triage.hypotheses-log/1", "source": "recorded",
                                "points": [r.to_json() for r in rows]})
                    return
                print(f"{'at':<21}{'runs':>6}{'incidents':>10}{'P(one bug)':>12}  best")
                for r in rows:
                    print(f"{r.at:<21}{r.runs:>6}{r.incidents:>10}{r.p_one_bug:>12.3f}  "
                          f"{r.best} ({r.best_posterior:.3f})")
                return
            ev = evidence_from_case(store)
            user = stored_hypotheses(store)
        pts = replay(ev, user, points)
        if json:
            print_json({"schema": "triage.hypotheses-log/1", "source": "replay",
                        "points": [p.to_json() for p in pts]})
            return
        if not pts:
            print("no incidents yet")
            return
        print(f"{'runs':>5}  {'run':<20}{'incidents':>10}{'sigs':>6}{'P(one bug)':>12}  best")
        for p in pts:
            print(f"{p.runs:>5}  {p.run[:20]:<20}{p.incidents:>10}{p.signatures:>6}"
                  f"{p.p_one_bug:>12.3f}  {p.best} ({p.best_posterior:.3f})")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="hypotheses")
