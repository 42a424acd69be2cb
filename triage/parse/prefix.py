"""Launcher prefixes: which rank (and host) a console line belongs to.

Distributed launchers tag every line of an interleaved console with its origin:

    [rank3]: ...                 torch (TORCH_LOGS / c10d error prefixes)
    [default3]: ...              torchrun --tee  ([<role><local_rank>]:)
    3: ...                       srun -l / --label (right-aligned task id)
    [1,3]<stderr>: ...           mpirun --tag-output ([jobid,rank]<stream>:)
    node-7: [rank3]: ...         pdsh/clush host prefix in front of one of the above
    > [rank3]: ...               the same line quoted in a chat or an issue tracker

`split_prefix` peels these off one line and returns (rank, host, offset of the message). It
never raises, whatever the text, and returns the whole line (offset 0, rank None) when no prefix
is recognised. `find_record_starts` finds further bracketed prefixes *inside* a line, where
copies through terminals flattened several records onto one line or spliced two ranks' output.

Limits: `[default3]` carries the *local* rank; on a single node it is the global one, on many
nodes it is not, and nothing in the line says which. A bare `3: ` is only taken as an srun label
at the very start of a line, followed by a space, with at most 6 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Terminal escape sequences (ECMA-48), removed from log text before it is parsed or shown:
# OSC (`ESC ] ... BEL` or `... ESC \\`: titles, hyperlinks), DCS/SOS/PM/APC strings, CSI
# (colours, cursor moves), the two-character escapes (`ESC c` resets a terminal), and a lone ESC.
# An unterminated string runs to the next ESC or the end of the text.
ANSI_RE = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b\[[0-9;?:<=>]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]"
    r"|\x1b"
)

# One bracketed origin tag. Group "rank" is the rank number.
_BRACKET = (
    r"\[(?:rank|Rank|RANK)\s?(?P<r1>\d{1,7})\]:"  # [rank3]:
    r"|\[(?P<role>[A-Za-z_][A-Za-z0-9_-]{0,31}?)(?P<r2>\d{1,7})\]:"  # [default3]: / [trainer3]:
    r"|\[\d{1,9},(?P<r3>\d{1,7})\]<(?:stdout|stderr)>:"  # [1,3]<stderr>:
)
_LEAD_RE = re.compile(
    r"(?:>[ \t]?)*[ \t]*"  # quote markers, indentation
    r"(?:(?P<host>[A-Za-z][A-Za-z0-9_.-]{0,62}):[ \t]+(?=\[|\d{1,6}:[ \t]))?"  # host: before a tag
    r"(?:" + _BRACKET + r"|(?P<r4>\d{1,6}):(?=[ \t]))"
)
_INNER_RE = re.compile(_BRACKET)
_QUOTE_RE = re.compile(r"(?:>[ \t]?)+")


@dataclass(frozen=True)
class Prefix:
    rank: int | None
    host: str | None
    offset: int  # where the message starts in the line
    tag: str  # the prefix text as it appears (used to find the same rank's earlier lines)


NO_PREFIX = Prefix(None, None, 0, "")


# The common tags as one bytes pattern, for the scanner's fast path over raw lines.
RANK_TAG_BYTES_RE = re.compile(
    rb"[ \t]*(?:\[(?:rank|Rank|RANK)?\s?(\d{1,7})\]:(?:\[(?:rank|Rank)(\d{1,7})\]:)?"
    rb"|\[[A-Za-z_][A-Za-z0-9_-]{0,31}?(\d{1,7})\]:(?:\[(?:rank|Rank)(\d{1,7})\]:)?"
    rb"|\[\d{1,9},(\d{1,7})\]<(?:stdout|stderr)>:|(\d{1,6}):[ \t])"
)


def rank_of_bytes(buf, start: int, end: int) -> int | None:
    """The rank tag at buf[start:], like split_prefix(...).rank for the common tags; no copy."""
    m = RANK_TAG_BYTES_RE.match(buf, start, end)
    if m is None:
        return None
    g = m.groups()
    # [defaultN]:[rankM]: -> the global rank M
    for v in (g[1], g[3], g[0], g[2], g[4], g[5]):
        if v is not None:
            return int(v)
    return None


def strip_ansi(text: str) -> str:
    if "\x1b" not in text:
        return text
    return ANSI_RE.sub("", text)


def _rank_span(m: re.Match) -> tuple[int, int] | None:
    for g in ("r1", "r2", "r3", "r4"):
        if m.start(g) >= 0:
            return m.span(g)
    return None


def prefix_spans(line: str) -> tuple:
    """split_prefix as spans: (rank span or None, host span or None, message offset, tag start,
    tag end). Every pattern here is digit-blind (triage.parse.blind, tested), so a line and its
    digit-masked copy give the same spans."""
    m = _LEAD_RE.match(line)
    if m is None:
        q = _QUOTE_RE.match(line)
        return (None, None, q.end() if q else 0, 0, 0)
    rank = _rank_span(m)
    end = m.end()
    # torchrun --tee in front of torch's own [rankN]: prefix: "[default3]:[rank3]: ..."
    m2 = _INNER_RE.match(line, end)
    if m2 is not None:
        inner = _rank_span(m2)
        if m.start("r2") >= 0 and inner is not None:
            rank = inner  # [rankN] is the global rank; [defaultN] only the local one
        end = m2.end()
    host = m.span("host") if m.group("host") else None
    tag_start = host[0] if host else _tag_start(m)
    if end < len(line) and line[end] == " ":
        end += 1
    return (rank, host, end, tag_start, m.end())


def split_prefix(line: str) -> Prefix:
    """Peel launcher prefixes off one line (ANSI codes already stripped)."""
    rank, host, end, ts, te = prefix_spans(line)
    if te == 0:
        return Prefix(None, None, end, "") if end else NO_PREFIX
    return Prefix(int(line[rank[0]:rank[1]]) if rank else None,
                  line[host[0]:host[1]] if host else None, end, line[ts:te])


def _tag_start(m: re.Match) -> int:
    for g in ("r1", "r2", "r3", "r4"):
        if m.group(g) is not None:
            # walk back to the opening bracket (or the digits for srun labels)
            s = m.start(g)
            text = m.string
            while s > m.start() and text[s - 1] not in "[ \t>":
                s -= 1
            if s > m.start() and text[s - 1] == "[":
                s -= 1
            return s
    return m.start()


def find_record_starts(line: str, start: int = 1) -> list[int]:
    """Offsets (after `start`) where another bracketed rank tag begins inside the line."""
    return [m.start() for m in _INNER_RE.finditer(line, start)]
