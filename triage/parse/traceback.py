"""Python tracebacks and torch C++ traces, assembled per rank.

The scanner finds the *exception line* ("ValueError: bad label 17") with a rule, then calls
`frames_backward` with that rank's earlier lines, newest first (lines of other ranks are already
filtered out by their launcher tag, so interleaved ranks do not mix). It collects
`File "...", line N, in f` frames up to `Traceback (most recent call last):` and stops at the
first line that cannot belong to a traceback. Chained exceptions ("The above exception was the
direct cause of the following exception:", "During handling of the above exception, another
exception occurred:") are reported with `chained=True`: the exception line is then a consequence
of an earlier one on the same rank.

torch's C++ traces ("Exception raised from <fn> at <file>:<line> (most recent call first):" then
"frame #0: ...") follow the message; `cpp_origin` reads the origin line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from triage.records import Frame

_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"]{1,1000})", line (?P<line>\d+)(?:, in (?P<fn>.{1,300}))?')
_CPP_ORIGIN_RE = re.compile(r"Exception raised from (?P<fn>\S+) at (?P<file>[^:\s]+):(?P<line>\d+)")
_CHAIN_MARKERS = ("The above exception was the direct cause", "During handling of the above exception")
MAX_TRACE_LINES = 400


@dataclass(frozen=True)
class TraceInfo:
    frames: tuple[Frame, ...]  # outermost first, innermost last
    found: bool  # a "Traceback (most recent call last):" header was reached
    chained: bool


def frames_backward(lines_newest_first: Iterable[str]) -> TraceInfo:
    frames: list[Frame] = []
    for n, line in enumerate(lines_newest_first):
        if n >= MAX_TRACE_LINES:
            break
        s = line.strip()
        if not s:
            continue
        if s.startswith("Traceback (most recent call last)"):
            return TraceInfo(tuple(reversed(frames)), True, False)
        m = _FRAME_RE.match(line)
        if m:
            frames.append(Frame(m.group("file"), (m.group("fn") or "").strip(), int(m.group("line"))))
            continue
        if line[:1] in (" ", "\t") or set(s) <= set("^~ "):
            continue  # source line or caret marker under a frame
        if frames and any(s.startswith(mk) for mk in _CHAIN_MARKERS):
            return TraceInfo(tuple(reversed(frames)), False, True)
        break
    return TraceInfo(tuple(reversed(frames)), False, False)


def chained_before(lines_newest_first: Iterable[str]) -> bool:
    """True when the traceback that ends here follows a chain marker (same rank)."""
    seen_header = False
    for n, line in enumerate(lines_newest_first):
        if n >= MAX_TRACE_LINES:
            return False
        s = line.strip()
        if not s:
            continue
        if s.startswith("Traceback (most recent call last)"):
            seen_header = True
            continue
        if seen_header:
            return any(s.startswith(mk) for mk in _CHAIN_MARKERS)
    return False


def frames_from_callstack(text: str) -> tuple[Frame, ...]:
    out = []
    for line in text.splitlines()[:MAX_TRACE_LINES]:
        m = _FRAME_RE.match(line)
        if m:
            out.append(Frame(m.group("file"), (m.group("fn") or "").strip(), int(m.group("line"))))
    return tuple(out)


def cpp_origin(text: str) -> Frame | None:
    m = _CPP_ORIGIN_RE.search(text)
    if not m:
        return None
    return Frame(m.group("file"), m.group("fn"), int(m.group("line")))
