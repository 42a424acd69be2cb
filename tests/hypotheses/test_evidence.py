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


def test_a_mitigation_that_removes_one_bug_separates_it_from_a_bug_it_leaves():
    """The demo's shape: without the mitigation, four symptoms A-D of one bug and a data error
    E; with it, only E, at the same rate per GPU-step. One cause for A-D, another for E; E is
    not split along the mitigation (which would make the mitigation's effect on A-D free)."""
    runs, incs = [], []
    for arm, failures in (("none", "ABCDEABCDAEBCDE-"), ("fix", "E-E-EE-E-EE-EE")):
        for i, sig in enumerate(failures):
            steps = 40 if sig == "-" else 3 + (7 * i) % 36  # onsets spread over the run
            runs.append(RunObs(f"{arm}-{i}", 4.0 * steps, {"mitigation": arm}, steps=steps))
            if sig != "-":
                incs.append(IncidentObs(f"{arm}-{i}:r0", f"{arm}-{i}", sig, step=steps))
    led = analyse(Evidence(tuple(runs), tuple(incs)))
    assert sorted(sorted(c.signatures) for c in led.best.causes) == [["A", "B", "C", "D"], ["E"]]
    assert led.best.hyp.kind == "partition"
    assert led.p_one_bug < 0.05
    bug = next(c for c in led.best.causes if "A" in c.signatures)
    assert "vanish with mitigation=fix: 0 of 12 incidents" in led.describe_cause(bug)


# A real `triage demo` campaign (28 runs, seeds 1-14 in each arm), as evidence_from_case read
# it: (run, GPU-steps, steps, root signature, step). custom = the buggy all-reduce; stock = the
# mitigation. "data" is the corrupt record (both arms, same step for the same seed).
DEMO_CASE = [
    ("custom-s1", 33, 9, "nan", 9), ("custom-s2", 4, 1, "data", 1), ("custom-s3", 68, 17, "data", 17),
    ("custom-s4", 49, 13, "nan", 13), ("custom-s5", 0, 0, "data", 0), ("custom-s6", 21, 6, "desync", 5),
    ("custom-s7", 0, 0, "data", 0), ("custom-s8", 53, 14, "nan", 14), ("custom-s9", 17, 5, "desync", 4),
    ("custom-s10", 45, 12, "probe", 9), ("custom-s11", 28, 7, "data", 7), ("custom-s12", 21, 6, "nan", 6),
    ("custom-s13", 40, 10, "data", 10), ("custom-s14", 140, 35, "data", 35),
    ("stock-s1", 156, 39, None, None), ("stock-s2", 4, 1, "data", 1), ("stock-s3", 68, 17, "data", 17),
    ("stock-s4", 156, 39, None, None), ("stock-s5", 0, 0, "data", 0), ("stock-s6", 156, 39, None, None),
    ("stock-s7", 0, 0, "data", 0), ("stock-s8", 116, 29, "data", 29), ("stock-s9", 156, 39, None, None),
    ("stock-s10", 92, 23, "data", 23), ("stock-s11", 28, 7, "data", 7), ("stock-s12", 156, 39, None, None),
    ("stock-s13", 40, 10, "data", 10), ("stock-s14", 140, 35, "data", 35),
]


def test_a_split_along_a_mitigation_does_not_get_its_effect_for_free():
    """In the demo's case, "the data errors without the mitigation belong to the reduction bug"
    (a split of the data error along the mitigation) must pay for the mitigation removing
    that cause like any cause does; the unsplit truth stays well ahead."""
    runs, incs = [], []
    for name, gpu_steps, steps, sig, step in DEMO_CASE:
        arm, seed = name.split("-s")
        labels = {"mitigation": "none" if arm == "custom" else "stock-allreduce", "seed": seed}
        runs.append(RunObs(name, float(gpu_steps), labels, steps=steps))
        if sig:
            incs.append(IncidentObs(f"{name}:r0", name, sig, step=step))
    led = analyse(Evidence(tuple(runs), tuple(incs)), explain=False)
    assert sorted(sorted(c.signatures) for c in led.best.causes) == [["data"], ["desync", "nan", "probe"]]
    splits = [s for s in led.scored if s.hyp.kind == "split"
              and any(u.region and u.region[0] == "mitigation" for c in s.hyp.causes for u in c)]
    assert splits and max(s.posterior for s in splits) < 0.05
    assert led.best.posterior > 0.5


def test_library_does_not_import_typer_or_rich():
    code = ("import sys; import triage.analyze.hypotheses, triage.analyze.hyp_next, "
            "triage.analyze.hyp_worlds, triage.case.hypotheses; "
            "print(any(m.split('.')[0] in ('typer', 'rich') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
