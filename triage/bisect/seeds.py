"""Which seeds reproduce a failure, how often, and whether the failure depends on the seed.

Each seed is run `repeats` times, round-robin (every seed once, then every seed again, ...),
so a search stopped early still covers every seed evenly. Per seed, the failure rate has a
Beta(1 + bad, 1 + good) posterior: its mean and an equal-tailed credible interval are
reported, and "reproduces" means at least one BAD trial (signature-matched when a signature is
given).

Seed dependence is a comparison of three models by marginal likelihood (closed forms with
Beta functions, the mixture on a grid), prior 1/2, 1/4, 1/4:
- `shared`: one failure rate for every seed (the seed does not matter);
- `some`: a fraction of the seeds fails at one shared rate, the others never fail;
- `each`: every seed has its own rate.
P(depends on seed) = P(some) + P(each). A verdict is given at 0.9 either way, else UNDECIDED.

Invariants: the answer is a pure function of the counts per seed; SKIP and UNRELATED trials
count towards a seed's repeats but not towards its rate.
Limits: seeds are independent here; a failure that depends on seed *and* step needs a step
bisection per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np

from triage.bisect.outcome import Outcome


class SeedVerdict(str, Enum):
    DEPENDS = "depends_on_seed"
    INDEPENDENT = "independent_of_seed"
    UNDECIDED = "undecided"
    NO_FAILURE = "no_failure"


@dataclass(frozen=True)
class SeedStat:
    seed: str
    bad: int
    good: int
    skip: int
    unrelated: int
    rate: float  # posterior mean
    interval: tuple[float, float]

    @property
    def reproduces(self) -> bool:
        return self.bad > 0

    def to_json(self) -> dict:
        return {"seed": self.seed, "reproduces": self.reproduces, "bad": self.bad,
                "good": self.good, "skip": self.skip, "unrelated": self.unrelated,
                "rate": round(self.rate, 4),
                "interval": [round(self.interval[0], 4), round(self.interval[1], 4)]}


@dataclass(frozen=True)
class SeedResult:
    seeds: tuple[SeedStat, ...]
    p_depends: float
    verdict: SeedVerdict
    trials: int


def beta_interval(a: float, b: float, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed credible interval of Beta(a, b), by numerical integration on a grid."""
    x = np.linspace(0.0, 1.0, 4001)
    with np.errstate(divide="ignore", invalid="ignore"):
        logpdf = (a - 1) * np.log(x) + (b - 1) * np.log1p(-x)
    logpdf = np.where(np.isfinite(logpdf), logpdf, -np.inf)
    if a == 1:
        logpdf[0] = (b - 1) * 0.0
    if b == 1:
        logpdf[-1] = (a - 1) * 0.0
    pdf = np.exp(logpdf - np.max(logpdf))
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2)])
    cdf /= cdf[-1]
    tail = (1 - level) / 2
    return float(np.interp(tail, cdf, x)), float(np.interp(1 - tail, cdf, x))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def seed_dependence(bad: Sequence[int], good: Sequence[int]) -> float:
    """P(the failure rate depends on the seed | counts), see the module docstring."""
    bad = np.asarray(bad, dtype=float)
    good = np.asarray(good, dtype=float)
    shared = _log_beta(1 + bad.sum(), 1 + good.sum())
    each = float(sum(_log_beta(1 + b, 1 + g) for b, g in zip(bad, good)))
    theta = np.linspace(0.0005, 0.9995, 400)[:, None, None]
    pi = np.linspace(0.0025, 0.9975, 200)[None, :, None]
    b, g = bad[None, None, :], good[None, None, :]
    per_seed = pi * np.exp(b * np.log(theta) + g * np.log1p(-theta)) + (1 - pi) * (b == 0)
    with np.errstate(divide="ignore"):
        logs = np.log(per_seed).sum(axis=2)
    m = logs.max()
    some = float(m + np.log(np.exp(logs - m).mean()))
    logs3 = np.array([shared + math.log(0.5), some + math.log(0.25), each + math.log(0.25)])
    post = np.exp(logs3 - logs3.max())
    post /= post.sum()
    return float(post[1] + post[2])


class SeedSearch:
    def __init__(self, seeds: Sequence[str], *, repeats: int = 3, max_trials: int | None = None):
        if not seeds:
            raise ValueError("no seeds to try")
        self.seeds = list(seeds)
        self.repeats = repeats
        self.max_trials = max_trials
        self.counts = {s: {o: 0 for o in Outcome} for s in self.seeds}
        self.calls = 0

    def tell(self, seed: str, outcome: Outcome) -> None:
        self.counts[seed][outcome] += 1
        self.calls += 1

    def _tried(self, seed: str) -> int:
        return sum(self.counts[seed].values())

    @property
    def done(self) -> bool:
        if self.max_trials is not None and self.calls >= self.max_trials:
            return True
        return all(self._tried(s) >= self.repeats for s in self.seeds)

    def ask(self, k: int = 1) -> list[str]:
        if self.done:
            return []
        budget = k if self.max_trials is None else min(k, self.max_trials - self.calls)
        planned = {s: self._tried(s) for s in self.seeds}
        out: list[str] = []
        while len(out) < budget:
            low = min(planned.values())
            if low >= self.repeats:
                break
            for s in self.seeds:  # round-robin: the least-tried seed first, in seed order
                if planned[s] == low and len(out) < budget:
                    out.append(s)
                    planned[s] += 1
        return out

    def result(self) -> SeedResult:
        stats = []
        for s in self.seeds:
            c = self.counts[s]
            b, g = c[Outcome.BAD], c[Outcome.GOOD]
            stats.append(SeedStat(s, b, g, c[Outcome.SKIP], c[Outcome.UNRELATED],
                                  (1 + b) / (2 + b + g), beta_interval(1 + b, 1 + g)))
        bads = [x.bad for x in stats]
        if sum(bads) == 0:
            return SeedResult(tuple(stats), 0.0, SeedVerdict.NO_FAILURE, self.calls)
        p = seed_dependence(bads, [x.good for x in stats])
        verdict = (SeedVerdict.DEPENDS if p >= 0.9 else SeedVerdict.INDEPENDENT if p <= 0.1
                   else SeedVerdict.UNDECIDED)
        return SeedResult(tuple(stats), p, verdict, self.calls)
