"""Rates per GPU-step with exact Poisson intervals, and the MTBF projection."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.analyze.rates import compute_rates, gamma_p, garwood, rates_for_case
from triage.case import CaseStore
from triage.case.ingest import record_run
from triage.case.meta import RunFile

from tests.case.factories import SIG_IMA, SIG_NAN, SIG_PEER, scan_result

# Published exact (Garwood) 95% limits, e.g. Ulm (1990) / the chi-square tables.
KNOWN = {0: (0.0, 3.689), 1: (0.0253, 5.572), 2: (0.2422, 7.225), 5: (1.623, 11.668),
         10: (4.795, 18.390), 20: (12.217, 30.888), 100: (81.364, 121.627)}


@pytest.mark.parametrize("k", sorted(KNOWN))
def test_garwood_matches_published_limits(k):
    lo, hi = garwood(k)
    assert lo == pytest.approx(KNOWN[k][0], abs=2e-3)
    assert hi == pytest.approx(KNOWN[k][1], abs=2e-3)


def _poisson_cdf(k: int, mu: float) -> float:
    return math.fsum(math.exp(-mu + i * math.log(mu) - math.lgamma(i + 1)) for i in range(k + 1))


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_garwood_tails_are_exact(k, conf):
    alpha = 1 - conf
    lo, hi = garwood(k, conf)
    assert 0 <= lo <= k <= hi
    assert _poisson_cdf(k, hi) == pytest.approx(alpha / 2, rel=1e-6, abs=1e-12)
    if k > 0:
        assert 1 - _poisson_cdf(k - 1, lo) == pytest.approx(alpha / 2, rel=1e-6, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.1, max_value=500), st.floats(min_value=0, max_value=2000))
def test_gamma_p_is_a_cdf(a, x):
    p = gamma_p(a, x)
    assert 0.0 <= p <= 1.0
    assert gamma_p(a, x * 1.1 + 0.01) >= p - 1e-12


def _case(tmp_path):
    store = CaseStore.open(tmp_path / "c.db")
    # 10 runs x 8 GPUs x 100 steps = 8,000 GPU-steps (failed runs stop at their failure step)
    layout = [(SIG_NAN, 1, 50), (SIG_NAN, 2, 50), (SIG_IMA, 0, 50)] + [None] * 7
    for i, root in enumerate(layout):
        record_run(store, scan_result(root=root), name=f"r{i}", content_hash=f"h{i}",
                   run_file=RunFile(seconds=3600.0) if i < 5 else None)
    return store


def test_rates_over_a_case(tmp_path):
    with _case(tmp_path) as store:
        rep = rates_for_case(store, at_gpus=100_000)
    assert rep.runs == 10 and rep.failed_runs == 3
    assert rep.gpu_steps == 3 * 8 * 50 + 7 * 8 * 100 == 6800
    by = {r.signature: r for r in rep.rates}
    nan = by[SIG_NAN]
    assert nan.events == 2
    assert nan.per_million_steps.value == pytest.approx(2 / 6800 * 1e6)
    lo, hi = garwood(2)
    assert nan.per_million_steps.lower == pytest.approx(lo / 6800 * 1e6)
    assert nan.per_million_steps.upper == pytest.approx(hi / 6800 * 1e6)
    # MTBF at 100k GPUs: 1 / (rate * N) steps; the interval swaps its ends
    assert nan.mtbf_steps.value == pytest.approx(6800 / 2 / 100_000)
    assert nan.mtbf_steps.lower == pytest.approx(6800 / hi / 100_000)
    assert nan.mtbf_steps.upper == pytest.approx(6800 / lo / 100_000)
    # per GPU-hour over the 5 timed runs (8 GPUs x 1 h each), which hold all 3 events
    assert rep.gpu_hours == pytest.approx(40.0) and rep.timed_runs == 5
    assert nan.events_timed == 2 and nan.per_gpu_hour.value == pytest.approx(2 / 40)
    assert nan.mtbf_hours.value == pytest.approx(40 / 2 / 100_000)
    # a symptom-only signature has no events but still an upper bound
    peer = by[SIG_PEER]
    assert peer.events == 0 and peer.per_million_steps.lower == 0
    assert peer.per_million_steps.upper == pytest.approx(garwood(0)[1] / 6800 * 1e6)
    assert peer.mtbf_steps.upper is None and peer.mtbf_steps.to_json()["upper"] is None
    assert rep.any_failure.events == 3
    assert [r.signature for r in rep.rates] == [SIG_NAN, SIG_IMA, SIG_PEER]


def test_rates_of_an_empty_case(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as store:
        rep = rates_for_case(store)
    assert rep.rates == () and rep.any_failure is None and rep.gpu_steps == 0


def test_a_million_to_one_bug_at_100k_gpus():
    """The issue's example: 1 event per 1M GPU-steps fires every 10 steps at 100,000 GPUs."""
    from triage.case.records import Incident, Occurrence, Run, Signature
    runs = [Run(i, f"r{i}", f"h{i}", "t", {}, 1000, None, None, 1000, 1_000_000, None, i < 5)
            for i in range(100)]  # 100 runs x 1M GPU-steps, 5 failed
    occ = lambda i: Occurrence(i, i, f"r{i}", "sig1:x", "nonfinite", "root", 0, "h", 1,  # noqa: E731
                               None, "m", "p", 1, "w", None)
    incs = [Incident(i, f"r{i}", occ(i)) for i in range(5)]
    rep = compute_rates(runs, incs, [Signature("sig1:x", "nonfinite", "t", None)], at_gpus=100_000)
    r = rep.rates[0]
    assert r.per_million_steps.value == pytest.approx(0.05)
    assert r.mtbf_steps.value == pytest.approx(200.0)
