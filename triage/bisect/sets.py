"""Delta debugging over a set (ranks, hosts) with a flaky test: the minimal failing subset.

Zeller's ddmin (split into n parts; keep a failing part; else keep a failing complement; else
split finer), with two changes for tests that lie by omission:

- A subset *fails* as soon as one of its trials is BAD (a signature-matched failure is
  evidence; with `--signature` another bug's failure is UNRELATED and never counts). A subset
  *passes* only after `k` trials without a failure, where `k` is chosen so that a failing
  subset would pass k times in a row with probability at most `alpha`: k = ceil(log alpha /
  log(1 - p)), p the failure rate measured on the full set first.
- Trivial answers first, as Hypothesis' shrinker does: the full set is tried before anything
  else (calibration) until it has failed `CALIBRATION_FAILS` times or `CALIBRATION_MAX` trials
  were spent. A full set that never fails there is a first-class FLAKY answer: the failure did
  not replay, and nothing is bisected.

The search is an ask/tell object whose state is the cache of trials per subset (keys are
sorted tuples of element indices). `ask` re-runs ddmin from the start over the cache each time
(cheap next to a trial: a training run) and stops at the first subset that needs more trials,
so the answer is a pure function of the cache: a search resumed from the case, with its trials
told back in any order, asks exactly what the interrupted one would have asked.

Invariants
- The answer is 1-minimal with respect to the tests run: removing any single element from it
  gave a subset that passed (k clean trials) or was never needed because a smaller part failed.
- Every subset asked for is non-empty and a subset of the elements.
- A SKIP or UNRELATED trial counts towards nothing but the trial budget; a subset with
  `k` of them in a row and no informative trial is treated as passing (it cannot show the bug).

Limits: ddmin needs O(m log n) subset tests for an answer of m elements among n, each up to k
trials; a failure needing many elements together (m large) is expensive. The failure must be
monotone (a superset of a failing set fails too), as ddmin assumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

from triage.bisect.outcome import Outcome

CALIBRATION_FAILS = 3
CALIBRATION_MAX = 12


@dataclass(frozen=True)
class SetResult:
    status: Outcome  # BAD: minimal failing subset found; FLAKY: did not replay; ERROR: budget out
    minimal: tuple[int, ...]  # element indices, sorted (the full set when undecided)
    fail_rate: float | None  # measured on the full set
    repeats: int  # k, trials a subset needs to pass
    tests: int  # distinct subsets tried
    trials: int


class _Need(Exception):
    def __init__(self, key: tuple[int, ...], count: int):
        self.key = key
        self.count = count


class SetSearch:
    def __init__(self, size: int, *, alpha: float = 0.05, max_repeats: int = 10,
                 repeats: int | None = None, max_trials: int | None = None):
        if size < 1:
            raise ValueError("a set search needs at least one element")
        self.size = size
        self.alpha = alpha
        self.max_repeats = max_repeats
        self.fixed_repeats = repeats
        self.max_trials = max_trials
        self.cache: dict[tuple[int, ...], list[Outcome]] = {}
        self.calls = 0

    @property
    def full(self) -> tuple[int, ...]:
        return tuple(range(self.size))

    def tell(self, key: Sequence[int], outcome: Outcome) -> None:
        self.cache.setdefault(tuple(sorted(key)), []).append(outcome)
        self.calls += 1

    # -- calibration --------------------------------------------------------------------------

    def _calibration(self) -> tuple[float | None, int]:
        """(failure rate of the full set, k); raises _Need while calibrating."""
        runs = self.cache.get(self.full, [])
        fails = informative = 0
        for o in runs:
            if informative >= CALIBRATION_MAX or fails >= CALIBRATION_FAILS:
                break
            if o is Outcome.BAD:
                fails += 1
            if o.informative:
                informative += 1
        used = len(runs)
        if fails < CALIBRATION_FAILS and informative < CALIBRATION_MAX and used < 3 * CALIBRATION_MAX:
            raise _Need(self.full, 1)
        if fails == 0:
            return None, 0
        p = (fails + 1) / (informative + 2)  # posterior mean under a uniform prior
        if self.fixed_repeats is not None:
            return p, self.fixed_repeats
        k = math.ceil(math.log(self.alpha) / math.log(1 - p)) if p < 1 else 1
        return p, max(1, min(self.max_repeats, k))

    def _fails(self, key: tuple[int, ...], k: int) -> bool:
        """True: one BAD among its trials; False: k trials in a row without one."""
        runs = self.cache.get(key, [])
        clean = 0
        for o in runs:
            if o is Outcome.BAD:
                return True
            clean += 1
            if clean >= k:
                return False
        raise _Need(key, k - clean)

    def _ddmin(self, k: int) -> Iterator[tuple[int, ...]]:
        current = list(self.full)
        n = 2
        while len(current) >= 2:
            parts = _split(current, n)
            reduced = False
            for part in parts:
                if self._fails(tuple(part), k):
                    current, n, reduced = part, 2, True
                    break
            if not reduced and n > 2:
                for part in parts:
                    comp = [x for x in current if x not in set(part)]
                    if self._fails(tuple(comp), k):
                        current, n, reduced = comp, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= len(current):
                    break
                n = min(2 * n, len(current))
        yield tuple(current)

    def _step(self) -> tuple[SetResult | None, _Need | None]:
        try:
            p, k = self._calibration()
            if p is None:
                return SetResult(Outcome.FLAKY, self.full, 0.0, 0, len(self.cache), self.calls), None
            (minimal,) = list(self._ddmin(k))
            return SetResult(Outcome.BAD, minimal, p, k, len(self.cache), self.calls), None
        except _Need as need:
            return None, need

    # -- ask / tell -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        result, _need = self._step()
        return result is not None or self._out_of_budget()

    def _out_of_budget(self) -> bool:
        return self.max_trials is not None and self.calls >= self.max_trials

    def ask(self, k: int = 1) -> list[tuple[int, ...]]:
        result, need = self._step()
        if result is not None or need is None or self._out_of_budget():
            return []
        count = min(k, need.count)
        if self.max_trials is not None:
            count = min(count, self.max_trials - self.calls)
        return [need.key] * max(count, 0)

    def result(self) -> SetResult:
        result, need = self._step()
        if result is not None:
            return result
        try:
            p, k = self._calibration()
        except _Need:
            p, k = None, 0
        return SetResult(Outcome.ERROR, self.full, p, k, len(self.cache), self.calls)


def _split(items: list[int], n: int) -> list[list[int]]:
    """n contiguous parts, as equal as possible (ranks next to each other share a host)."""
    size, extra = divmod(len(items), n)
    parts, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        if end > start:
            parts.append(items[start:end])
        start = end
    return parts
