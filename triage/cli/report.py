"""`triage report`: write a post-mortem (Markdown, HTML or JSON) from a scan or a whole case.

Thin: parse options, build the view-model with one library call (`triage.report.from_scan` or
`from_case`), write it with `triage.report.write_report`, print where it went. Without `-o` the
report goes to stdout (Markdown then has no figure files); with `--json` stdout carries one
JSON object describing what was written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from triage.cli.common import handle_errors, print_json, want_progress
from triage.errors import UsageError


def build(paths: list[Path], case: Path | None, progress: bool):
    """The view-model from exactly one source (library calls only)."""
    if case is not None and paths:
        raise UsageError("give either --case FILE or log paths, not both", where="triage report",
                         hint="triage report --case case.db, or triage report LOGS...")
    if case is not None:
        from triage.case import CaseStore  # noqa: PLC0415 - only this source needs it
        from triage.report import from_case  # noqa: PLC0415

        with CaseStore.open(case, create=False) as store:
            return from_case(store)
    if not paths:
        raise UsageError("nothing to report on", where="triage report",
                         hint="give log paths (files or folders) or --case FILE")
    from triage.report import from_scan  # noqa: PLC0415
    from triage.scan import scan  # noqa: PLC0415

    if progress:
        print(f"scanning {len(paths)} path(s)...", file=sys.stderr)
    return from_scan(scan([str(p) for p in paths]), paths=[str(p) for p in paths])


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        paths: Optional[List[Path]] = typer.Argument(
            None, help="Log files or folders to scan (or use --case)."),
        case: Optional[Path] = typer.Option(
            None, "--case", help="Report on a whole case file instead of scanning logs."),
        fmt: str = typer.Option("md", "--format", "-f", help="md, html or json."),
        output: Optional[str] = typer.Option(
            None, "--output", "-o",
            help="File to write (Markdown figures go beside it). Default: stdout."),
        json_out: bool = typer.Option(
            False, "--json", help="Print what was written as one JSON object."),
    ) -> None:
        """Write a post-mortem: summary, timeline, figure, signatures, suspects, excerpts."""
        with handle_errors():
            from triage.report import write_report  # noqa: PLC0415
            from triage.report.render import check_format  # noqa: PLC0415

            fmt_checked = check_format(fmt)
            to_stdout = output is None or output == "-"
            if json_out and to_stdout:
                raise UsageError("--json needs -o FILE (stdout carries the JSON)",
                                 where="--json", hint="add -o report." + fmt_checked)
            data = build(list(paths or []), case, want_progress(json_out))
            written, text = write_report(data, fmt_checked, None if to_stdout else output)
            if to_stdout:
                sys.stdout.write(text)
            elif json_out:
                print_json(written.to_json())
            else:
                extra = f" and {len(written.figures)} figure(s)" if written.figures else ""
                print(f"wrote {written.path}{extra}", file=sys.stderr)
