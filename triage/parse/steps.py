"""Training-step lines: which step a rank had reached.

Recognised trainer formats (searched anywhere in the message):

    iteration      100/  500000 | ...          Megatron-LM
    step=100, skipped=0, lr=...                 DeepSpeed (also global_step=100)

Not steps: Slurm's job steps (`STEP 48213.0`), decimals (`step 0.5`).
    step 100 | loss 2.31 / Step: 100 / [step 100]   generic trainers, torchtitan
    iter 100 / iteration 100                    generic
    45/100 [00:10<00:12, 4.5it/s, loss=2.3]     tqdm bars (HF Trainer, Lightning)

`STEP_PREFILTER` are the same shapes as plain patterns for the scanner's multi-pattern
prefilter (no groups, RE2/Hyperscan syntax); `parse_step(text)` does the exact parse. The
prefilter is a superset: a candidate that `parse_step` rejects costs one regex call.
"""

from __future__ import annotations

import re

_STEP_RES = (
    re.compile(r"\biteration\s+(\d{1,12})\s*/\s*\d+"),
    re.compile(r"\b(?:global_step|step|Step|iter|iteration|Iteration)\s*(?:[=:]\s*|\s+)(\d{1,12})\b(?![.,]\d)"),
    re.compile(r"(?:^|[\s|])(\d{1,12})/\d{1,12} \[\d"),
)

STEP_PREFILTER: tuple[str, ...] = (
    r"iteration\s+[0-9]+\s*/",
    r"(?:global_step|[Ss]tep|iter|[Ii]teration)\s*(?:[=:]\s*|\s+)[0-9]",
    r"[0-9]/[0-9]+ \[[0-9]",
)


# The same shapes as one bytes pattern, for the scanner's fast path over raw step lines.
STEP_BYTES_RE = re.compile(
    rb"\biteration\s+(\d{1,12})\s*/\s*\d+"
    rb"|\b(?:global_step|step|Step|iter|iteration|Iteration)\s*(?:[=:]\s*|\s+)(\d{1,12})\b(?![.,]\d)"
    rb"|(?:^|[\s|])(\d{1,12})/\d{1,12} \[\d"
)


def parse_step_bytes(buf, start: int, end: int) -> int | None:
    """parse_step on buf[start:end] without decoding or copying (bytes or bytearray)."""
    m = STEP_BYTES_RE.search(buf, start, end)
    if m is None:
        return None
    return int(m.group(1) or m.group(2) or m.group(3))


def parse_step(text: str) -> int | None:
    """The training step a line reports, or None."""
    span = step_span(text)
    return None if span is None else int(text[span[0]:span[1]])


def step_span(text: str) -> tuple[int, int] | None:
    """Where in `text` the step number parse_step reads is (digit-blind: the same span for
    the line with its digits masked), or None."""
    # Each shape needs its literal: "iteration N/M", a step or iter keyword (each contains
    # "tep" or "ter", at most 8 characters in: global_step), "N/M [" (the "/" at most 13 in).
    # A regex runs only on a line that has it, from just before its first occurrence (the same
    # first match: a search from `pos` still sees the characters before it for \b), first
    # shape first.
    k = text.find("iteration")
    if k >= 0 and (m := _STEP_RES[0].search(text, k)) is not None:
        return m.span(1)
    k = _first(text.find("tep"), text.find("ter"))
    if k >= 0 and (m := _STEP_RES[1].search(text, max(0, k - 8))) is not None:
        return m.span(1)
    k = text.find("/")
    if k >= 0 and (m := _STEP_RES[2].search(text, max(0, k - 13))) is not None:
        return m.span(1)
    return None


def _first(a: int, b: int) -> int:
    """The smaller of two str.find results, -1 when neither was found."""
    if a < 0:
        return b
    return a if b < 0 or a < b else b
