"""`triage playbooks list | show ID | check [DIR] | test [DIR]`: inspect and test the rules.

Thin: each command loads the playbook library (triage.classify.playbook), calls one function
and renders. `render_rule` is also what `triage scan` uses to print a rule's advice, so a rule
reads the same wherever it is shown. Output is plain fixed-format text (stable for golden
tests); `--json` prints one object instead.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable, List, Optional

import typer

from triage.classify.playbook import (
    ExampleResult,
    Playbook,
    PlaybookErrors,
    Rule,
    check_examples,
    load_playbooks,
    require_rule_ids,
)
from triage.cli.common import handle_errors, print_json
from triage.errors import EXIT_BAD, PlaybookError

playbooks_app = typer.Typer(
    name="playbooks",
    help="List, show, validate and test the failure playbooks (YAML rules).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PlaybooksOpt = typer.Option(
    None, "--playbooks", "-p", metavar="DIR",
    help="Extra playbook directory or file (repeatable; also TRIAGE_PLAYBOOKS).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object instead of text.")
WIDTH = 100


def register(app: typer.Typer) -> None:
    app.add_typer(playbooks_app, name="playbooks")


def display_path(path: str) -> str:
    """A path relative to the working directory when it is below it, else as given."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first if first is not None else indent,
                         subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [first or indent]


def render_advice(rule: Rule) -> str:
    """Why this failure happens and what to do next: the part of a rule `triage scan` prints."""
    lines = [f"{rule.title}  [{rule.id}]"]
    lines.append("  likely causes:")
    for c in rule.causes:
        lines += _wrap(c.text, "      ", f"    - ({c.category.replace('_', ' ')}) ")
    lines.append("  next steps:")
    for i, step in enumerate(rule.next_steps, 1):
        lines += _wrap(step, "       ", f"    {i}. ")
    if rule.references:
        lines.append("  references:")
        lines += [f"    {ref}" for ref in rule.references]
    return "\n".join(lines)


def render_rule(rule: Rule, *, examples: bool = True) -> str:
    """The whole rule, for `triage playbooks show`."""
    lines = [
        f"{rule.id}: {rule.title}",
        f"  family: {rule.family}   role: {rule.role}   severity: {rule.severity}   "
        f"priority: {rule.priority}" + ("   (overrides an earlier rule)" if rule.override else ""),
        f"  defined at {display_path(rule.path)}:{rule.line}",
        "  match" + (" (ignore case)" if rule.ignore_case else "") + ":",
    ]
    for part in ("any", "all", "none"):
        for pat in getattr(rule, part):
            lines.append(f"    {part + ':':5} {pat}")
    lines += render_advice(rule).splitlines()[1:]
    if examples:
        lines.append("  examples:")
        lines += [f"    + {e}" for e in rule.examples_match]
        lines += [f"    - {e}" for e in rule.examples_no_match]
    return "\n".join(lines)


def _load(playbooks: Optional[List[Path]], builtin: bool = True) -> Playbook:
    return load_playbooks(playbooks or (), builtin=builtin)


@playbooks_app.command("list")
def list_cmd(
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only this family."),
    playbooks: Optional[List[Path]] = PlaybooksOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List the loaded rules: id, family, role, severity, priority and title."""
    with handle_errors():
        pb = _load(playbooks)
        rules = [r for r in pb.rules if family is None or r.family == family]
        if json_out:
            print_json({"schema": "triage.playbooks/1", "rules": [
                {"id": r.id, "title": r.title, "family": r.family, "role": r.role,
                 "severity": r.severity, "priority": r.priority,
                 "path": r.path, "line": r.line} for r in rules]})
            return
        width = max([len(r.id) for r in rules] + [2])
        fam = max([len(r.family) for r in rules] + [6])
        print(f"{'ID':{width}}  {'FAMILY':{fam}}  {'ROLE':7}  {'SEVERITY':8}  PRIO  TITLE")
        for r in rules:
            print(f"{r.id:{width}}  {r.family:{fam}}  {r.role:7}  {r.severity:8}  "
                  f"{r.priority:4}  {r.title}")
        print(f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
              + (f" in family {family}" if family else "")
              + f" ({len(pb.rules)} loaded)")


@playbooks_app.command("show")
def show_cmd(
    rule_id: str = typer.Argument(..., metavar="ID", help="Rule id, e.g. nccl.watchdog_timeout."),
    playbooks: Optional[List[Path]] = PlaybooksOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show one rule: patterns, causes, next steps, references and examples."""
    with handle_errors():
        pb = _load(playbooks)
        require_rule_ids(pb, [rule_id])
        rule = pb.get(rule_id)
        if json_out:
            print_json({"schema": "triage.playbooks/1", "rule": rule.to_json()})
        else:
            print(render_rule(rule))


def _problem_json(e: PlaybookError) -> dict[str, Any]:
    return {"where": e.where, "message": e.message, "hint": e.hint}


@playbooks_app.command("check")
def check_cmd(
    directory: Optional[Path] = typer.Argument(
        None, metavar="[DIR]", help="Playbook directory or file to check (default: the loaded set)."),
    no_builtin: bool = typer.Option(False, "--no-builtin",
                                    help="Check DIR alone, without the built-in rules."),
    playbooks: Optional[List[Path]] = PlaybooksOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Validate rule files and report every problem (file, line, rule id, field)."""
    with handle_errors():
        dirs = list(playbooks or ()) + ([directory] if directory else [])
        try:
            pb = load_playbooks(dirs, builtin=not no_builtin, collect_all=True)
        except PlaybookErrors as exc:
            if json_out:
                print_json({"schema": "triage.playbooks/1", "ok": False,
                            "problems": [_problem_json(e) for e in exc.errors]})
            else:
                for e in exc.errors:
                    print(f"error: {e}", file=sys.stderr)
                print(f"{len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''} found",
                      file=sys.stderr)
            raise typer.Exit(exc.exit_code)
        files = sorted({r.path for r in pb.rules})
        if json_out:
            print_json({"schema": "triage.playbooks/1", "ok": True, "problems": [],
                        "rules": len(pb.rules), "files": len(files)})
        else:
            print(f"ok: {len(pb.rules)} rule{'s' if len(pb.rules) != 1 else ''} in "
                  f"{len(files)} file{'s' if len(files) != 1 else ''}")


def _summarise(results: Iterable[ExampleResult]) -> tuple[list[ExampleResult], list[ExampleResult]]:
    results = list(results)
    return [r for r in results if not r.ok], [r for r in results if r.shadowed_by]


@playbooks_app.command("test")
def test_cmd(
    directory: Optional[Path] = typer.Argument(
        None, metavar="[DIR]", help="Also load this playbook directory or file."),
    rule: Optional[List[str]] = typer.Option(None, "--rule", "-r", help="Only this rule (repeatable)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on shadowed examples too."),
    playbooks: Optional[List[Path]] = PlaybooksOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run every rule's examples and report failures and rules shadowed by others.

    A positive example must pass the rule's prefilter, match the rule and be classified into
    its family; a negative example must not match its rule. A positive won by another rule of
    the same family is reported as shadowed (an error with --strict).
    """
    with handle_errors():
        dirs = list(playbooks or ()) + ([directory] if directory else [])
        pb = load_playbooks(dirs)
        if rule:
            require_rule_ids(pb, rule)
        if directory and not rule:
            target = Path(directory).resolve()
            ids = [r.id for r in pb.rules
                   if Path(r.path).resolve() == target or target in Path(r.path).resolve().parents]
        else:
            ids = rule or None
        results = check_examples(pb, ids)
        failures, shadowed = _summarise(results)
        rules_run = len({r.rule for r in results})
        bad = bool(failures) or (strict and bool(shadowed))
        if json_out:
            print_json({"schema": "triage.playbooks/1", "ok": not bad, "rules": rules_run,
                        "examples": len(results), "failures": [r.to_json() for r in failures],
                        "shadowed": [r.to_json() for r in shadowed]})
        else:
            for r in failures:
                print(f"FAIL {r.rule} {r.kind}[{r.index}]: {r.problem}")
                print(f"     {r.text}")
            for r in shadowed:
                print(f"SHADOWED {r.rule} match[{r.index}]: won by {r.shadowed_by} "
                      f"(raise this rule's priority or narrow the other)")
                print(f"     {r.text}")
            print(f"{len(results)} example{'s' if len(results) != 1 else ''} of {rules_run} "
                  f"rule{'s' if rules_run != 1 else ''}: {len(failures)} failed, "
                  f"{len(shadowed)} shadowed")
        if bad:
            raise typer.Exit(EXIT_BAD)
