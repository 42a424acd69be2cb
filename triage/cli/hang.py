"""`triage hang PATH...`: the rank that is behind or off-script, and the collective where.

Thin: one library call (`triage.analyze.hang.analyze_paths`), then either the `triage.hang/1`
JSON object (`--json`) or a short text answer: the verdict, the collective, why, and one line
per rank. Warnings (a refused or damaged dump) go to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from triage.cli.common import handle_errors, print_json, safe_lines, warn


def format_verdict(v) -> str:
    """The text answer (deterministic: ranks sorted, fixed columns)."""
    lines = []
    if v.verdict == "culprit":
        who = ", ".join(str(r) for r in v.culprits)
        hosts = f" on {', '.join(v.hosts)}" if v.hosts else ""
        lines.append(f"culprit: rank{'s' if len(v.culprits) > 1 else ''} {who}{hosts}")
    else:
        lines.append(f"verdict: {v.verdict}")
    if v.process_group is not None or v.seq is not None or v.op:
        at = []
        if v.process_group is not None:
            at.append(f"process group {v.process_group}")
        if v.seq is not None:
            at.append(f"collective #{v.seq}")
        if v.op:
            at.append(v.op)
        lines.append("at: " + ", ".join(at))
    lines.append(f"why: {v.why}")
    if v.ranks:
        width = max([5] + [len(s.shape or "-") for s in v.ranks.values()])
        hwidth = max([4] + [len(s.host or "-") for s in v.ranks.values()])
        show_where = any(s.where for s in v.ranks.values())
        lines.append("")
        lines.append((f"{'rank':>6}  {'state':<11} {'last seq':>8}  {'op':<15} "
                      f"{'shape':<{width}}  {'host':<{hwidth}}"
                      + ("  where" if show_where else "")).rstrip())
        for r in sorted(v.ranks):
            s = v.ranks[r]
            seq = "-" if s.last_seq is None else str(s.last_seq)
            row = (f"{r:>6}  {s.state:<11} {seq:>8}  {s.op or '-':<15} "
                   f"{s.shape or '-':<{width}}  {s.host or '-':<{hwidth}}")
            if show_where:
                row += f"  {s.where or '-'}"
            lines.append(row.rstrip())
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("hang")
    def hang(
        paths: List[Path] = typer.Argument(
            ..., help="A run folder, rank logs and/or flight-recorder dumps (any mix)."),
        world_size: Optional[int] = typer.Option(
            None, "--world-size", min=1,
            help="Ranks in the job, when no log shows them all (finds silent ranks)."),
        json_out: bool = typer.Option(False, "--json", help="Print one triage.hang/1 object."),
    ) -> None:
        """Name the rank (and host) that hangs or is off-script, and the collective."""
        with handle_errors():
            from triage.analyze.hang import analyze_paths  # noqa: PLC0415

            verdict = analyze_paths(list(paths), world_size=world_size)
            for w in verdict.warnings:
                warn(w)
            if json_out:
                print_json(verdict.to_json())
            else:
                typer.echo(safe_lines(format_verdict(verdict)), nl=False)
