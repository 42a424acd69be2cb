"""Every command has help and is documented in the README; library code never imports the CLI."""

from __future__ import annotations

import ast
import pathlib
import re

from typer.testing import CliRunner

from triage.cli import app

ROOT = pathlib.Path(__file__).resolve().parent.parent
runner = CliRunner()


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        yield name, cmd
        for sub in getattr(cmd, "commands", {}) or {}:
            yield f"{name} {sub}", cmd.commands[sub]


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [n for n, _ in _commands()]
    assert {"scan", "hang", "demo", "report", "ingest", "hypotheses", "bisect", "playbooks"} <= set(names)
    for name, cmd in _commands():
        assert (cmd.help or "").strip(), f"`triage {name}` has no help text"
        res = runner.invoke(app, [*name.split(), "--help"])
        assert res.exit_code == 0, (name, res.output)
        top = name.split()[0]
        assert re.search(rf"`triage {re.escape(top)}\b|`{re.escape(top)}`", readme), \
            f"`triage {top}` is not in README.md"


def test_library_never_imports_typer_or_rich():
    offenders = []
    for path in (ROOT / "triage").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "triage").parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            if any(m.split(".")[0] in ("typer", "rich", "click") for m in mods):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"library modules import the CLI toolkit: {sorted(set(offenders))}"
