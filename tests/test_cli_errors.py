"""Error lines on a terminal: what the error quotes (a path, a log line, a regex) is shown as
it is, never read as rich markup."""

import io

import pytest
import typer
from rich.console import Console

import triage.cli.common as common
from triage.errors import InputError


def test_error_text_on_a_terminal_is_not_markup(monkeypatch):
    term = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=300,
                   highlight=False)
    monkeypatch.setattr(common, "err", term)
    with pytest.raises(typer.Exit):
        with common.handle_errors():
            raise InputError("no file matches [red]x[/red] or [A-Za-z]+Error:",
                             where="/logs/[rank0]/x.log", hint="check [bold]it[/bold]")
    shown = term.file.getvalue()
    for literal in ("/logs/[rank0]/x.log", "[red]x[/red]", "[A-Za-z]+Error:", "[bold]it[/bold]"):
        assert literal in shown, shown
