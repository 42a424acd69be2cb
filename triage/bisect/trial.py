"""Running one trial: the user's command at one point of an axis, and what its outcome was.

This is the only module of triage that starts the user's processes.

Command templates
- The template is split with `shlex` once, when the bisection starts. Each resulting argument
  is then rendered on its own: the placeholders `{step}`, `{seed}`, `{ranks}`, `{hosts}` and
  `{value}` are replaced inside that argument by plain string replacement. Nothing is ever
  passed through a shell and a substituted value is never split again, so a value such as
  `1; rm -rf /` or `$(touch x)` reaches the program as one literal argument. No other brace
  syntax is interpreted (not `str.format`: no attribute or index lookups).
- The point is also exported to the trial's environment as TRIAGE_BISECT_<NAME> (e.g.
  TRIAGE_BISECT_STEP=120), for commands that prefer environment variables.

Processes
- Each trial runs in a new session (`start_new_session=True`), hence its own process group,
  with stdin closed and stdout+stderr captured into one file of the session folder. On timeout
  the whole group gets SIGTERM, then SIGKILL after a grace period; after a normal exit any
  process left in the group is killed too, so no trial outlives its turn. Ctrl-C kills the
  running group before the interrupt propagates.

Outcomes (see outcome.py): exit 0 GOOD, 125 SKIP, anything else (a signal, a timeout) BAD;
with a signature, a failure is BAD only if the scanner finds that signature in the captured
output, else UNRELATED. A command that cannot be started at all is ERROR.

Signatures: `signature_matches` is the one place that decides. A signature given as `sig1:...`
(or a prefix of at least 8 characters of one) must be among the ids the scan found; a family
name (`nonfinite`, `collective_timeout`, ...) matches any failure of that family.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from triage.bisect.outcome import Outcome, outcome_from_exit
from triage.errors import TrialError, UsageError
from triage.records import FAMILIES

PLACEHOLDERS = ("step", "seed", "ranks", "hosts", "value")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
KILL_GRACE_S = 5.0
_ACTIVE: set[int] = set()  # process groups of running trials (kill_all on Ctrl-C)
_ACTIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Template:
    """A command template, split once into arguments."""

    text: str
    argv: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Template":
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise UsageError(f"cannot split the command template: {exc}", where="--cmd",
                             hint="quote it as for a POSIX shell, e.g. --cmd 'python train.py "
                             "--step {step}'") from None
        if not argv:
            raise UsageError("the command template is empty", where="--cmd",
                             hint="give the command that runs one trial, e.g. --cmd './repro.sh {step}'")
        return cls(text, argv)

    def uses(self, name: str) -> bool:
        return any(f"{{{name}}}" in arg for arg in self.argv)

    def placeholders(self) -> set[str]:
        return {m.group(1) for arg in self.argv for m in _PLACEHOLDER.finditer(arg)}

    def require(self, *names: str) -> None:
        """Refuse a template that uses none of `names`: every trial would run the same command."""
        if not any(self.uses(n) for n in names):
            wanted = " or ".join("{" + n + "}" for n in names)
            raise UsageError(f"the command template never uses {wanted}", where="--cmd",
                             hint=f"put {wanted} where the command takes that value")

    def render(self, point: Mapping[str, str]) -> list[str]:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in point:
                raise UsageError(f"the template uses {{{name}}} but this bisection has no {name}",
                                 where="--cmd", hint=f"remove {{{name}}} from the template")
            return str(point[name])

        return [_PLACEHOLDER.sub(sub, arg) for arg in self.argv]


@dataclass(frozen=True)
class TrialSpec:
    """How to run trials: the same for every trial of one bisection."""

    template: Template
    timeout: float | None = None  # seconds; None: no limit
    signature: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawRun:
    exit_code: int | None
    seconds: float
    timed_out: bool
    error: str | None = None  # could not start


def run_command(argv: Sequence[str], output: Path, *, timeout: float | None = None,
                cwd: str | None = None, env: Mapping[str, str] | None = None) -> RawRun:
    """Run argv in its own process group, output to `output`; kill the group on timeout."""
    output.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.monotonic()
    with open(output, "wb") as fh:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=cwd, env=full_env)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            msg = f"cannot run {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}"
            fh.write((msg + "\n").encode())
            return RawRun(None, time.monotonic() - t0, False, msg)
        timed_out = False
        with _ACTIVE_LOCK:
            _ACTIVE.add(proc.pid)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:  # Ctrl-C: the trial must not outlive us
            _kill_group(proc)
            raise
        finally:
            _reap_group(proc.pid)
            with _ACTIVE_LOCK:
                _ACTIVE.discard(proc.pid)
    code = proc.returncode
    return RawRun(None if timed_out else code, time.monotonic() - t0, timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def kill_all() -> None:
    """Kill every running trial's process group (the session calls this on Ctrl-C)."""
    with _ACTIVE_LOCK:
        groups = list(_ACTIVE)
    for pgid in groups:
        _reap_group(pgid)


def _reap_group(pgid: int) -> None:
    """Kill whatever the trial left running in its group (a backgrounded child)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def signature_matches(wanted: str, output: Path) -> tuple[bool, tuple[str, ...]]:
    """Whether the scanner finds `wanted` in the output; also every signature id it found."""
    from triage.scan import scan  # the lead's scanner; imported here, the one place that asks it

    result = scan([str(output)])
    ids = tuple(sorted({s.id for s in result.signatures}))
    families = {f.family for f in result.failures}
    if wanted in FAMILIES:
        return wanted in families, ids
    if len(wanted) >= 8 and any(i == wanted or i.startswith(wanted) for i in ids):
        return True, ids
    return False, ids


def check_signature(sig: str | None) -> None:
    if sig is None:
        return
    if sig in FAMILIES or (sig.startswith("sig") and len(sig) >= 8):
        return
    raise UsageError(f"{sig!r} is neither a signature id nor a failure family", where="--signature",
                     hint="use an id from `triage scan --json` (sig1:...) or a family such as "
                     "nonfinite")


def classify(raw: RawRun, output: Path, signature: str | None) -> tuple[Outcome, tuple[str, ...], str | None]:
    """The outcome of one finished command: (outcome, signatures seen, note)."""
    if raw.error is not None:
        return Outcome.ERROR, (), raw.error
    note = "timed out" if raw.timed_out else None
    outcome = Outcome.BAD if raw.timed_out else outcome_from_exit(raw.exit_code)
    if outcome is not Outcome.BAD or signature is None:
        return outcome, (), note
    try:
        found, ids = signature_matches(signature, output)
    except Exception as exc:  # a scan that fails must not lose the trial; say why instead
        return Outcome.UNRELATED, (), f"scan failed: {type(exc).__name__}: {exc}"
    if found:
        return Outcome.BAD, ids, note
    return Outcome.UNRELATED, ids, (note + "; " if note else "") + "signature not found"


def run_trial(spec: TrialSpec, point: Mapping[str, str], output: Path) -> tuple[RawRun, Outcome, tuple[str, ...], str | None]:
    """Render, run and classify one trial. Never raises for a failing command."""
    argv = spec.template.render(point)
    env = dict(spec.env)
    for name, value in point.items():
        env[f"TRIAGE_BISECT_{name.upper()}"] = str(value)
    raw = run_command(argv, output, timeout=spec.timeout, cwd=spec.cwd, env=env)
    outcome, sigs, note = classify(raw, output, spec.signature)
    return raw, outcome, sigs, note


def not_runnable(note: str | None) -> TrialError:
    return TrialError(f"the trial command could not run: {note}", where="--cmd",
                      hint="check the program path and that it is executable")
