"""torch elastic's failure summaries and error files.

When a worker fails, torchrun's agent prints a summary (and `@record` writes `error.json`):

    torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
    ============================================================
    train.py FAILED
    ------------------------------------------------------------
    Failures:
    [1]:
      time      : 2026-11-23_01:02:03
      host      : node-1
      rank      : 3 (local_rank: 3)
      exitcode  : -9 (pid: 1234)
      error_file: <N/A>
      traceback : Signal 9 (SIGKILL) received by PID 1234
    ------------------------------------------------------------
    Root Cause (first observed failure):
    [0]:
      time      : ...

(format: torch/distributed/elastic/multiprocessing/errors/__init__.py, `ChildFailedError.format_msg`
and `_format_failure`). The `exitcode` line is the trigger (`EXIT_PREFILTER`); `parse_block`
reads the fields above it. Elastic's "Root Cause" is the earliest of whole-second timestamps on one
node: it is evidence, never the verdict (a hung rank SIGTERMed by the agent often loses to a rank
that merely timed out).

Error files (`TORCHELASTIC_ERROR_FILE`, `.../attempt_N/RANK/error.json`):
    {"message": {"message": "ValueError: ...", "extraInfo": {"py_callstack": "...",
                 "timestamp": "1795394401"}}}
or, for a failure recorded without a Python exception, {"message": "...", ...}.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass

EXIT_PREFILTER: tuple[str, ...] = (r"exitcode\s*:\s*-?[0-9]+",)

_EXIT_RE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
_FIELD_RE = re.compile(r"^\s*(time|host|rank|local_rank)\s*:\s*(.*?)\s*$")
_RANK_RE = re.compile(r"^(\d+)")
_BLOCK_START_RE = re.compile(r"^\s*\[\d+\]:\s*$|Failures:|Root Cause|^\s*-{10,}|^\s*={10,}")

SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
           8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int
    rank: int | None
    host: str | None
    time: str | None  # as printed: 2026-11-23_01:02:03
    root_cause: bool  # listed under elastic's "Root Cause (first observed failure)"


def exit_code_of(message: str) -> int | None:
    m = _EXIT_RE.match(message)
    return int(m.group(1)) if m else None


def parse_block(message: str, lines_before: list[str]) -> ExitRecord | None:
    """The exit record that `message` (its `exitcode`, `traceback` or `error_file` line) belongs
    to; `lines_before` go backwards from it."""
    code = exit_code_of(message)
    fields: dict[str, str] = {}
    root = False
    for i, line in enumerate(lines_before[:12]):
        if code is None:
            code = exit_code_of(line)
            if code is not None:
                continue
        m = _FIELD_RE.match(line)
        if m:
            fields.setdefault(m.group(1), m.group(2))
            continue
        if _BLOCK_START_RE.search(line):
            # the "Root Cause" header stands right above this block's "[0]:" line
            for above in lines_before[i:i + 3]:
                if "Root Cause" in above:
                    root = True
            break
    if code is None:
        return None
    rank = None
    if "rank" in fields:
        m = _RANK_RE.match(fields["rank"])
        rank = int(m.group(1)) if m else None
    host = fields.get("host") or None
    return ExitRecord(code, rank, host, fields.get("time") or None, root)


def describe_exit(code: int) -> str:
    if code < 0 and -code in SIGNALS:
        return f"exit {code} ({SIGNALS[-code]})"
    return f"exit {code}"


@dataclass(frozen=True)
class ErrorFile:
    message: str  # the exception line(s)
    line: int  # 1-based line of the "message" key in the file
    time: str | None  # ISO 8601 UTC
    time_key: float | None
    callstack: str | None


def parse_error_file(text: str) -> ErrorFile | None:
    """An elastic error file, or None when `text` is not one. Never raises."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or "message" not in data:
        return None
    msg = data["message"]
    extra: dict = {}
    if isinstance(msg, dict):
        extra = msg.get("extraInfo") if isinstance(msg.get("extraInfo"), dict) else {}
        msg = msg.get("message")
    if not isinstance(msg, str) or not msg.strip():
        return None
    ts = extra.get("timestamp")
    iso = key = None
    try:
        if ts is not None:
            key = float(ts)
            iso = _dt.datetime.fromtimestamp(key, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        iso = key = None
    idx = text.find('"message"')
    line = text.count("\n", 0, idx) + 1 if idx >= 0 else 1
    stack = extra.get("py_callstack")
    return ErrorFile(msg, line, iso, key, stack if isinstance(stack, str) else None)
