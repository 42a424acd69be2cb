"""Property tests for the Markdown escaping filters: whatever a log holds stays literal."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.report.render import md_cell, md_code, md_fence, md_text, rank_ranges, shorten

nasty = st.text(alphabet=st.sampled_from(list("`|<>&@*_[]()#!~\\-+.= \nab1")) |
                st.characters(), max_size=60)


def _span_content(span: str) -> str:
    """Parse one CommonMark code span back to its content (spec 6.1)."""
    m = re.fullmatch(r"(`+)(.*)\1", span, re.S)
    assert m, span
    fence, body = m.group(1), m.group(2)
    assert fence not in re.findall(r"`+", body), "a backtick run as long as the fence"
    if len(body) >= 2 and body[0] == " " and body[-1] == " " and body.strip(" "):
        body = body[1:-1]
    return body


@given(nasty)
def test_code_span_round_trips(text):
    span = md_code(text)
    flat = " ".join(text.splitlines())
    if not flat.strip():
        return
    assert _span_content(span) == flat


@given(nasty)
def test_cell_has_no_bare_pipe_and_one_line(text):
    cell = md_cell(text)
    assert "\n" not in cell
    assert not re.search(r"(?<!\\)\|", cell)


@given(nasty)
def test_text_has_no_markup_characters(text):
    out = md_text(text)
    assert "\n" not in out
    assert "<" not in out and ">" not in out.replace("&gt;", "")
    assert "@" not in out
    for ch in "`*_[]|~":
        assert not re.search(r"(?<!\\)" + re.escape(ch), out), ch


@given(st.lists(nasty, max_size=5))
def test_fence_is_never_closed_by_its_body(lines):
    block = md_fence(lines)
    first, *body, last = block.split("\n")
    fence = re.match(r"`+", first).group(0)
    assert last == fence and len(fence) >= 3
    for line in body:
        assert not re.match(r"\s{0,3}" + fence, line)


@given(st.sets(st.integers(0, 300), max_size=40))
def test_rank_ranges_round_trip(ranks):
    text = rank_ranges(ranks)
    back = set()
    for part in filter(None, text.split(", ")):
        lo, _, hi = part.partition("-")
        back |= set(range(int(lo), int(hi or lo) + 1))
    assert back == ranks


@settings(max_examples=50)
@given(st.text(max_size=400), st.integers(5, 200))
def test_shorten_caps_length(text, cap):
    assert len(shorten(text, cap)) <= cap
