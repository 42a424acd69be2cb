"""Verbatim log excerpts for the report's appendix: the lines around each failure, with file:line.

Design
- One pass per input file, whatever the number of excerpts taken from it: the wanted line
  ranges are gathered first, then the file is read once, line by line, and left as soon as the
  last wanted line has been seen (a 1 GB log is not read to its end for an excerpt at line 40).
- Text is decoded as UTF-8 with replacement: a log is untrusted bytes, and the report must
  still be written when it is damaged. Lines longer than `MAX_LINE` characters are cut with a
  visible marker, so a megabyte line (a dumped tensor) cannot swamp the page.
- `.gz` inputs are read through gzip. Inputs that cannot be re-read (stdin, a file that has
  moved since the scan) fall back to the failure line itself, which the scan kept verbatim;
  the excerpt then says so in its title rather than failing the report.

- Interleaved consoles: when the failure line carries a launcher tag (`[default2]:`,
  `[rank2]:`, `2: `, see triage.parse.prefix), the context is that rank's own lines only,
  looked for within `WINDOW` lines around it; every line keeps its real number, so the gaps
  show, and the title says which tag was kept.

Limits: the line numbers are those of the file as it is now; a log rewritten after the scan
gives other lines (the failure line is checked against the message and the excerpt falls back
when they differ).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from triage.parse.prefix import split_prefix
from triage.records import SourceRef
from triage.report.model import Excerpt

MAX_LINE = 400
CUT_MARK = " [… line cut]"
BEFORE = 10  # context lines before the failure line (tracebacks come before the error)
AFTER = 3
WINDOW = 300  # lines searched on each side for the same rank's context in an interleaved log


@dataclass(frozen=True)
class ExcerptRequest:
    title: str
    source: SourceRef
    message: str  # the verbatim failure line, used to check the file and as the fallback


def _cut(line: str) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + CUT_MARK


def _open_text(path: str) -> IO[str]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the TextIOWrapper
    if path.endswith(".gz"):
        raw = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _read_ranges(path: str, ranges: list[tuple[int, int]]) -> dict[int, str] | None:
    """Lines of `path` whose numbers fall in any of `ranges` (inclusive, 1-based)."""
    wanted_last = max(hi for _, hi in ranges)
    found: dict[int, str] = {}
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if number > wanted_last:
                    break
                if any(lo <= number <= hi for lo, hi in ranges):
                    found[number] = _cut(line)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return found


def read_excerpts(requests: Iterable[ExcerptRequest], *, before: int = BEFORE,
                  after: int = AFTER) -> tuple[Excerpt, ...]:
    """One `Excerpt` per request, in request order."""
    requests = list(requests)
    by_path: dict[str, list[tuple[int, int]]] = {}
    for req in requests:
        lo = max(1, req.source.line - max(before, WINDOW))
        by_path.setdefault(req.source.path, []).append((lo, req.source.line + max(after, WINDOW)))
    texts: dict[str, dict[int, str] | None] = {}
    for path, ranges in by_path.items():
        texts[path] = _read_ranges(path, ranges) if Path(path).is_file() else None

    out = []
    for req in requests:
        lines = texts.get(req.source.path)
        line_no = req.source.line
        if lines and line_no in lines and _same_line(lines[line_no], req.message):
            tag = split_prefix(lines[line_no]).tag
            if tag:
                numbers = _same_tag(lines, line_no, tag, before, after)
                title = f"{req.title} (lines tagged {tag.strip()} only)"
            else:
                numbers = [n for n in range(max(1, line_no - before), line_no + after + 1)
                           if n in lines]
                title = req.title
            out.append(Excerpt(title=title, source=req.source, first_line=numbers[0],
                               lines=tuple(lines[n] for n in numbers),
                               numbers=tuple(numbers)))
        else:
            out.append(Excerpt(title=f"{req.title} (the input could not be re-read; "
                                     "the line as scanned)",
                               source=req.source, first_line=line_no,
                               lines=(_cut(req.message),)))
    return tuple(out)


def _same_tag(lines: dict[int, str], line_no: int, tag: str, before: int,
              after: int) -> list[int]:
    """Numbers of the lines around `line_no` that carry the same launcher tag."""
    key = tag.strip()
    prior = [n for n in range(line_no - 1, max(0, line_no - WINDOW) - 1, -1)
             if n in lines and lines[n].lstrip().startswith(key)][:before]
    later = [n for n in range(line_no + 1, line_no + WINDOW + 1)
             if n in lines and lines[n].lstrip().startswith(key)][:after]
    return sorted(prior) + [line_no] + later


def _same_line(line: str, message: str) -> bool:
    """The file still has the scanned line (the scanner may have trimmed whitespace)."""
    a, b = line.strip(), _cut(message).strip()
    return a == b or (bool(b) and (b in a or a in b))
