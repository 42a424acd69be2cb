"""User hypotheses: the YAML format, claims, and the condition parser (property tests)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from triage.analyze.hyp_evidence import Evidence, IncidentObs, RunObs
from triage.analyze.hyp_user import _natural, parse_condition, parse_spec
from triage.analyze.hyp_worlds import make_world, simulate
from triage.analyze.hypotheses import analyse
from triage.errors import InputError


def small_case() -> Evidence:
    """v2 runs fail with A or B (one bug), node-3 fails with C; v1 runs are clean."""
    runs, incs = [], []
    for i in range(24):
        version = "v2" if i % 2 else "v1"
        hosts = ("node-3", "node-4") if i % 3 == 0 else ("node-1", "node-2")
        sig = None
        if version == "v2" and i % 4 == 1:
            sig = "sig1:aaaa"
        elif version == "v2" and i % 4 == 3:
            sig = "sig1:bbbb"
        elif "node-3" in hosts:
            sig = "sig1:cccc"
        steps = 400 if sig else 1000
        per_host = {h: 8.0 * steps for h in hosts}
        runs.append(RunObs(f"run-{i:02d}", 16.0 * steps, {"version": version}, per_host, steps))
        if sig:
            host = "node-3" if sig == "sig1:cccc" else hosts[i % 2]
            incs.append(IncidentObs(f"run-{i:02d}:r0", f"run-{i:02d}", sig, (), host, 0, steps))
    return Evidence(tuple(runs), tuple(incs))


GOOD = """
name: kernel bug plus a bad host
note: A and B on v2 look like one reduction bug
causes:
  - id: kernel
    signatures: [aaaa, sig1:bbbb]
    only: "version>=v2"
  - id: host
    signatures: [cccc]
    only: host=node-3
"""


def test_user_hypothesis_is_scored_and_named():
    spec = parse_spec(GOOD, "good.yaml")
    led = analyse(small_case(), [(spec, "good.yaml")])
    user = [s for s in led.scored if s.hyp.kind == "user"]
    assert len(user) == 1 and user[0].name == "kernel bug plus a bad host"
    assert user[0].posterior > 0
    assert {frozenset(c.signatures) for c in user[0].causes} == {
        frozenset({"sig1:aaaa", "sig1:bbbb"}), frozenset({"sig1:cccc"})}
    assert user[0] in led.listed(1)


def test_a_contradicted_claim_has_zero_posterior():
    text = GOOD.replace("host=node-3", "host=node-1")
    led = analyse(small_case(), [(parse_spec(text, "bad.yaml"), "bad.yaml")])
    user = next(s for s in led.scored if s.hyp.kind == "user")
    assert user.posterior == 0.0
    assert user.log_evidence == -math.inf


def test_many_bugs_one_bucket_is_expressible():
    rng = random.Random(27)
    w = simulate(make_world("shared_sig", rng), 40, rng)
    text = """
name: data bug and kernel bug
causes:
  - id: kernel
    signatures: [nan_loss, illegal_access]
    where: ["version=v4"]
  - id: data
    signatures: [nan_loss]
    where: "version!=v4"
"""
    led = analyse(w.evidence(), [(parse_spec(text, "x.yaml"), "x.yaml")])
    user = next(s for s in led.scored if s.name == "data bug and kernel bug")
    assert {frozenset(c.incidents) for c in user.causes} == w.truth()
    assert user.hyp.key == led.best.hyp.key  # the same as the automatic split: one entry


@pytest.mark.parametrize("text,needle", [
    ("name: x\ncauses: []\n", "causes"),
    ("name: x\ncolour: red\ncauses:\n  - id: a\n    signatures: [aaaa]\n", "colour"),
    ("name: x\ncauses:\n  - id: a\n    signatures: [aaaa]\n    only: 'host is node-3'\n", "condition"),
    ("- just\n- a list\n", "mapping"),
    ("name: [unclosed\n", "YAML"),
    ("name: x\ncauses:\n  - id: a\n    signatures: [aaaa]\n  - id: a\n    signatures: [bbbb]\n", "id"),
])
def test_bad_yaml_says_where_and_what(text, needle):
    with pytest.raises(InputError) as exc:
        parse_spec(text, "h.yaml")
    assert "h.yaml" in str(exc.value) and needle in str(exc.value)


def test_unknown_or_ambiguous_signature_and_overlap_are_errors():
    ev = small_case()
    for text, needle in [
        ("name: x\ncauses:\n  - id: a\n    signatures: [ffff]\n", "no signature"),
        ("name: x\ncauses:\n  - id: a\n    signatures: ['sig1:']\n", "matches 3"),
        ("name: x\ncauses:\n  - id: a\n    signatures: [aaaa]\n  - id: b\n    signatures: [aaaa]\n",
         "claimed by causes a and b"),
        ("name: x\ncauses:\n  - id: a\n    signatures: [aaaa]\n    only: seed=3\n", "no such condition"),
    ]:
        with pytest.raises(InputError) as exc:
            analyse(ev, [(parse_spec(text, "h.yaml"), "h.yaml")], explain=False)
        assert needle in str(exc.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_condition_parser_never_crashes(text):
    try:
        key, pred = parse_condition(text, "here")
    except InputError as exc:
        assert "here" in str(exc)
        return
    assert key
    pred("v2")  # a predicate, total on strings


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(r"v[0-9]{1,3}(\.[0-9]{1,2})?", fullmatch=True), min_size=2,
                max_size=2))
def test_natural_order_comparisons_agree(pair):
    a, b = pair
    _, ge = parse_condition(f"version>={b}", "x")
    _, lt = parse_condition(f"version<{b}", "x")
    assert ge(a) != lt(a)
    assert ge(a) == (_natural(a) >= _natural(b))


def test_natural_order_is_numeric():
    _, ge = parse_condition("version>=v2", "x")
    assert ge("v10") and ge("v2") and not ge("v1")


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda kids: st.lists(kids, max_size=3)
                 | st.dictionaries(st.sampled_from(["name", "note", "causes", "id", "signatures",
                                                    "where", "only", "x"]), kids, max_size=4),
                 max_leaves=12).map(lambda obj: __import__("yaml").safe_dump(obj)),
))
def test_spec_parser_only_ever_raises_input_errors(text):
    try:
        spec = parse_spec(text, "f.yaml")
    except InputError as exc:
        assert str(exc).startswith("f.yaml")
        return
    assert spec.name and spec.causes


def test_p_one_bug_counts_single_cause_user_hypotheses():
    text = """
name: one bug, on v2 only
causes:
  - id: all
    signatures: [aaaa, bbbb, cccc]
"""
    ev = small_case()
    base = analyse(ev, explain=False)
    led = analyse(ev, [(parse_spec(text, "u.yaml"), "u.yaml")], explain=False)
    # the same partition as the automatic one-bug hypothesis: one entry, the user's name
    assert led.one_bug.name == "one bug, on v2 only"
    assert led.p_one_bug == pytest.approx(base.p_one_bug)
    claimed = text + "    only: version=v2\n"
    led2 = analyse(ev, [(parse_spec(claimed, "u.yaml"), "u.yaml")], explain=False)
    # node-3's incidents on v1 contradict the claim: it adds nothing to P(one bug)
    assert led2.p_one_bug == pytest.approx(base.p_one_bug)
