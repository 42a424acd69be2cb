"""`triage rates`: how often each signature fires per unit of work, and what that costs at scale.

The unit of work is the GPU-step (one rank completing one training step). Exposure is summed
over every run in the case, failed or not: a clean run of 64 ranks x 10,000 steps adds 640,000
GPU-steps of evidence that the bug did not fire.

Counting: an *event* of a signature is a run in which it occurred as the root cause or as an
independent failure. Symptoms are consequences of another failure (63 ranks timing out after
one rank crashed), not fresh draws of the bug, so they do not count; a signature seen only as a
symptom gets 0 events and still an upper bound. Per run a signature counts at most once: a
failure ends the attempt, so a run is one trial of "did it fire before the run ended".

Rate = events / exposure, with the exact (Garwood) Poisson interval: for k events,
lower = G^-1(alpha/2; k), upper = G^-1(1 - alpha/2; k + 1), where G^-1 is the inverse of the
regularised lower incomplete gamma function (equivalently chi2 quantiles / 2). They are computed
here by bisection on the regularised gamma function (series and continued fraction, as in
Numerical Recipes), so no scipy is needed; tests check them against published values.

Per GPU-hour: only over runs whose wall time is known (triage-run.yaml `seconds` or
`started`/`ended`); GPU-hours = world size x hours; events are counted in those runs only.

Projection: at N GPUs one step of the whole job is N GPU-steps, so the mean number of steps
between failures is 1 / (rate x N), and in hours 1 / (rate per GPU-hour x N). The interval of the
MTBF is the rate interval inverted; with 0 events the MTBF has only a lower bound.

Limits: a Poisson model assumes a constant rate per GPU-step; a bug that only fires early in a
run (warm-up) or only at some scale is not constant, and `triage suspects` / bisect say more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from triage.case.records import Incident, Run, Signature

EVENT_ROLES = ("root", "independent")


# -- exact Poisson intervals --------------------------------------------------------------------

def gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x), a > 0, x >= 0."""
    if x <= 0:
        return 0.0
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    return 1.0 - gamma_q_cf(a, x)


def gamma_q_cf(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) by Lentz's continued fraction (x >= a + 1)."""
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return max(0.0, min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h))


def _solve(f, target: float, lo: float, hi: float) -> float:
    """x in [lo, hi] with f(x) = target, f increasing; bisection to ~1e-12 relative."""
    while f(hi) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def garwood(k: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a Poisson mean from k observed events."""
    if k < 0:
        raise ValueError("k must be >= 0")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    alpha = 1 - confidence
    hi0 = k + 10 * math.sqrt(k + 1) + 10
    lower = 0.0 if k == 0 else _solve(lambda m: gamma_p(k, m), alpha / 2, 0.0, hi0)
    upper = _solve(lambda m: gamma_p(k + 1, m), 1 - alpha / 2, 0.0, hi0)
    return lower, upper


# -- rates over a case ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    value: float
    lower: float
    upper: float | None  # None: unbounded (an MTBF with no events)

    def scaled(self, factor: float) -> "Interval":
        return Interval(self.value * factor, self.lower * factor,
                        None if self.upper is None else self.upper * factor)

    def to_json(self) -> dict[str, Any]:
        return {"value": _num(self.value), "lower": _num(self.lower), "upper": _num(self.upper)}


def _num(x: float | None) -> float | None:
    if x is None or math.isinf(x):
        return None
    return float(f"{x:.6g}")


def _invert(rate: Interval) -> Interval:
    """Mean time between events from a rate: value and bounds swap places."""
    inv = lambda r: math.inf if r <= 0 else 1 / r  # noqa: E731
    return Interval(inv(rate.value), inv(rate.upper or 0.0),
                    None if rate.lower <= 0 else inv(rate.lower))


@dataclass(frozen=True)
class SignatureRate:
    signature: str
    family: str
    template: str
    events: int
    gpu_steps: int
    per_million_steps: Interval
    events_timed: int | None
    gpu_hours: float | None
    per_gpu_hour: Interval | None
    mtbf_steps: Interval | None  # at `at_gpus`
    mtbf_hours: Interval | None

    def to_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature, "family": self.family, "template": self.template,
            "events": self.events, "gpu_steps": self.gpu_steps,
            "per_million_gpu_steps": self.per_million_steps.to_json(),
            "events_timed": self.events_timed,
            "gpu_hours": _num(self.gpu_hours),
            "per_gpu_hour": self.per_gpu_hour.to_json() if self.per_gpu_hour else None,
            "mtbf_steps": self.mtbf_steps.to_json() if self.mtbf_steps else None,
            "mtbf_hours": self.mtbf_hours.to_json() if self.mtbf_hours else None,
        }


@dataclass(frozen=True)
class RatesReport:
    runs: int
    failed_runs: int
    gpu_steps: int
    gpu_hours: float | None
    timed_runs: int
    confidence: float
    at_gpus: int | None
    rates: tuple[SignatureRate, ...]
    any_failure: SignatureRate | None  # every incident's root cause, pooled

    def to_json(self) -> dict[str, Any]:
        return {"schema": "triage.rates/1", "runs": self.runs, "failed_runs": self.failed_runs,
                "gpu_steps": self.gpu_steps, "gpu_hours": _num(self.gpu_hours),
                "timed_runs": self.timed_runs, "confidence": self.confidence,
                "at_gpus": self.at_gpus,
                "any_failure": self.any_failure.to_json() if self.any_failure else None,
                "rates": [r.to_json() for r in self.rates]}


def signature_events(incidents: Sequence[Incident]) -> dict[str, set[int]]:
    """signature -> ids of the runs where it fired as root cause or independent failure."""
    out: dict[str, set[int]] = {}
    for inc in incidents:
        for o in (inc.root, *inc.independent):
            out.setdefault(o.signature, set()).add(inc.run_id)
    return out


def compute_rates(runs: Sequence[Run], incidents: Sequence[Incident],
                  signatures: Sequence[Signature], *, at_gpus: int | None = None,
                  confidence: float = 0.95) -> RatesReport:
    gpu_steps = sum(r.gpu_steps for r in runs)
    timed = [r for r in runs if r.gpu_hours is not None]
    timed_ids = {r.id for r in timed}
    gpu_hours = sum(r.gpu_hours or 0.0 for r in timed) if timed else None
    events = signature_events(incidents)

    def one(sid: str, family: str, template: str, run_ids: set[int]) -> SignatureRate:
        k = len(run_ids)
        lo, hi = garwood(k, confidence)
        per_step = (Interval(k / gpu_steps, lo / gpu_steps, hi / gpu_steps) if gpu_steps
                    else Interval(math.nan, 0.0, None))
        k_t = len(run_ids & timed_ids) if timed else None
        per_hour = None
        if gpu_hours:
            lo_t, hi_t = garwood(k_t, confidence)
            per_hour = Interval(k_t / gpu_hours, lo_t / gpu_hours, hi_t / gpu_hours)
        mtbf_steps = mtbf_hours = None
        if at_gpus and gpu_steps:
            mtbf_steps = _invert(per_step.scaled(at_gpus))
            if per_hour:
                mtbf_hours = _invert(per_hour.scaled(at_gpus))
        return SignatureRate(sid, family, template, k, gpu_steps, per_step.scaled(1e6), k_t,
                             gpu_hours, per_hour, mtbf_steps, mtbf_hours)

    rates = [one(s.id, s.family, s.template, events.get(s.id, set())) for s in signatures]
    rates.sort(key=lambda r: (-r.events, r.signature))
    any_failure = one("*", "*", "any failure (root causes, pooled)",
                      {i.run_id for i in incidents}) if runs else None
    return RatesReport(len(runs), sum(r.failed for r in runs), gpu_steps, gpu_hours, len(timed),
                       confidence, at_gpus, tuple(rates), any_failure)


def rates_for_case(store, *, at_gpus: int | None = None, confidence: float = 0.95) -> RatesReport:
    """Convenience: read the case and compute (the CLI's one call)."""
    return compute_rates(store.runs(with_ranks=False), store.incidents(), store.signatures(),
                         at_gpus=at_gpus, confidence=confidence)
