"""`triage demo`: real runs of a job with a rare reduction bug and a data bug, taken through
ingest, signatures, hypotheses, divergence and the report (triage.demo.pipeline)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from triage.cli.common import add_plain_row, handle_errors, out, print_json, rank_ranges


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    outdir: Path = typer.Option(Path("triage-demo"), "--out", "-o", help="Output directory (replaced if it holds an earlier demo)."),
    plan: Optional[str] = typer.Option(None, "--plan", help="Runs to make, e.g. 'custom:1,2,6 stock:1,7' (default: seeds 1-14 in both arms, 28 runs)."),
    small: bool = typer.Option(False, "--small", help="The reduced plan of the end-to-end test (seeds 1-10 in both arms, 20 runs)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps per run (default 40)."),
    json_out: bool = typer.Option(False, "--json", help="Print the triage.demo/1 summary object only."),
) -> None:
    """Run real 4-rank jobs, then find the signatures, one bug or many, the first bad step, and write the report."""
    from triage.demo.pipeline import DEFAULT_PLAN, SMALL_PLAN, SMALL_STEPS, parse_plan, run_demo

    with handle_errors():
        specs = parse_plan(plan) if plan else (SMALL_PLAN if small else DEFAULT_PLAN)
        steps = steps if steps is not None else (SMALL_STEPS if small else 40)
        result = run_demo(outdir, plan=specs, steps=steps, progress=_progress)
        if json_out:
            print_json(result.to_json())
        else:
            render(result)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(result, console: Console | None = None) -> None:
    console = console or out
    if not console.is_terminal and console.width < 120:  # piped: do not squeeze the tables
        console = Console(file=console.file, width=120, color_system=None, highlight=False)
    say = lambda text="": console.print(text, markup=False, soft_wrap=True)  # noqa: E731

    say(f"Ran {len(result.runs)} real 4-rank jobs in {result.seconds:.0f} s; outputs in {result.outdir}/")
    say()
    runs = Table(title="1. Runs: what triage found vs what was injected (rank@step)",
                 title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("run", "exit", "root cause (triage)", "first bad step", "injected (truth)"):
        runs.add_column(col, no_wrap=True)
    for r in result.runs:
        root = r.root
        found = f"{root['family']} r{_dash(root['rank'])}@{_dash(root['step'])}" if root else "-"
        add_plain_row(runs, r.spec.name, str(r.job.returncode), found, _dash(r.first_bad_step),
                     r.truth_text())
    console.print(runs)
    say()

    if result.signatures:
        sigs = Table(title="2. Signatures in the case (root causes)", title_justify="left",
                     box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for col in ("family", "runs", "ranks", "template"):
            sigs.add_column(col, no_wrap=True)
        for s in result.signatures:
            if s["root_runs"]:
                add_plain_row(sigs, s["family"], str(s["root_runs"]), rank_ranges(s["ranks"]),
                             s["template"][:64])
        console.print(sigs)
        say()

    hyp = result.hypotheses
    if hyp is not None:
        say("3. One bug or many?")
        say(f"   verdict: {hyp['verdict']}   P(one bug) = {hyp['p_one_bug']:.3f}   "
            f"best explanation: {hyp['best']['name']} (posterior {hyp['best']['posterior']:.3f})")
        for k, cause in enumerate(hyp["best"]["causes"], 1):
            labels = ", ".join(cause["labels"])
            say(f"   cause {k}: {labels} in runs {', '.join(cause['runs'])}")
            say(f"            {cause['words']}")
        for line in hyp["moved"][:3]:
            say(f"   {line}")
        say()

    div = result.diverged
    if div is not None:
        say("4. First bad step (from the probe records)")
        if div["silent"]:
            say(f"   run {div['run']} exited cleanly, but: {div['summary']}")
        else:
            say(f"   run {div['run']} crashed at step {div['crash_step']} on rank "
                f"{div['crash_rank']}, but went wrong earlier: {div['summary']}")
        if div.get("probe_reported"):
            say(f"   (the probe's periodic cross-rank check logged it at step "
                f"{div['probe_reported']['step']})")
        say(f"   see: triage diverge {div['probe']}")
        say()

    checks = result.checks
    if checks:
        verdict = checks.get("verdict") or {}
        fbs = checks.get("first_bad_step", {})
        ranks = checks.get("root_ranks", {})
        say("5. Checked against the truth (what the jobs injected; triage never reads it)")
        if ranks:
            say(f"   root cause on the rank where the fault was injected: "
                f"{sum(ranks.values())} of {len(ranks)} failed run(s)")
        if fbs:
            say(f"   first bad step = step of the first wrong sum: "
                f"{sum(fbs.values())} of {len(fbs)} run(s)")
        if verdict:
            say(f"   best explanation = what was injected (the reduction bug's "
                f"{len(verdict['reduction_signatures'])} signature(s) one cause, the data "
                f"error's another): {_yes(verdict.get('best_is_truth', False))}")
            say(f"   P(the {len(verdict['reduction_signatures'])} reduction signatures share one "
                f"cause) = {verdict['p_reduction_one_cause']:.2f}; P(the data error is a cause "
                f"of its own) = {verdict['p_data_error_separate']:.2f}")
        say()

    say("Where everything is:")
    say(f"   runs (console.log, logs/, probe/):  {result.outdir / 'runs'}/")
    if result.case:
        say(f"   case file:                          {result.case}")
        say(f"      try: triage hypotheses --case {result.case}")
    for fmt, path in sorted(result.reports.items()):
        say(f"   {'report (' + fmt + '):':<36}{path}")
    say(f"   summary (JSON):                     {result.outdir / 'demo.json'}")
    for note in result.skipped:
        say(f"   note: {note}")


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"
