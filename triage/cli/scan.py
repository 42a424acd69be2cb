"""`triage scan PATH...`: the root cause of a failed run, its symptoms and what to do next."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from triage.cli.common import (err, handle_errors, out, print_json, rank_ranges, safe_text,
                               stack_lines, want_progress, warn)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_cmd)


def scan_cmd(
    paths: List[str] = typer.Argument(..., help="Log files, directories, globs, .gz files, or - for stdin."),
    json_out: bool = typer.Option(False, "--json", help="Print the triage.scan/1 JSON object only."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes (default: all cores)."),
    playbooks: Optional[List[Path]] = typer.Option(None, "--playbooks", help="Extra playbook directory (repeatable); also TRIAGE_PLAYBOOKS."),
    dask_scheduler: Optional[str] = typer.Option(None, "--dask-scheduler", help="Scan on a Dask cluster (tcp://host:8786)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Prefilter: hyperscan or re2 (default: the fastest installed)."),
) -> None:
    """Find what failed first, where and why, and which failures are only its symptoms."""
    from triage.errors import UsageError
    from triage.scan import scan

    with handle_errors():
        if backend not in (None, "hyperscan", "re2"):
            raise UsageError(f"unknown backend {backend!r}", where="--backend", hint="use hyperscan or re2")
        progress_cb, finish = _progress(want_progress(json_out))
        try:
            result = scan(paths, playbook_dirs=[str(p) for p in playbooks or []], jobs=jobs,
                          progress=progress_cb, dask_scheduler=dask_scheduler, backend=backend)
        finally:
            finish()
        # What the scan built (an object per rank and signature, 100,000s of them) lives until
        # the process exits: out of the cyclic collector's sight, which would otherwise walk
        # all of it again each time the output's own allocations set it off (a third of a
        # second on 100,000 files).
        gc.freeze()
        for w in result.warnings:
            warn(w)
        if json_out:
            print_json(result.to_json(rows=True))
        else:
            from triage.scan import cached_playbook

            render(result, playbook=cached_playbook([str(p) for p in playbooks or []]))


def _progress(enabled: bool):
    if not enabled:
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    prog = Progress("scanning", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=err, transient=True)
    task = None

    def cb(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            prog.start()
            task = prog.add_task("scan", total=total or None)
        prog.update(task, completed=done)

    def finish() -> None:
        if task is not None:
            prog.stop()

    return cb, finish


def render(result, console=None, playbook=None) -> None:
    console = console or out
    st = result.stats
    nranks = len(result.ranks)
    console.print(
        f"Scanned {len(result.inputs)} input(s): {st.lines:,} lines, {st.bytes / 1e6:,.1f} MB "
        f"in {st.seconds:.2f} s; {nranks} rank(s) seen"
        + (f", world size {result.world_size}" if result.world_size else "")
        + (f", last step {result.max_step}" if result.max_step is not None else ""))
    rc = result.root_cause
    if rc is None:
        console.print(Panel("No failure found.", title="Root cause", border_style="green"))
        return
    console.print(root_panel(rc, playbook))
    console.print(signature_table(result))
    if result.hang is not None and getattr(result.hang, "verdict", None) not in (None, "no_hang"):
        h = result.hang
        console.print(Text(f"Hang analysis: {h.verdict}; culprits {rank_ranges(h.culprits)}; {safe_text(h.why)}"))


def root_panel(rc, playbook=None) -> Panel:
    from triage.errors import PlaybookError
    from triage.scan import cached_playbook

    where = [f"rank {rc.rank}" if rc.rank is not None else "rank unknown"]
    if rc.host:
        where.append(f"host {rc.host}")
    if rc.step is not None:
        where.append(f"step {rc.step}")
    if rc.time:
        where.append(rc.time)
    message = [Text(safe_text(rc.message), style="bold")]
    probe = (rc.fields or {}).get("probe")
    if probe:  # a divergence read from probe records: say it, then quote the record (shortened)
        f = rc.fields
        who = (f"rank(s) {f['odd_ranks']} hold other parameters than rank(s) {f['majority']}"
               if f.get("odd_ranks") else f"checksum groups {f.get('groups', '')}")
        record = rc.message if len(rc.message) <= 160 else rc.message[:159] + "…"
        message = [Text(safe_text(f"probe records, step {f.get('step')}: {who}"), style="bold"),
                   Text(safe_text(record), style="dim")]
    body = [
        Text.assemble((rc.family, "bold red"), "  " + ", ".join(where)),
        *message,
        Text(f"{rc.source.path}:{rc.source.line}", style="cyan"),
        *[Text(safe_text("  " + line), style="cyan")
          for line in stack_lines(rc.frames, 3, short=True)],  # where it was raised
        Text("why: " + safe_text(rc.why), style="dim"),
    ]
    rule = None
    if rc.playbook:
        try:
            rule = (playbook or cached_playbook()).get(rc.playbook)
        except PlaybookError:
            rule = None
    if rule is not None:
        body.append(Text(f"playbook {rule.id}: {rule.title}", style="bold"))
        for c in rule.causes[:4]:
            body.append(Text(f"  cause ({c.category}): {c.text}"))
        for s in rule.next_steps[:5]:
            body.append(Text(f"  next: {s}", style="green"))
    return Panel(Group(*body), title="Root cause", border_style="red")


def signature_table(result, width: int | None = None) -> Table:
    """The signatures, one row each; the template column takes what the terminal leaves."""
    width = width or out.width
    roles = {f.signature: f.role for f in result.failures}
    fixed = [("signature", 17), ("role", 11), ("family", 18), ("count", 5), ("ranks", 9)]
    if any(s.hosts for s in result.signatures):
        fixed.append(("hosts", 14))
    fixed.append(("step", 6))
    while True:
        left = width - sum(w for _, w in fixed) - 3 * (len(fixed) + 1) - 1
        if left >= 24 or len(fixed) <= 3:
            break
        drop = next((c for c in ("hosts", "step", "family", "count") if c in dict(fixed)), None)
        if drop is None:
            break
        fixed = [(c, w) for c, w in fixed if c != drop]
    t = Table(title="Signatures", expand=False)
    for col, w in fixed:
        t.add_column(col, no_wrap=True, overflow="ellipsis", width=w,
                     justify="right" if col in ("count", "step") else "left")
    t.add_column("template", no_wrap=True, overflow="ellipsis", width=max(left, 12))
    for s in result.signatures:
        values = {"signature": s.id, "role": roles.get(s.id, ""), "family": s.family,
                  "count": str(s.count), "ranks": rank_ranges(s.ranks, 3),
                  "hosts": ", ".join(s.hosts[:2]) + ("…" if len(s.hosts) > 2 else ""),
                  "step": "" if s.first_step is None else str(s.first_step)}
        cells = [values[c] for c, _ in fixed] + [s.template[:300]]
        t.add_row(*(Text(safe_text(c)) for c in cells))  # Text: log text is never markup
    return t
