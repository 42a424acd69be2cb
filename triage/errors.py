"""Errors a user can act on.

Library code raises a `TriageError` (or a subclass) for every problem caused by input: a missing
path, a malformed option, an invalid playbook, a corrupt case file. The CLI turns it into one line
on stderr (`error: <where>: <what> (hint: <what next>)`) and the exit code of its kind. Anything
else escaping is a bug in triage, reported as such with a short message, never a traceback
unless TRIAGE_DEBUG=1.

Exit codes (documented in the README):
  0  success (for scan: the scan ran, whether or not failures were found)
  1  the command ran and its answer is "bad" (bisect found nothing, a check failed)
  2  usage error: bad option or argument
  3  input error: a path missing or unreadable, nothing readable at all
  4  playbook error: invalid rule file
  5  case error: corrupt, locked or newer-schema case file
  6  trial/command error (bisect could not run the command)
  70 internal error (a bug in triage)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_PLAYBOOK = 4
EXIT_CASE = 5
EXIT_TRIAL = 6
EXIT_INTERNAL = 70


class TriageError(Exception):
    """An error caused by input, with a location and a hint for what to do next."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class UsageError(TriageError):
    exit_code = EXIT_USAGE


class InputError(TriageError):
    exit_code = EXIT_INPUT


class PlaybookError(TriageError):
    exit_code = EXIT_PLAYBOOK


class CaseError(TriageError):
    exit_code = EXIT_CASE


class TrialError(TriageError):
    exit_code = EXIT_TRIAL
