"""Digit-blind patterns: regexes whose matching cannot tell one ASCII digit from another.

A pattern is digit-blind when every character test in it (a literal, a class, a category) gives
the same answer for all ten digits 0-9. Replace every digit of a line by `0` and such a pattern
matches the masked line exactly where it matches the line itself, with the same groups at the
same spans: each step of the match sees "a digit" in both, and `\\b` agrees too (digits are word
characters). So what a parser derives from a line's *structure* (where the prefix ends, which rule
matches, where the step number is) can be worked out once per masked line and reused for every
line of that shape; only the values read at those spans differ. 100,000 ranks' timeouts have a
handful of shapes (the numbers' lengths vary), so the scanner's per-line work runs a handful of
times (triage.scan.worker, "line plans").

`digit_blind(pattern)` answers conservatively: anything it cannot read the way the engine does
(a backreference, a conditional, a POSIX class `[[:digit:]]`, `\\p{..}`, syntax Python's parser
rejects) is "not blind", and callers then run the pattern on every line as before.
"""

from __future__ import annotations

import re
from functools import lru_cache

try:  # Python 3.11+
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

DIGITS = "0123456789"
MASK = bytes.maketrans(b"123456789", b"000000000")  # bytes.translate table: every digit -> 0

_CATEGORY_HAS_DIGITS = {
    _c.CATEGORY_DIGIT: True, _c.CATEGORY_NOT_DIGIT: False,
    _c.CATEGORY_WORD: True, _c.CATEGORY_NOT_WORD: False,
    _c.CATEGORY_SPACE: False, _c.CATEGORY_NOT_SPACE: True,
    _c.CATEGORY_LINEBREAK: False, _c.CATEGORY_NOT_LINEBREAK: True,
}
_UNSURE = ("\\p", "\\P", "\\Q", "\\C", "\\X", "(?(")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")  # RE2's [[:digit:]], which Python reads as a set


@lru_cache(maxsize=4096)
def digit_blind(pattern: str | bytes, flags: int = 0) -> bool:
    """True when `pattern` (Python `re` or RE2 syntax) treats all ten ASCII digits alike."""
    text = pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern
    if any(u in text for u in _UNSURE) or _POSIX_CLASS.search(text):
        return False
    try:
        tree = _p.parse(text, flags)
    except Exception:  # not Python syntax (an RE2-only construct): unsure
        return False
    return _blind(tree)


def _blind(items) -> bool:
    for op, av in items:
        if op is _c.LITERAL or op is _c.NOT_LITERAL:
            if chr(av) in DIGITS:
                return False
        elif op is _c.IN:
            if len({_in_set(av, d) for d in DIGITS}) != 1:
                return False
        elif op in (_c.ANY, _c.AT):
            pass
        elif op is _c.SUBPATTERN:
            if not _blind(av[-1]):
                return False
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) or op is getattr(_c, "POSSESSIVE_REPEAT", None):
            if not _blind(av[2]):
                return False
        elif op is _c.BRANCH:
            if not all(_blind(alt) for alt in av[1]):
                return False
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            if not _blind(av[1]):
                return False
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            if not _blind(av):
                return False
        else:  # GROUPREF, GROUPREF_EXISTS, anything new: the answer may depend on the digits
            return False
    return True


def _in_set(items, ch: str) -> bool:
    """Whether the class `items` (a parsed [...]) contains `ch`."""
    code = ord(ch)
    hit = False
    negate = False
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            hit = hit or av == code
        elif op is _c.RANGE:
            hit = hit or av[0] <= code <= av[1]
        elif op is _c.CATEGORY:
            has = _CATEGORY_HAS_DIGITS.get(av)
            if has is None:  # an unknown category: make the digits disagree (not blind)
                return ch == "0"
            hit = hit or has
        else:
            return ch == "0"
    return hit != negate
