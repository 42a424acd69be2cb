"""Delta debugging over ranks/hosts and the seed survey, as pure searches."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from triage.bisect.outcome import Outcome
from triage.bisect.seeds import SeedSearch, SeedVerdict, beta_interval, seed_dependence
from triage.bisect.sets import SetSearch


def drive_sets(size, bad, p=1.0, seed=0, k=1, **kw):
    rng = random.Random(seed)
    s = SetSearch(size, **kw)
    while True:
        asked = s.ask(k)
        if not asked:
            break
        for key in asked:
            s.tell(key, Outcome.BAD if set(bad) <= set(key) and rng.random() < p else Outcome.GOOD)
    return s


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 64), data=st.data())
def test_ddmin_finds_a_deterministic_culprit_set(size, data):
    bad = data.draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=min(2, size)))
    r = drive_sets(size, bad).result()
    assert r.status is Outcome.BAD
    assert set(r.minimal) == bad


@pytest.mark.parametrize("bad,p", [({13}, 0.5), ({3, 40}, 0.6)])
def test_ddmin_with_a_flaky_failure(bad, p):
    r = drive_sets(64, bad, p=p, seed=4, k=2).result()
    assert r.status is Outcome.BAD and set(r.minimal) == bad
    assert r.repeats > 1


def test_a_failure_that_does_not_replay_is_flaky_not_an_error():
    s = drive_sets(8, {3}, p=0.0)
    r = s.result()
    assert r.status is Outcome.FLAKY and r.trials == 12


def test_set_search_resumes_from_its_cache_in_any_order():
    done = drive_sets(32, {5, 6}, p=0.7, seed=2)
    trials = [(key, o) for key, outs in done.cache.items() for o in outs]
    random.Random(0).shuffle(trials)
    again = SetSearch(32)
    for key, o in trials:
        again.tell(key, o)
    assert again.ask() == [] and again.result() == done.result()


def test_seed_survey_finds_the_reproducing_seeds():
    rng = random.Random(5)
    s = SeedSearch([str(i) for i in range(20)], repeats=6)
    while not s.done:
        for seed in s.ask(4):
            s.tell(seed, Outcome.BAD if seed in ("3", "11") and rng.random() < 0.7 else Outcome.GOOD)
    r = s.result()
    assert [x.seed for x in r.seeds if x.reproduces] == ["3", "11"]
    assert r.verdict is SeedVerdict.DEPENDS
    three = next(x for x in r.seeds if x.seed == "3")
    assert three.interval[0] < three.rate < three.interval[1]


def test_seed_independent_failure():
    rng = random.Random(6)
    bad = [sum(rng.random() < 0.5 for _ in range(10)) for _ in range(30)]
    assert seed_dependence(bad, [10 - b for b in bad]) < 0.1


def test_seed_search_is_round_robin():
    s = SeedSearch(["a", "b", "c"], repeats=2)
    assert s.ask(5) == ["a", "b", "c", "a", "b"]


def test_beta_interval():
    lo, hi = beta_interval(1, 1)
    assert lo == pytest.approx(0.025, abs=1e-3) and hi == pytest.approx(0.975, abs=1e-3)
    lo, hi = beta_interval(11, 1)  # 10 failures in 10: rate is high
    assert lo > 0.7 and hi == pytest.approx(1.0, abs=1e-2)
