"""RE2 searches without the per-call overhead of the `re2` module's Python wrapper.

`re2.compile(...).search(text)` on a str encodes the text, maps byte offsets back to characters
and builds a Match object in Python: about 25 microseconds per call, ten times the search itself.
Rules run once per candidate line, so on 100,000 small files that overhead dominated the scan.
`FastRegex` runs the same compiled RE2 program on UTF-8 bytes through the module's own binding and
returns only what callers use (did it match; the named groups as str). Same engine, same
guarantees (linear time, no backtracking); where the binding is not there (another version of
the module) it falls back to the public API with identical results.
"""

from __future__ import annotations

from typing import Any

import re2

_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


class FastRegex:
    __slots__ = ("public", "_rx", "_names")

    def __init__(self, compiled: Any):
        self.public = compiled  # the re2 module's object (for pickling and the fallback)
        rx = getattr(compiled, "_regexp", None)
        if rx is None or _UNANCHORED is None or not hasattr(rx, "Match"):
            self._rx = None
            self._names: tuple = ()
        else:
            self._rx = rx
            self._names = tuple((name.decode("utf-8") if isinstance(name, bytes) else name, idx)
                                for name, idx in rx.NamedCapturingGroups())

    def groups(self, data: bytes) -> dict[str, str] | None:
        """None if the pattern does not match the UTF-8 `data`; else the named groups that
        took part in the match (decoded, invalid bytes replaced)."""
        if self._rx is None:
            m = self.public.search(data.decode("utf-8", "replace"))
            if m is None:
                return None
            return {k: v for k, v in m.groupdict().items() if v is not None}
        got = self.spans(data)
        if got is None:
            return None
        return {name: data[s:e].decode("utf-8", "replace") for name, s, e in got}

    @property
    def native(self) -> bool:
        return self._rx is not None

    def spans(self, data: bytes) -> list[tuple[str, int, int]] | None:
        """`groups` as byte spans of `data`: [(name, start, end)] in the same order, or None.
        Only where the binding is there (`native`)."""
        rx = self._rx
        spans = rx.Match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        return [(name, spans[idx][0], spans[idx][1]) for name, idx in self._names
                if spans[idx][0] >= 0]

    def matches(self, data: bytes, pos: int = 0, endpos: int | None = None) -> bool:
        """Whether the pattern matches somewhere in data[pos:endpos]."""
        endpos = len(data) if endpos is None else endpos
        rx = self._rx
        if rx is None:
            if isinstance(data, (bytes, bytearray, memoryview)) and \
                    isinstance(self.public.pattern, (bytes, bytearray)):
                return self.public.search(data, pos, endpos) is not None
            return self.public.search(bytes(data[pos:endpos]).decode("utf-8", "replace")) is not None
        return rx.Match(_UNANCHORED, data, pos, endpos)[0][0] >= 0
