"""Probabilistic bisection on an ordered axis (steps, revisions) with a test that can lie.

`git bisect` assumes a test that always tells the truth. Here a trial at a point at or after
the culprit fails only with some probability `p` (a bug that fires one time in five), and a
trial before it may fail anyway with a false-alarm probability `q` (another flaky failure
that the signature filter did not remove). Neither `p` nor `q` is known to the search.

Model
- Values `v_0 < v_1 < ... < v_N`: `v_0` is the known-good end, `v_N` the known-bad end. The
  culprit `c` is the index of the first bad value, `1 <= c <= N`, uniform a priori.
- A trial at index `j` (0..N) fails with probability `p` if `j >= c`, else `q`.
- `(p, q)` lives on a small grid with a spike-and-slab prior: `p = 1` (deterministic) has
  prior mass 0.4, the rest is spread evenly over 0.05..0.95; `q = 0` has 0.5, the rest over
  0.005..0.2 with weights falling as exp(-q / 0.03) (a false alarm in one trial of 30 is
  plausible, one in five is allowed but needs data to be believed); only pairs with `q < p`
  (a culprit makes failure likelier, else there is nothing to find). The posterior over
  `(c, p, q)` is exact on that grid; `p` and `q` are marginalised, never plugged in.

Why it is cheap: the likelihood of `(c, p, q)` only depends on four counts (bad and good
trials at or after `c`, bad and good before `c`), and those counts are constant between two
neighbouring tested positions. So the posterior is piecewise constant in `c` over at most
T + 1 segments (T distinct positions tested), whatever N is: one update costs O(T x grid),
not O(N x grid), and N = 10^9 steps costs the same as N = 100.

Where to test next: the index `j` maximising the expected information gain about `c`,
I(Y; c) = H(Y) - E_c H(Y | c), with P(Y=1 | c, j) the posterior mean of `p` (if `j >= c`) or
`q` (if `j < c`) given `c`. Within a segment both terms are linear in how far `j` reaches into
it, so the gain is concave there and its maximum has a closed form; the search compares one
candidate per segment. Repeating a test at the same index is allowed and happens when it pays
(a flaky failure is tested again where the posterior is split). With `k` parallel slots the
batch is chosen "believer" style: pretend the likelier outcome of each chosen trial happened and
choose the next by information gain (k-ary search when deterministic; repeats and neighbours
when the mass is concentrated).

Measured (benchmarks/bisect_accuracy.py, N = 10,000; docs/bisect.md has the table and what was
tried for issue 6): deterministic failures take about 1.45x log2(N)/C trials; flaky ones (p =
0.5, 0.2, with or without 2% false alarms) 1.6-1.8x (1.8-2.1x with a uniform q slab, which let
a high false-alarm rate explain away every failure). Told the true p and q, the same search
needs 1.01-1.21x; told p only 1.01-1.39x; told q only 1.45-1.63x (`--told`, 100 runs): most
of the remaining gap is the price of learning p, and better placement alone cannot close it
(`--place-told`: told p only where to test, 1.43-1.64x). Calibration: at p = 0.5 a 0.99 answer
is right about 95.5-99% of the time, not 99% (200 runs, two seeds; lowest with false alarms): a
run of flaky passes can look exactly like a deterministic failure at a later step, and p = 1 has
prior mass 0.4. Each check of a deterministic-looking boundary halves that risk but costs the
deterministic case a trial, and 1.5x leaves it ~6.6 trials beyond log2 N (docs/bisect.md), so
less spike mass or a skeptical second stopping rule buys accuracy at p = 0.5 only by missing
1.5x at p = 1 (spike 0.3: 99.5% / 97.5% at p = 0.5, q = 0 / 0.02, 1.50-1.55x); the spike stays.

Stopping: when one index holds at least `confidence` of the posterior mass (that needs a good
trial just before it and a bad one at it), or at `max_trials`. SKIP and UNRELATED trials carry
no evidence; an index that skipped, or was unrelated three times, is not asked for again.

Invariants
- The state is a pure function of the multiset of informative trials: `tell` in any order
  gives the same posterior, so a search resumed from the case is the search that was stopped.
- `ask` never returns an index masked by skips; it returns [] when nothing is left to test.
- Confidence and interval are statements about this model; a culprit outside `(v_0, v_N]`
  (the "good" end was bad after all) shows up as mass piling onto index 1 and a high
  estimated false-alarm rate, not as an error.

Limits
- The grid bounds what can be learnt: a failure rarer than 1 in 20 after the culprit, or a
  false-alarm rate above 0.2, is outside the prior. Such bugs need `--signature` first.
- One culprit: a failure that switches on, then off again, violates the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from triage.bisect.outcome import Outcome

_P_SLAB = np.round(np.arange(0.05, 0.951, 0.05), 2)
_Q_SLAB = np.array([0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2])
P_SPIKE_MASS = 0.4  # prior P(p == 1): the failure is deterministic at and after the culprit
Q_SPIKE_MASS = 0.5  # prior P(q == 0): nothing fails before the culprit
Q_SCALE = 0.03  # the q slab's weights fall as exp(-q / Q_SCALE): false alarms are mostly rare
UNRELATED_LIMIT = 3  # an index unrelated this many times is not asked for again


@dataclass(frozen=True)
class NoiseGrid:
    """The `(p, q)` grid and its prior (log weights), flattened to G pairs."""

    p: np.ndarray
    q: np.ndarray
    log_prior: np.ndarray

    @classmethod
    def default(cls, p_slab=_P_SLAB, q_slab=_Q_SLAB, p_spike: float = P_SPIKE_MASS,
                q_spike: float = Q_SPIKE_MASS, q_scale: float | None = Q_SCALE) -> "NoiseGrid":
        """The spike-and-slab prior: uniform over the p slab; over the q slab uniform when
        `q_scale` is None, else weights proportional to exp(-q / q_scale)."""
        ps = np.concatenate([p_slab, [1.0]])
        pw = np.concatenate([np.full(len(p_slab), (1 - p_spike) / max(1, len(p_slab))), [p_spike]])
        qs = np.concatenate([[0.0], q_slab])
        q_slab = np.asarray(q_slab, dtype=float)
        shape = np.ones(len(q_slab)) if q_scale is None else np.exp(-q_slab / q_scale)
        slab_w = (1 - q_spike) * shape / shape.sum() if len(q_slab) else shape
        qw = np.concatenate([[q_spike], slab_w])
        P, Q = np.meshgrid(ps, qs, indexing="ij")
        W = np.outer(pw, qw)
        keep = Q < P
        w = W[keep]
        keep_w = w > 0
        w = w[keep_w]
        P, Q = P[keep][keep_w], Q[keep][keep_w]
        return cls(P, Q, np.log(w / w.sum()))


def _safe_log(v: np.ndarray) -> np.ndarray:
    """log v with log 0 = -1e6: a count of zero times it is 0, a positive count rules it out."""
    with np.errstate(divide="ignore"):
        return np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), -1e6)


def _h(u: np.ndarray | float) -> np.ndarray:
    """Binary entropy in bits, safe at 0 and 1."""
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return -(u * np.log2(u) + (1 - u) * np.log2(1 - u))


@dataclass(frozen=True)
class OrderedState:
    """What the search believes now. Indices are positions 1..N on the axis (0 is the good end)."""

    culprit: int  # the most probable first-bad index
    confidence: float  # posterior mass of that index
    interval: tuple[int, int]  # credible interval at the search's confidence level (indices)
    fail_rate: float  # posterior mean of p: P(fail | at or after the culprit)
    false_alarm_rate: float  # posterior mean of q: P(fail | before the culprit)
    trials: int  # informative trials so far
    bad: int
    good: int

    @property
    def flake_rate(self) -> float:
        """P(a trial at or after the culprit passes anyway) = 1 - fail_rate."""
        return 1.0 - self.fail_rate


class OrderedSearch:
    """Ask/tell probabilistic bisection over indices 0..n (see the module docstring).

    >>> s = OrderedSearch(8)
    >>> while not s.done:
    ...     (j,) = s.ask()
    ...     s.tell(j, Outcome.BAD if j >= 5 else Outcome.GOOD)
    >>> s.state().culprit
    5
    """

    def __init__(self, n: int, *, confidence: float = 0.99, max_trials: int | None = None,
                 grid: NoiseGrid | None = None):
        if n < 1:
            raise ValueError("an ordered search needs at least one candidate (good < bad)")
        if not 0.5 < confidence < 1:
            raise ValueError("confidence must be in (0.5, 1)")
        self.n = n
        self.confidence = confidence
        self.max_trials = max_trials
        self.grid = grid or NoiseGrid.default()
        g = self.grid
        self._logs = np.stack([_safe_log(g.p), _safe_log(1 - g.p), _safe_log(g.q), _safe_log(1 - g.q)])
        self._prior_p = float(np.exp(g.log_prior) @ g.p)
        self._prior_q = float(np.exp(g.log_prior) @ g.q)
        self._best_cache: tuple | None = None
        self._pos: list[int] = []  # informative trials: index and 1 = bad / 0 = good
        self._bad: list[int] = []
        self._masked: set[int] = set()
        self._unrelated: dict[int, int] = {}
        self.calls = 0  # every tell, informative or not: the cost of the search
        self._cache: tuple | None = None

    # -- evidence ---------------------------------------------------------------------------

    def tell(self, index: int, outcome: Outcome) -> None:
        if not 0 <= index <= self.n:
            raise ValueError(f"index {index} outside 0..{self.n}")
        self.calls += 1
        if outcome in (Outcome.GOOD, Outcome.BAD):
            self._pos.append(index)
            self._bad.append(1 if outcome is Outcome.BAD else 0)
            self._cache = None
        elif outcome is Outcome.SKIP:
            self._masked.add(index)
        elif outcome is Outcome.UNRELATED:
            self._unrelated[index] = self._unrelated.get(index, 0) + 1
            if self._unrelated[index] >= UNRELATED_LIMIT:
                self._masked.add(index)
        self._best_cache = None

    def tell_many(self, items: Iterable[tuple[int, Outcome]]) -> None:
        for index, outcome in items:
            self.tell(index, outcome)

    # -- posterior --------------------------------------------------------------------------

    def _posterior(self):
        """Segments (start, length) and per-segment mass W, mean p and mean q given c."""
        if self._cache is not None:
            return self._cache
        n = self.n
        pos = np.asarray(self._pos, dtype=np.int64)
        bad = np.asarray(self._bad, dtype=np.int64)
        cuts = np.unique(pos[(pos >= 1) & (pos <= n - 1)])
        starts = np.concatenate([[1], cuts + 1]).astype(np.int64)
        ends = np.concatenate([cuts, [n]]).astype(np.int64)
        lengths = ends - starts + 1
        order = np.argsort(pos, kind="stable")
        sp, sb = pos[order], bad[order]
        cum_bad = np.concatenate([[0], np.cumsum(sb)])
        idx = np.searchsorted(sp, starts, side="left")  # trials with j < start
        total, total_bad = len(sp), int(cum_bad[-1])
        b0 = cum_bad[idx]
        g0 = idx - b0
        b1 = total_bad - b0
        g1 = (total - idx) - b1
        g = self.grid
        counts = np.stack([b1, g1, b0, g0], axis=1).astype(float)  # S x 4
        ll = counts @ self._logs  # S x G
        logw = ll + g.log_prior[None, :] + np.log(lengths)[:, None]
        logw -= logw.max()
        w = np.exp(logw)
        w /= w.sum()
        W = w.sum(axis=1)
        safe = np.where(W > 0, W, 1.0)
        pbar = np.where(W > 0, (w @ g.p) / safe, self._prior_p)
        qbar = np.where(W > 0, (w @ g.q) / safe, self._prior_q)
        self._cache = (starts, lengths, W, pbar, qbar, float((w.sum(axis=0)) @ g.p),
                       float((w.sum(axis=0)) @ g.q))
        return self._cache

    def marginal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment starts, lengths, mass per index in that segment): P(c) is piecewise constant."""
        starts, lengths, W, *_ = self._posterior()
        return starts, lengths, W / lengths

    def state(self) -> OrderedState:
        starts, lengths, W, _pb, _qb, pmean, qmean = self._posterior()
        dens = W / lengths
        s = int(np.argmax(dens))
        lo, hi = _credible(starts, lengths, W, s, self.confidence)
        nbad = int(sum(self._bad))
        return OrderedState(culprit=int(starts[s]), confidence=min(1.0, float(dens[s])), interval=(lo, hi),
                            fail_rate=pmean, false_alarm_rate=qmean, trials=len(self._pos),
                            bad=nbad, good=len(self._pos) - nbad)

    @property
    def done(self) -> bool:
        if self.max_trials is not None and self.calls >= self.max_trials:
            return True
        starts, lengths, W, *_ = self._posterior()
        if float(np.max(W / lengths)) >= self.confidence:
            return True
        return self._best() is None

    # -- choosing trials --------------------------------------------------------------------

    def gain(self, index: int) -> float:
        """Expected information (bits) about the culprit from one trial at `index`."""
        starts, lengths, W, pbar, qbar, *_ = self._posterior()
        s = int(np.searchsorted(starts, index, side="right") - 1) if index >= 1 else 0
        t = index - (int(starts[s]) - 1)
        a, b, e, d = self._lines()
        return float(_h(a[s] + b[s] * t) - (e[s] + d[s] * t))

    def _lines(self):
        starts, lengths, W, pbar, qbar, *_ = self._posterior()
        dens = W / lengths
        wp, wq = W * pbar, W * qbar
        hp, hq = W * _h(pbar), W * _h(qbar)
        pre_p = np.concatenate([[0.0], np.cumsum(wp)[:-1]])
        pre_hp = np.concatenate([[0.0], np.cumsum(hp)[:-1]])
        suf_q = np.concatenate([np.cumsum(wq[::-1])[::-1][1:], [0.0]])
        suf_hq = np.concatenate([np.cumsum(hq[::-1])[::-1][1:], [0.0]])
        a = pre_p + suf_q + wq  # P(Y=1) when the trial reaches 0 indices into segment s
        b = dens * (pbar - qbar)
        e = pre_hp + suf_hq + hq
        d = (hp - hq) / lengths
        return a, b, e, d

    def _best(self) -> int | None:
        if self._best_cache is None:
            self._best_cache = (self._best_uncached(),)
        return self._best_cache[0]

    def _best_uncached(self) -> int | None:
        starts, lengths, *_ = self._posterior()
        a, b, e, d = self._lines()
        n_s = lengths.astype(float)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            u = 1.0 / (1.0 + np.power(2.0, d / np.where(b > 1e-300, b, 1.0)))
            tstar = np.where(b > 1e-300, (u - a) / np.where(b > 1e-300, b, 1.0), 0.0)
        tstar = np.clip(np.nan_to_num(tstar, nan=0.0, posinf=0.0, neginf=0.0), 0.0, n_s)
        cand_t = np.stack([np.floor(tstar), np.ceil(tstar), np.zeros_like(n_s), n_s])  # 4 x S
        gains = _h(a + b * cand_t) - (e + d * cand_t)
        base = (starts - 1).astype(np.int64)
        js = base[None, :] + cand_t.astype(np.int64)
        if self._masked:
            masked = np.isin(js, np.fromiter(self._masked, dtype=np.int64))
            gains = np.where(masked, -np.inf, gains)
        flat = int(np.argmax(gains))
        best_g = float(gains.flat[flat])
        best_j = int(js.flat[flat])
        if self._masked:
            # a masked optimum: the nearest free index on either side of it, within its segment
            r, s = divmod(flat, len(starts))
            opt = int(base[s] + tstar[s].round())
            if opt in self._masked:
                j = self._nearest_free(opt, int(base[s]), int(base[s] + lengths[s]))
                if j is not None:
                    t = j - int(base[s])
                    gval = float(_h(a[s] + b[s] * t) - (e[s] + d[s] * t))
                    if gval > best_g:
                        best_j, best_g = j, gval
        if not np.isfinite(best_g) or best_g <= 1e-9:
            return None
        return best_j

    def _nearest_free(self, j: int, lo: int, hi: int) -> int | None:
        for step in range(1, hi - lo + 1):
            for cand in (j - step, j + step):
                if lo <= cand <= hi and cand not in self._masked:
                    return cand
        return None

    def ask(self, k: int = 1) -> list[int]:
        """The next `k` indices to test (repeats allowed); [] when the search is over."""
        if self.done:
            return []
        first = self._best()
        if first is None:
            return []
        if k == 1:
            return [first]
        # k parallel slots: "believer" batching. Pretend the likelier outcome of each chosen
        # trial happened, choose the next by information gain, and so on: k-ary search when
        # the test is deterministic, a spread of repeats and neighbours when it is not.
        ghost = self._clone()
        out = [first]
        while len(out) < k:
            j = out[-1]
            ghost.tell(j, Outcome.BAD if ghost.p_fail(j) >= 0.5 else Outcome.GOOD)
            nxt = ghost._best()
            if nxt is None:
                nxt = first
            out.append(nxt)
        return out

    def _clone(self) -> "OrderedSearch":
        twin = OrderedSearch(self.n, confidence=self.confidence, grid=self.grid)
        twin._pos, twin._bad = list(self._pos), list(self._bad)
        twin._masked = set(self._masked)
        twin._unrelated = dict(self._unrelated)
        return twin

    def p_fail(self, index: int) -> float:
        """Posterior predictive probability that a trial at `index` fails."""
        starts, *_ = self._posterior()
        s = int(np.searchsorted(starts, index, side="right") - 1) if index >= 1 else 0
        t = index - (int(starts[s]) - 1)
        a, b, _e, _d = self._lines()
        return float(a[s] + b[s] * t)


def _credible(starts: np.ndarray, lengths: np.ndarray, W: np.ndarray, s: int,
              level: float) -> tuple[int, int]:
    """A contiguous interval of indices around segment s holding at least `level` mass.

    Grown greedily from the densest index towards the denser neighbour, taking partial
    segments at the edge, so it is the shortest such interval whenever the density is unimodal.
    """
    dens = W / lengths
    need = level
    take = int(min(lengths[s], max(1, math.ceil(need / dens[s] - 1e-9)))) if dens[s] > 0 else int(lengths[s])
    lo = int(starts[s])
    hi = lo + take - 1
    mass = take * dens[s]
    left, right = s - 1, s + 1
    if take < lengths[s]:
        return lo, hi
    while mass < level - 1e-12 and (left >= 0 or right < len(starts)):
        dl = dens[left] if left >= 0 else -1.0
        dr = dens[right] if right < len(starts) else -1.0
        side = left if dl >= dr else right
        d = dens[side]
        avail = int(lengths[side])
        k = avail if d <= 0 else int(min(avail, math.ceil((level - mass) / d - 1e-9)))
        k = max(k, 1)
        mass += k * d
        if side == left:
            lo -= k
            left = left - 1 if k == avail else -1
            if k < avail:
                left = -1
        else:
            hi += k
            right = right + 1 if k == avail else len(starts)
    return lo, hi


def binary_search(n: int, test, max_trials: int | None = None) -> tuple[int, int]:
    """Plain bisection trusting every answer (the git bisect baseline): (culprit index, trials)."""
    lo, hi, trials = 0, n, 0
    while hi - lo > 1 and (max_trials is None or trials < max_trials):
        mid = (lo + hi) // 2
        trials += 1
        if test(mid):
            hi = mid
        else:
            lo = mid
    return hi, trials


def channel_capacity(p: float, q: float) -> float:
    """Capacity (bits per use) of the binary channel a trial is: input "at/after the culprit"
    or "before", output fail with probability p or q respectively. A Z-channel when q = 0.

    Maximised over the input distribution numerically (the mutual information is concave in it).
    """
    def mi(x: float) -> float:
        y = x * p + (1 - x) * q
        return float(_h(y) - x * _h(p) - (1 - x) * _h(q))

    lo, hi = 0.0, 1.0
    for _ in range(200):  # ternary search on a concave function
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if mi(m1) < mi(m2):
            lo = m1
        else:
            hi = m2
    return mi((lo + hi) / 2)

