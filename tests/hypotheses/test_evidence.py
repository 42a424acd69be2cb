"""Evidence tables, frames, interventions, and the import boundary of the library."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from triage.analyze.hyp_evidence import Evidence, IncidentObs, RunObs, build_tables
from triage.analyze.hypotheses import analyse
from triage.errors import InputError


def _runs(n=12, **labels):
    return tuple(RunObs(f"r{i}", 1000.0, {k: v(i) for k, v in labels.items()},
                        {"h0": 500.0, f"h{1 + i % 3}": 500.0}, 999) for i in range(n))


def test_exposure_per_value_sums_to_the_total_and_counts_every_incident_once():
    runs = _runs(version=lambda i: f"v{i % 2}", seed=lambda i: str(i % 3))
    incs = tuple(IncidentObs(f"i{k}", f"r{k}", "A" if k % 2 else "B", (), "h0", 0, 10 * k)
                 for k in range(6))
    t = build_tables(Evidence(runs, incs))
    assert {d.name for d in t.dims} == {"version", "seed", "host", "steps"}
    for d in t.dims:
        assert d.exposure.sum() == pytest.approx(t.total_exposure)
        assert len(d.index) == len(incs)
        assert np.all(d.exposure[d.index] > 0)
        total, per = t.restrict(d.name, frozenset(d.values))
        assert total == pytest.approx(t.total_exposure)
        for e, full in zip(per, t.dims):
            assert e == pytest.approx(full.exposure)


def test_bad_evidence_is_an_input_error():
    with pytest.raises(InputError, match="unknown run"):
        build_tables(Evidence(_runs(2), (IncidentObs("i", "nope", "A"),)))
    with pytest.raises(InputError, match="no incidents"):
        analyse(Evidence(_runs(2), ()))


def test_shared_frames_favour_one_cause():
    runs = _runs(version=lambda i: f"v{i % 2}")
    incs = tuple(IncidentObs(f"i{k}", f"r{k}", "ABC"[k % 3]) for k in range(9))
    plain = analyse(Evidence(runs, incs), explain=False).p_one_bug
    shared = {"A": frozenset({"fused_adam.py:step", "train.py:main"}),
              "B": frozenset({"fused_adam.py:step", "train.py:main"}),
              "C": frozenset({"fused_adam.py:step", "train.py:main", "loader.py:next"}),
              }
    # a frame in all signatures carries nothing; one in two of three does
    shared2 = {**shared, "C": frozenset({"train.py:main"})}
    led = analyse(Evidence(runs, incs, shared2))
    assert led.p_one_bug != plain
    ab_together = sum(s.posterior for s in led.scored
                      if any({"A", "B"} <= set(c.signatures) for c in s.causes))
    plain_led = analyse(Evidence(runs, incs), explain=False)
    ab_plain = sum(s.posterior for s in plain_led.scored
                   if any({"A", "B"} <= set(c.signatures) for c in s.causes))
    assert ab_together > ab_plain
    assert any(w.startswith("shared stack frames") for w, _ in led.moved)
    # frames present everywhere are not informative
    assert analyse(Evidence(runs, incs, {k: frozenset({"train.py:main"}) for k in "ABC"}),
                   explain=False).p_one_bug == pytest.approx(plain)


def test_an_intervention_that_stops_every_symptom_is_one_cause():
    """Runs with mitigation=fix-a never fail; without it A, B and C all occur."""
    runs = tuple(RunObs(f"r{i}", 1000.0, {"mitigation": "fix-a" if i % 2 else "none"})
                 for i in range(40))
    incs = tuple(IncidentObs(f"i{k}", f"r{k}", "ABC"[(k // 2) % 3]) for k in range(0, 36, 2))
    led = analyse(Evidence(runs, incs))
    assert led.best.name == "one bug"
    assert led.p_one_bug > 0.8
    assert "mitigation" in led.describe_cause(led.best.causes[0])


def test_library_does_not_import_typer_or_rich():
    code = ("import sys; import triage.analyze.hypotheses, triage.analyze.hyp_next, "
            "triage.analyze.hyp_worlds, triage.case.hypotheses; "
            "print(any(m.split('.')[0] in ('typer', 'rich') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
