"""Timestamps in the formats training logs use, to ISO 8601 and a sortable key.

Recognised (searched near the start of the message, after the launcher prefix):

    2026-11-23T01:02:03.456Z / +00:00     ISO 8601
    2026-11-23 01:02:03,456               Python logging (asctime)
    2026-11-23_01:02:03                   torch elastic failure summaries
    [2026-11-23 01:02:03.456]             bracketed (DeepSpeed, many trainers)
    E1123 01:02:03.456789 1234 file.cc:1] glog (no year)
    [I1123 01:02:03.456789123 File.cpp:1] torch C++ (no year, nanoseconds)
    Nov 23 01:02:03                       syslog / kernel (no year)

`parse_timestamp(text)` returns `Stamp(iso, key, end)` or None. `key` is seconds since the epoch
with naive times read as UTC: good for ordering events of one run, which is all it is used for.
Formats without a year take `default_year` (the caller passes the year of a dated line seen in the
same input, else of the file's modification time). `end` is where the stamp ends, so callers can
strip it from a message. Never raises.
"""

from __future__ import annotations

import calendar
import re
from typing import NamedTuple

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}

_ISO_RE = re.compile(
    r"\[?(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T _](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?\]?"
)
_GLOG_RE = re.compile(
    r"\[?(?P<lvl>[IWEF])(?P<mo>\d{2})(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
)
_SYSLOG_RE = re.compile(
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<d>\d{1,2}) "
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
)
_SEARCH_SPAN = 48  # a stamp must start within this many characters of the message start


class Stamp(NamedTuple):
    iso: str
    key: float
    end: int
    has_year: bool = True


_new_stamp = tuple.__new__  # Stamp(...) without the named tuple's Python-level __new__


_DAYS: dict[tuple[int, int, int], float | None] = {}  # (y, mo, d) -> epoch of midnight, or None


def _day(y: int, mo: int, d: int) -> float | None:
    """Seconds since the epoch at midnight of a valid date; None for an invalid one. Cached:
    a log's stamps fall on a handful of days."""
    got = _DAYS.get((y, mo, d), False)
    if got is False:
        ok = 1 <= mo <= 12 and 1970 <= y <= 2999 and 1 <= d <= calendar.monthrange(y, mo)[1]
        got = float(calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0))) if ok else None
        if len(_DAYS) > 4096:
            _DAYS.clear()
        _DAYS[(y, mo, d)] = got
    return got


_MINUTES: dict = {}  # (y, mo, d, h, mi) -> (epoch of the minute, "YYYY-MM-DDTHH:MM:"), or None


def _build(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None,
           tz: str | None, end: int, has_year: bool) -> Stamp | None:
    mk = (y, mo, d, h, mi)
    got = _MINUTES.get(mk, False)
    if got is False:
        day = _day(y, mo, d) if (0 <= h <= 23 and 0 <= mi <= 59) else None
        got = None if day is None else (day + h * 3600 + mi * 60,
                                        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:")
        if len(_MINUTES) > 65536:
            _MINUTES.clear()
        _MINUTES[mk] = got
    if got is None or not 0 <= s <= 60:
        return None
    s = min(s, 59)
    base, head = got
    key = base + s
    if frac:
        frac6 = (frac + "000000")[:6]
        iso = f"{head}{s:02d}.{frac6}"
        key += int(frac6) / 1e6
    else:
        iso = f"{head}{s:02d}"
    if not tz:
        return _new_stamp(Stamp, (iso, key, end, has_year))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        key -= offset
        iso += f"{tz[0]}{digits[:2]}:{digits[2:]}"
    else:
        iso += "Z"
    return _new_stamp(Stamp, (iso, key, end, has_year))


def parse_timestamp(text: str, default_year: int = 1970) -> Stamp | None:
    """The first timestamp near the start of `text`, or None."""
    head = text[: _SEARCH_SPAN + 40]
    if "-" in head:  # every ISO stamp has one: most lines without a date cost one `in`
        m = _ISO_RE.search(head)
        if m is not None and m.start() <= _SEARCH_SPAN:
            y, mo, d, h, mi, s, frac, tz = m.groups()
            st = _build(int(y), int(mo), int(d), int(h), int(mi), int(s), frac, tz, m.end(), True)
            if st is not None:
                return st
    if ":" not in head:  # glog and syslog stamps have "HH:MM:SS"
        return None
    m = _GLOG_RE.search(head)
    if m is not None and m.start() <= _SEARCH_SPAN:
        _lvl, mo, d, h, mi, s, frac = m.groups()
        st = _build(default_year, int(mo), int(d), int(h), int(mi), int(s), frac, None,
                    m.end(), False)
        if st is not None:
            return st
    m = _SYSLOG_RE.search(head)
    if m is not None and m.start() <= _SEARCH_SPAN:
        mon, d, h, mi, s = m.groups()
        st = _build(default_year, _MONTHS[mon.lower()], int(d), int(h), int(mi), int(s), None,
                    None, m.end(), False)
        if st is not None:
            return st
    return None


def stamp_end(text: str) -> int | None:
    """Where the first timestamp-shaped text near the start of `text` ends, valid date or not
    (the formats parse_timestamp reads, tried in its order). Digit-blind (triage.parse.blind):
    for stripping a log header, where "E0229 ..." (a glog stamp without a year, read as 1970)
    must go like any other day's."""
    head = text[: _SEARCH_SPAN + 40]
    for rx, needs in ((_ISO_RE, "-"), (_GLOG_RE, ":"), (_SYSLOG_RE, ":")):
        if needs in head:
            m = rx.search(head)
            if m is not None and m.start() <= _SEARCH_SPAN:
                return m.end()
    return None
