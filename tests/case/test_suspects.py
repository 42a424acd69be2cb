"""Suspects: exact Poisson-binomial tails, Holm, and the bad-host vs bug-anywhere verdicts."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.analyze.suspects import holm, poisson_binomial_tail, suspects_for_case
from triage.case import CaseStore
from triage.case.ingest import record_run

from tests.case.factories import SIG_IMA, SIG_NAN, scan_result


def _brute_tail(ps, k):
    total = 0.0
    for bits in itertools.product((0, 1), repeat=len(ps)):
        if sum(bits) >= k:
            total += math.prod(p if b else 1 - p for p, b in zip(ps, bits))
    return total


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), max_size=9), st.integers(0, 10))
def test_poisson_binomial_tail_is_exact(ps, k):
    assert poisson_binomial_tail(ps, k) == pytest.approx(_brute_tail(ps, k), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30))
def test_holm_is_monotone_and_bounded(ps):
    adj = holm(ps)
    assert all(a >= p - 1e-15 and a <= 1.0 for a, p in zip(adj, ps))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[order[i]] <= adj[order[i + 1]] + 1e-15 for i in range(len(ps) - 1))
    assert min(adj) == pytest.approx(min(1.0, len(ps) * min(ps)))


def _case(tmp_path, where_fails, n_runs=40, seed=0):
    """n_runs runs of 32 ranks on 4 of 12 hosts each (hosts change between attempts)."""
    rng = random.Random(seed)
    store = CaseStore.open(tmp_path / "c.db")
    all_hosts = [f"node{i:02d}" for i in range(12)]
    for i in range(n_runs):
        hosts4 = rng.sample(all_hosts, 4)
        if i % 2 == 0 and "node07" not in hosts4:
            hosts4[0] = "node07"  # the bad host is in about half the runs
        hosts = {r: hosts4[r // 8] for r in range(32)}
        root = where_fails(i, hosts, rng)
        record_run(store, scan_result(world=32, hosts=hosts, root=root), name=f"r{i}",
                   content_hash=f"h{i}")
    return store


def test_a_bad_host_is_found(tmp_path):
    def fails(i, hosts, rng):
        bad = [r for r, h in hosts.items() if h == "node07"]
        if bad and rng.random() < 0.8:
            return (SIG_IMA, rng.choice(bad), 30)
        if rng.random() < 0.15:
            return (SIG_NAN, rng.randrange(32), 30)  # a software bug, anywhere
        return None
    with _case(tmp_path, fails) as store:
        rep = suspects_for_case(store)
    v = {x.signature: x for x in rep.verdicts}
    assert v[SIG_IMA].verdict == "concentrated" and "host node07" in v[SIG_IMA].suspects
    top = rep.tests[0]
    assert (top.signature, top.kind, top.unit) == (SIG_IMA, "host", "node07")
    assert top.observed == v[SIG_IMA].events and top.expected < top.observed / 2
    assert top.p_adjusted < 1e-6
    assert v[SIG_NAN].verdict in ("spread", "too_few_events")
    assert not any(t.suspect for t in rep.tests if t.signature == SIG_NAN)
    assert rep.hypotheses["host"] >= 12


def test_a_bug_anywhere_names_no_host(tmp_path):
    def fails(i, hosts, rng):
        return (SIG_NAN, rng.randrange(32), 30) if rng.random() < 0.6 else None
    with _case(tmp_path, fails) as store:
        rep = suspects_for_case(store)
    (v,) = rep.verdicts
    assert v.verdict == "spread" and v.suspects == () and v.distinct_hosts >= 5
    assert all(not t.suspect for t in rep.tests)


def test_one_event_is_too_few(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        record_run(store, scan_result(root=(SIG_NAN, 3, 10)), name="r", content_hash="h")
        rep = suspects_for_case(store, signature="sig1:nan")
    (v,) = rep.verdicts
    assert v.verdict == "too_few_events" and v.events == 1
    # with one run the host holding the event has share 8/8... of its own ranks: p = its share
    host_test = next(t for t in rep.tests if t.kind == "host" and t.observed == 1)
    assert host_test.p_value == pytest.approx(host_test.expected)


def test_unknown_hosts_are_counted_not_guessed(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        record_run(store, scan_result(hosts={}, root=(SIG_NAN, 3, 10)), name="r", content_hash="h")
        rep = suspects_for_case(store)
    (v,) = rep.verdicts
    assert v.unlocated_hosts == 1 and v.distinct_hosts == 0
    assert all(t.kind == "rank" for t in rep.tests)


def test_exposure_from_sql_equals_exposure_from_ranks(tmp_path):
    """`CaseStore.exposure` (summed in SQL) and the runs' own ranks give the same answer."""
    from triage.analyze.suspects import compute_suspects

    def fails(i, hosts, rng):
        return (SIG_IMA, rng.randrange(32), 30) if rng.random() < 0.5 else None
    with _case(tmp_path, fails, n_runs=15) as store:
        fast = suspects_for_case(store)
        slow = compute_suspects(store.runs(), store.incidents())
    assert fast == slow and fast.tests
