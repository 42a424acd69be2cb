"""`triage diverge DIR`: the first step where ranks disagree or a value goes non-finite."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from triage.cli.common import add_plain_row, handle_errors, out, print_json, rank_ranges, warn


def register(app: typer.Typer) -> None:
    app.command("diverge")(diverge_cmd)


def diverge_cmd(
    paths: List[Path] = typer.Argument(..., help="One run's probe directory (or its rank*.jsonl files)."),
    window: int = typer.Option(2, "--window", "-w", help="Steps of context either side of the first bad step."),
    json_out: bool = typer.Option(False, "--json", help="Print the triage.diverge/1 JSON object only."),
) -> None:
    """Find the first step where ranks' parameters differ bitwise or a value goes non-finite."""
    from triage.analyze.diverge import find_divergence

    with handle_errors():
        result = find_divergence(paths, window=window)
        for w in result.warnings:
            warn(w)
        if json_out:
            print_json(result.to_json())
        else:
            render(result)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if value == value and abs(value) != float("inf") else str(value)


def render(result, console: Console | None = None) -> None:
    console = console or out
    span = ("no steps" if result.first_step is None
            else f"steps {result.first_step}-{result.last_step_seen}")
    console.print(f"Probe records: {result.records} from {len(result.inputs)} file(s); "
                  f"ranks {rank_ranges(result.ranks)}"
                  + (f" of {result.world_size}" if result.world_size else "") + f", {span}",
                  markup=False, soft_wrap=True)
    console.print(result.headline(), markup=False, soft_wrap=True)
    if result.first_bad_step is not None:
        other = []
        if result.first_mismatch_step not in (None, result.first_bad_step):
            other.append(f"first checksum mismatch at step {result.first_mismatch_step}")
        if result.first_nonfinite_step not in (None, result.first_bad_step):
            other.append(f"first non-finite value at step {result.first_nonfinite_step}")
        if other:
            console.print("  then: " + "; ".join(other), markup=False, soft_wrap=True)
    if result.probe_reported is not None:
        pr = result.probe_reported
        console.print(f"  the probe's cross-rank check reported it at step {pr.step} "
                      f"(odd rank(s) {rank_ranges(pr.odd_ranks)})", markup=False, soft_wrap=True)
    stopped = sorted({s for s in result.last_step.values()})
    if len(stopped) > 1:
        console.print("  ranks stopped at different steps: " + ", ".join(
            f"rank {r} at {s}" for r, s in sorted(result.last_step.items())), markup=False, soft_wrap=True)
    if not result.window:
        return
    title = ("Records around step " + str(result.first_bad_step) if result.first_bad_step is not None
             else "Last records")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
    for col, justify in (("step", "right"), ("rank", "right"), ("loss", "right"),
                         ("grad norm", "right"), ("checksum", "left"), ("non-finite l/g/p", "right"),
                         ("", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    bad = set(result.bad_ranks)
    for rec in result.window:
        flag = "<-" if rec.step == result.first_bad_step and rec.rank in bad else ""
        add_plain_row(table, str(rec.step), str(rec.rank), _fmt(rec.loss), _fmt(rec.grad_norm),
                      (rec.checksum or "-")[:15], "/".join(str(n) for n in rec.nonfinite), flag)
    console.print(table)
