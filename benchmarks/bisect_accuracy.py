"""Accuracy and cost of triage's probabilistic bisection against a noisy test (simulated).

For each setting, a culprit is drawn uniformly among N = 10,000 steps; a trial at a step at or
after the culprit fails with probability p (1.0, 0.5, 0.2), a trial before it fails with the
false-alarm probability q (0, 0.02). The search is told neither. We report:

- accuracy of `OrderedSearch` (default prior, confidence 0.99) and its mean trials;
- the same for plain binary search that trusts every answer (git bisect's assumption);
- the information-theoretic minimum log2(N) / C, with C the capacity of the binary channel a
  trial is (input: at/after the culprit or not; output: fail or pass). For q = 0 this is a
  Z-channel (C = 0.32 bits at p = 0.5, 1 bit at p = 1); with false alarms it is the binary
  asymmetric channel, maximised numerically over the input distribution.

Target: accuracy >= 99% and mean trials <= 1.5 x the minimum. Every row says whether it met
both, and a summary line names the settings that missed. Accuracy is also given with a 95%
Wilson lower bound (column low95), since 100 repetitions cannot prove 99% on their own.

    python benchmarks/bisect_accuracy.py            # 100 repetitions per setting
    python benchmarks/bisect_accuracy.py --reps 10  # quick look
    python benchmarks/bisect_accuracy.py --q-scale none  # the uniform false-alarm prior (before)
    python benchmarks/bisect_accuracy.py --told pq  # a genie tells the search the true p and q
    python benchmarks/bisect_accuracy.py --place-told p  # the genie tells only where to test

`--told p|q|pq` replaces the prior over that rate by the setting's true value (a one-point grid):
not something a user can do, but it measures what learning each rate costs. `--place-told
p|q|pq` splits that cost: each trial goes where a search told those rates would put it, while
the stopping rule and the answer still come from the search that was told nothing. What it
saves is the part of the cost that better placement alone could win back.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from triage.bisect.ordered import (Q_SCALE, NoiseGrid, OrderedSearch,  # noqa: E402
                                   binary_search, channel_capacity)
from triage.bisect.outcome import Outcome  # noqa: E402

SETTINGS = [(1.0, 0.0), (0.5, 0.0), (0.2, 0.0), (1.0, 0.02), (0.5, 0.02), (0.2, 0.02)]


def wilson_lower(k: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    ph = k / n
    den = 1 + z * z / n
    centre = ph + z * z / (2 * n)
    rad = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
    return (centre - rad) / den


def told_grid(told: str, p: float, q: float, q_scale: float | None) -> NoiseGrid:
    """The default prior with the rates named in `told` ("p", "q" or "pq") fixed at the truth."""
    g = NoiseGrid.default(q_scale=q_scale)
    keep = np.ones(len(g.p), dtype=bool)
    if "p" in told:
        keep &= np.isclose(g.p, p)
    if "q" in told:
        keep &= np.isclose(g.q, q)
    if not keep.any():
        raise SystemExit(f"p={p}, q={q} is not on the prior's grid")
    w = np.exp(g.log_prior[keep])
    return NoiseGrid(g.p[keep], g.q[keep], np.log(w / w.sum()))


class ToldPlacement(OrderedSearch):
    """A search that stops and answers from its own posterior but tests where a twin search with
    another prior (a genie's) would: isolates what placement costs from what stopping costs."""

    def __init__(self, n: int, place_grid: NoiseGrid, **kw):
        super().__init__(n, **kw)
        self.twin = OrderedSearch(n, confidence=self.confidence, grid=place_grid)

    def tell(self, index: int, outcome: Outcome) -> None:
        super().tell(index, outcome)
        self.twin.tell(index, outcome)

    def _best_uncached(self) -> int | None:
        j = self.twin._best()  # None once the twin is sure: then our own choice
        return super()._best_uncached() if j is None else j


def one_run(n: int, p: float, q: float, rng: random.Random, confidence: float,
            max_trials: int, grid: NoiseGrid | None = None,
            place_grid: NoiseGrid | None = None) -> tuple[bool, int, bool, int]:
    culprit = rng.randint(1, n)

    def trial(j: int) -> bool:
        return rng.random() < (p if j >= culprit else q)

    if place_grid is None:
        s = OrderedSearch(n, confidence=confidence, max_trials=max_trials, grid=grid)
    else:
        s = ToldPlacement(n, place_grid, confidence=confidence, max_trials=max_trials, grid=grid)
    while True:
        ask = s.ask()
        if not ask:
            break
        s.tell(ask[0], Outcome.BAD if trial(ask[0]) else Outcome.GOOD)
    st = s.state()
    ok = st.culprit == culprit and st.confidence >= confidence
    guess, bin_trials = binary_search(n, trial)
    return ok, s.calls, guess == culprit, bin_trials


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100, help="repetitions per setting (default 100)")
    ap.add_argument("--n", type=int, default=10_000, help="number of steps (default 10000)")
    ap.add_argument("--confidence", type=float, default=0.99)
    ap.add_argument("--max-trials", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--q-scale", default=None, metavar="S|none",
                    help="false-alarm prior: slab weights exp(-q/S), or 'none' for the uniform "
                         "slab used before issue 6 (default: the library's)")
    ap.add_argument("--told", choices=["p", "q", "pq"], default=None,
                    help="a genie tells the search the true p, q or both (what learning them costs)")
    ap.add_argument("--place-told", choices=["p", "q", "pq"], default=None,
                    help="a genie chooses each trial as if told p, q or both; stopping and the "
                         "answer still come from the uninformed posterior (what placement costs)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = ap.parse_args(argv)
    grid = None
    q_scale = Q_SCALE
    if args.q_scale is not None:
        q_scale = None if args.q_scale == "none" else float(args.q_scale)
        grid = NoiseGrid.default(q_scale=q_scale)

    rows = []
    t0 = time.perf_counter()
    for p, q in SETTINGS:
        rng = random.Random(f"{args.seed}-{p}-{q}")
        if args.told:
            grid = told_grid(args.told, p, q, q_scale)
        place = told_grid(args.place_told, p, q, q_scale) if args.place_told else None
        ok = bok = trials = btrials = 0
        for _ in range(args.reps):
            a, t, b, bt = one_run(args.n, p, q, rng, args.confidence, args.max_trials, grid, place)
            ok += a
            bok += b
            trials += t
            btrials += bt
        cap = channel_capacity(p, q)
        minimum = math.log2(args.n) / cap
        mean = trials / args.reps
        acc = ok / args.reps
        rows.append({"p": p, "q": q, "reps": args.reps, "accuracy": acc,
                     "accuracy_lower95": round(wilson_lower(ok, args.reps), 4),
                     "mean_trials": round(mean, 1), "binary_accuracy": bok / args.reps,
                     "binary_trials": round(btrials / args.reps, 1), "capacity": round(cap, 4),
                     "minimum": round(minimum, 1), "ratio": round(mean / minimum, 2),
                     "met": acc >= 0.99 and mean <= 1.5 * minimum})
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"n": args.n, "confidence": args.confidence, "told": args.told,
                          "place_told": args.place_told, "rows": rows,
                          "seconds": round(seconds, 1)}, indent=2))
        return 0
    told = {None: "p, q unknown to the search", "p": "told the true p, not q",
            "q": "told the true q, not p", "pq": "told the true p and q"}[args.told]
    if args.place_told:
        told += f"; trials placed as if told {' and '.join(args.place_told)}"
    print(f"probabilistic bisection, N = {args.n}, confidence {args.confidence}, "
          f"{args.reps} repetitions per setting ({told})")
    head = (f"{'p':>4} {'q':>5} | {'accuracy':>8} {'low95':>8} {'trials':>7} | "
            f"{'binary acc':>10} {'trials':>6} | {'C bits':>6} {'log2N/C':>7} {'ratio':>5} | target")
    print(head)
    print("-" * len(head))
    for r in rows:
        verdict = "met" if r["met"] else "MISSED"
        print(f"{r['p']:>4.1f} {r['q']:>5.2f} | {r['accuracy']:>8.1%} {r['accuracy_lower95']:>8.1%} "
              f"{r['mean_trials']:>7.1f} | {r['binary_accuracy']:>10.1%} {r['binary_trials']:>6.1f} | "
              f"{r['capacity']:>6.3f} {r['minimum']:>7.1f} {r['ratio']:>5.2f} | {verdict}")
    missed = [r for r in rows if not r["met"]]
    if missed:
        why = "; ".join(
            f"p={r['p']}, q={r['q']}: " + ", ".join(
                ([f"accuracy {r['accuracy']:.1%} < 99%"] if r["accuracy"] < 0.99 else [])
                + ([f"{r['ratio']:.2f}x the minimum > 1.5x"] if r["ratio"] > 1.5 else []))
            for r in missed)
        print(f"target (>= 99% accuracy, <= 1.5x log2(N)/C trials) MISSED for {len(missed)} of "
              f"{len(rows)} settings: {why}")
    else:
        print("target (>= 99% accuracy, <= 1.5x log2(N)/C trials) met for every setting")
    print(f"({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
