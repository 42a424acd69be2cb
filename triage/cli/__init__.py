"""The `triage` command line: argument parsing and rendering only, no analysis logic.

Every command group lives in its own module of this package and exposes `register(app)`;
modules are discovered here so that command groups can be added without touching this file.
Library code never imports typer or rich; `TriageError` becomes one line on stderr and the exit
code of its kind (see triage/errors.py). Tracebacks are for bugs only, and only with
TRIAGE_DEBUG=1.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from triage.errors import EXIT_INTERNAL, TriageError

app = typer.Typer(
    name="triage",
    help="Distributed-training bug triage: from training logs to the root cause.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_SKIP = {"common"}
# Help lists the first-response commands first; modules not named here follow alphabetically.
_ORDER = ["scan", "hang", "demo", "report", "case", "hypotheses", "bisect", "diverge", "playbooks"]


def _register_all() -> None:
    mods = sorted(pkgutil.iter_modules(__path__), key=lambda m: (
        _ORDER.index(m.name) if m.name in _ORDER else len(_ORDER), m.name))
    for mod in mods:
        if mod.name.startswith("_") or mod.name in _SKIP:
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="triage", standalone_mode=True)
    except TriageError as exc:  # raised outside a command body (rare)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # stdout closed early (`| head`) outside a command body
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(141)
    except SystemExit:
        raise
    except BaseException as exc:  # a bug in triage: short message, traceback only on request
        if os.environ.get("TRIAGE_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set TRIAGE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
