"""Verdicts on simulated ground-truth worlds (triage/analyze/hyp_worlds.py), seeded.

Each world kind of the issue, at 50 incidents: the best explanation must be exactly the true
bugs (the incident sets of its causes), and P(one bug) must be on the right side of 1/2.
The accuracy and calibration over many worlds is benchmarks/hypotheses_accuracy.py.
"""

from __future__ import annotations

import random

import pytest

from triage.analyze.hyp_next import next_experiments
from triage.analyze.hyp_worlds import KINDS, make_world, simulate
from triage.analyze.hypotheses import Verdict, analyse

SEEDS = {"one_bug": [21, 22], "independent": [23, 24], "host_plus_sw": [25, 26],
         "shared_sig": [27, 28], "shared_hosts": [29, 30], "mitigated": [33, 34]}


@pytest.mark.parametrize("kind,seed", [(k, s) for k in KINDS for s in SEEDS[k]])
def test_verdict_on_simulated_world(kind, seed):
    rng = random.Random(seed)
    w = simulate(make_world(kind, rng), 50, rng)
    led = analyse(w.evidence())
    assert {frozenset(c.incidents) for c in led.best.causes} == w.truth()
    assert (led.p_one_bug >= 0.5) == w.one_bug
    if w.one_bug:
        assert led.verdict is Verdict.ONE_BUG
    else:
        assert led.verdict is Verdict.MANY_BUGS
    if kind == "shared_sig":
        assert led.best.hyp.kind == "split"  # two bugs behind one signature, found


def test_one_bug_world_explains_with_the_trigger_in_words():
    rng = random.Random(31)
    w = simulate(make_world("one_bug", rng), 40, rng)
    trig = w.bugs[0].trigger
    led = analyse(w.evidence())
    text = led.describe_cause(led.best.causes[0])
    if trig.kind == "version":
        assert f"only with version={sorted(trig.values)[0]}" in text
    words = led.moved_words()
    assert words and "one bug" not in words[0] or led.best.name == "one bug"


def test_next_experiment_information_gain_is_bounded_by_the_entropy():
    rng = random.Random(32)
    w = simulate(make_world("host_plus_sw", rng), 12, rng)
    led = analyse(w.evidence())
    exps = next_experiments(led, limit=50)
    assert exps
    import math
    top = [s.posterior for s in led.scored[:30]]
    z = sum(top)
    entropy = -sum(p / z * math.log2(p / z) for p in top if p > 0)
    for e in exps:
        assert 0.0 <= e.eig_bits <= entropy + 1e-9
        assert sum(o.probability for o in e.outcomes) <= 1.0 + 1e-9
    assert exps == sorted(exps, key=lambda e: (-e.eig_bits, e.description))
