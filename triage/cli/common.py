"""Helpers shared by the command modules: error translation, JSON output, consoles.

`run_command` wraps a command body so that a `TriageError` becomes one line on stderr and the
exit code of its kind, and any other exception becomes a short internal-error line (traceback
only with TRIAGE_DEBUG=1). `want_progress` says whether a progress bar may be drawn: only on a
terminal, never with --json.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape

from triage.errors import EXIT_INTERNAL, TriageError
from triage.jsonout import write_json


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 when the reader of stdout went away; triage leaves as every other
        # command does then (141, as a shell reports SIGPIPE), quietly.
        self.quiet = True
        stdout_closed()


# Results go to stdout; progress, warnings and errors go to stderr.
out = _Stdout(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _flush_stdout() -> None:
    """Flush what the command printed while a broken pipe can still be told apart: a piped
    stdout is block-buffered, so a short output meets a gone reader only when it is flushed,
    which would otherwise be at exit, after this handler, where click turns it into exit 1."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()
    except (OSError, ValueError):
        pass


@contextmanager
def handle_errors() -> Iterator[None]:
    try:
        yield
        _flush_stdout()
    except TriageError as exc:
        err.print(f"[bold red]error:[/] {escape(safe_text(str(exc)))}", markup=True, highlight=False,
                  soft_wrap=True) \
            if err.is_terminal else print(f"error: {safe_text(str(exc))}", file=sys.stderr)
        raise typer.Exit(exc.exit_code)
    except typer.Exit:
        _flush_stdout()  # a command that answered with a non-zero status (no culprit found)
        raise
    except (typer.Abort, KeyboardInterrupt):
        raise
    except BrokenPipeError:  # `triage ... | head`: the reader has all it wanted
        stdout_closed()
    except Exception as exc:  # a bug in triage
        if os.environ.get("TRIAGE_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set TRIAGE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        raise typer.Exit(EXIT_INTERNAL)


EXIT_PIPE = 141  # what a shell reports for a command killed by SIGPIPE (cat, grep)


def stack_lines(frames, limit: int = 8, short: bool = False) -> list[str]:
    """A traceback's frames as Python prints them (outermost first, the raise site last), the
    innermost `limit` of them; `short`: files by their last two path parts."""
    out = []
    if len(frames) > limit:
        out.append(f"... {len(frames) - limit} outer frame(s)")
    for f in frames[-limit:]:
        file = f.file
        if short and file.count("/") > 2:
            file = ".../" + "/".join(file.rsplit("/", 2)[-2:])
        where = f"{file}:{f.line}" if f.line is not None else file
        out.append(f"at {where} in {f.function}")
    return out


def stdout_closed() -> None:
    """Leave quietly when the reader of stdout went away: no traceback, no second error when
    Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise typer.Exit(EXIT_PIPE)


def print_json(obj: Any) -> None:
    """One JSON object on stdout, nothing else."""
    # json.dumps(indent=2) text, written in pieces as it is encoded, never held whole (a scan
    # of 100,000 ranks is megabytes of JSON): triage.jsonout is the same text, several times
    # faster than the standard library's indenting encoder.
    out = sys.stdout
    write_json(obj, out)
    out.write("\n")
    out.flush()


def want_progress(json_mode: bool) -> bool:
    return (not json_mode) and sys.stderr.isatty() and not os.environ.get("CI")


def warn(message: str) -> None:
    """One warning line on stderr; a path or log text in it cannot drive the terminal."""
    print(f"warning: {safe_text(message)}", file=sys.stderr)


def rank_ranges(ranks, limit: int = 12) -> str:
    """[0,1,2,3,7,9,10] -> '0-3,7,9-10' (at most `limit` ranges, then '… (N ranks)')."""
    rs = sorted(set(r for r in ranks if r is not None))
    if not rs:
        return "-"
    parts = []
    start = prev = rs[0]
    for r in rs[1:]:
        if r == prev + 1:
            prev = r
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = r
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    if len(parts) > limit:
        return ",".join(parts[:limit]) + f",… ({len(rs)} ranks)"
    return ",".join(parts)


def safe_text(text: str) -> str:
    """Log text for a terminal: control characters shown, never interpreted."""
    return "".join(ch if ch >= " " or ch == "\t" else "\ufffd" for ch in text)


def safe_lines(text: str) -> str:
    """`safe_text` line by line: newlines kept, every other control character shown as \ufffd."""
    return "\n".join(safe_text(line) for line in text.split("\n"))


def add_plain_row(table, *cells) -> None:
    """A table row whose str cells are shown as they are: rich would read `[red]`, `[link=...]`
    or `[enforce fail at x.cc:456]` in a log-derived cell as markup (styling it, making it a
    hyperlink, or dropping it). Non-str cells (already renderables) pass through."""
    from rich.text import Text

    table.add_row(*(Text(safe_text(c)) if isinstance(c, str) else c for c in cells))


def playbook_dirs_option(dirs: list | None) -> list[str]:
    return [str(d) for d in (dirs or [])]
