"""The accuracy benchmark runs and reports honestly (tiny repetitions; the real run is manual)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bisect_accuracy.py"


def _load():
    spec = importlib.util.spec_from_file_location("bisect_accuracy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_json_rows(capsys):
    mod = _load()
    assert mod.main(["--reps", "2", "--n", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["p"], r["q"]): r for r in out["rows"]}
    assert set(rows) == set(mod.SETTINGS)
    det = rows[(1.0, 0.0)]
    assert det["accuracy"] == 1.0 and det["binary_accuracy"] == 1.0
    assert abs(det["capacity"] - 1.0) < 1e-6
    assert rows[(0.5, 0.0)]["capacity"] == 0.3219
    for r in out["rows"]:
        assert r["met"] == (r["accuracy"] >= 0.99 and r["ratio"] <= 1.5)


def test_benchmark_table_says_when_a_target_is_missed(capsys):
    mod = _load()
    mod.main(["--reps", "1", "--n", "300", "--max-trials", "5"])  # starved: must say MISSED
    text = capsys.readouterr().out
    assert "MISSED" in text and "target" in text


def test_benchmark_genie_fixes_the_told_rates(capsys):
    mod = _load()
    g = mod.told_grid("pq", 0.5, 0.02, 0.03)
    assert list(g.p) == [0.5] and list(g.q) == [0.02]
    g = mod.told_grid("p", 0.2, 0.0, 0.03)
    assert set(g.p) == {0.2} and len(set(g.q)) > 1  # q still unknown
    assert mod.main(["--reps", "3", "--n", "1000", "--told", "pq", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    det = {(r["p"], r["q"]): r for r in out["rows"]}[(1.0, 0.0)]
    assert out["told"] == "pq" and det["accuracy"] == 1.0
    assert det["mean_trials"] <= 11  # told p = 1, q = 0: plain bisection, no confirmations


def test_benchmark_genie_placement_keeps_the_uninformed_posterior(capsys):
    """--place-told: trials go where the told search would test, the answer is the uninformed one."""
    from triage.bisect.ordered import OrderedSearch
    from triage.bisect.outcome import Outcome

    mod = _load()
    told = mod.told_grid("pq", 0.5, 0.0, 0.03)
    s, plain, genie = mod.ToldPlacement(500, told), OrderedSearch(500), OrderedSearch(500, grid=told)
    for j, o in [(250, Outcome.GOOD), (400, Outcome.BAD), (320, Outcome.GOOD), (390, Outcome.GOOD)]:
        for x in (s, plain, genie):
            x.tell(j, o)
    assert s.state() == plain.state()  # confidence and answer: the search told nothing
    assert s.ask() == genie.ask() != plain.ask()  # placement: the search told p and q
    # (here the uninformed search trusts the pass at 390 and zooms above it: [394] against [275])
    assert mod.main(["--reps", "2", "--n", "1000", "--place-told", "p", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["place_told"] == "p" and out["told"] is None
    det = {(r["p"], r["q"]): r for r in out["rows"]}[(1.0, 0.0)]
    assert det["accuracy"] == 1.0
