"""Line plans (triage.scan.worker) rest on digit-blind patterns (triage.parse.blind).

- `digit_blind` on known cases, and its promise checked on generated text: a blind pattern finds
  the same spans in a line and in the line with its digits masked; every pattern the plans
  depend on (prefix, steps, exception and elastic-block lines) is blind, so an edit that makes
  one of them tell digits apart fails here rather than silently changing scan results.
- A rule that names a digit is never planned: two lines of one shape, one of which its `none`
  pattern rejects, are classified as the general path classifies them.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.classify.playbook import load_playbooks
from triage.ingest import discover
from triage.parse import prefix, steps
from triage.parse.blind import MASK, digit_blind
from triage.scan import engine, scan, worker


@pytest.mark.parametrize("pattern, blind", [
    (r"\d+", True), (r"[0-9]{2}", True), (r"\w+\s\S", True), (r"[^)]*\)", True), (r"\D", True),
    (r"[^\d]", True), (r"(?=\d)a", True), (r"x\b", True), (r".*", True), (r"(?P<r>\d{1,7})\]", True),
    (r"[A-Za-z_-]", True), (r"[A-Za-z0-9_.-]", True), (r"abc|de", True),
    (r"[1-9]", False), (r"a1", False), (r"[^5]", False), (r"(\d)\1", False), (r"[0-8]", False),
    (r"a|b|7", False), (r"(?!0)", False), (r"\x30", False), (r"\060", False),
    (r"[[:digit:]]", False), (r"[[:^alpha:]]", False), (r"[:\s|-]", True), (r"\pN", False), (r"\Qa1\E", False), (r"(?P<x>a)(?(x)b|c)", False),
    (r"[", False),
])
def test_digit_blind_cases(pattern, blind):
    assert digit_blind(pattern) is blind


# Every pattern a line plan stands for: if one of these stops being blind, plans are wrong.
PLANNED = [prefix._LEAD_RE, prefix._INNER_RE, prefix._QUOTE_RE, *steps._STEP_RES,
           engine._EXC_LINE_RE, worker._BLOCK_LINE_RE]


@pytest.mark.parametrize("rx", PLANNED + list(discover._RANK_NAME_RES),
                         ids=lambda rx: rx.pattern[:30])
def test_the_patterns_plans_rest_on_are_blind(rx):
    """(discover's rank of a file name is cached by the name's digit shape too.)"""
    assert digit_blind(rx.pattern, rx.flags)


_line = st.text(st.sampled_from(list("0123456789 .:[]-_/|=<>,\tabcdeErRnkSstIpoi")), max_size=40)
_fragments = st.sampled_from(["[rank", "]: ", "[default", "Step: ", "step ", "iteration ", "/",
                              " [", "Error", "node-", ": ", "exitcode :", ">", "12", "7"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_line | _fragments, max_size=8).map("".join))
def test_blind_patterns_see_the_masked_line_alike(text):
    masked = text.encode("ascii").translate(MASK).decode("ascii")
    for rx in PLANNED + [re.compile(p) for r in load_playbooks().rules if r.digit_blind
                         for p in (*r.any, *r.all, *r.none)]:
        a, b = rx.search(text), rx.search(masked)
        assert (a is None) == (b is None), rx.pattern
        if a is not None:
            assert a.regs == b.regs, rx.pattern
    # and the functions built on them
    assert prefix.prefix_spans(text) == prefix.prefix_spans(masked)
    assert steps.step_span(text) == steps.step_span(masked)


RULES = """\
rules:
  - id: site.boom
    title: A rule whose none pattern names a digit
    family: python_exception
    severity: high
    role: root
    priority: 95
    match:
      any:
        - 'boom code \\d+'
      none:
        - 'boom code 7'
    causes:
      - category: user_code
        text: A test rule.
    next_steps:
      - None.
    examples:
      match:
        - "boom code 3"
      no_match:
        - "boom code 7"
"""


def test_a_rule_that_names_a_digit_is_never_planned(tmp_path, monkeypatch):
    pb = tmp_path / "pb"
    pb.mkdir()
    (pb / "site.yaml").write_text(RULES)
    monkeypatch.setenv("TRIAGE_PLAYBOOKS", str(pb))
    d = tmp_path / "run"
    d.mkdir()
    # rank 1 shows the shape first with a code the rule takes, rank 2 with the one it refuses
    (d / "rank_1.log").write_text("step 1\n[rank1]: boom code 3\n")
    (d / "rank_2.log").write_text("step 1\n[rank2]: boom code 7\n")
    got = scan([d], jobs=1)
    assert [(s.template, s.ranks) for s in got.signatures] == [("boom code <NUM>", (1,))]
    worker.SHORTCUTS = False
    try:
        slow = scan([d], jobs=1)
    finally:
        worker.SHORTCUTS = True
    fast, ref = got.to_json(), slow.to_json()
    fast["stats"]["seconds"] = ref["stats"]["seconds"] = 0
    assert json.dumps(fast) == json.dumps(ref)


def test_template_cache_rests_on_blind_patterns():
    """signature.template caches by digit shape: the header patterns and every mask but the
    hex one (whose "0x" keeps a message out of the cache) must treat digits alike."""
    from triage.classify import signature
    from triage.parse import timestamps

    masks = signature.load_masks()
    assert [name for name, rx, _ in masks.rules if not digit_blind(rx.pattern, rx.flags)] == ["hex"]
    for rx in (signature._HEADER_RE, signature._SPACE_RE, timestamps._ISO_RE,
               timestamps._GLOG_RE, timestamps._SYSLOG_RE):
        assert digit_blind(rx.pattern, rx.flags), rx.pattern


def test_rule_search_three_ways_agree():
    """Rule.search through the RE2 binding (spans, then decoded), its spans, and the public-API
    fallback used where the binding is missing give the same groups on every rule's examples."""
    import copy

    from triage.classify.fastre import FastRegex

    for rule in load_playbooks().rules:
        plain = copy.copy(rule)
        object.__setattr__(plain, "_compiled", tuple(
            tuple(FastRegex(rx.public) for rx in group) for group in rule._compiled))
        for group in plain._compiled:
            for rx in group:
                rx._rx = None  # as where the module's binding is not there
        plain.__dict__.pop("native", None)
        assert rule.native and not plain.native
        for line in (*rule.examples_match, *rule.examples_no_match):
            data = line.encode()
            want = rule.search(line)
            assert plain.search(line) == want, (rule.id, line)
            spans = rule.search_spans(data)
            assert (spans is None) == (want is None)
            if spans is not None:
                assert {k: data[a:b].decode() for k, a, b in spans} == want
