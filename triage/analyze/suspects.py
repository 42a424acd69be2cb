"""`triage suspects`: does a signature live on one host (bad hardware) or anywhere (software)?

The test, per signature and per unit (a host, or a global rank):

- Events are the runs where the signature fired as root cause or independent failure (as in
  rates.py), each located at the host and rank of that failure. Events whose host (or rank) is
  unknown are left out of that kind of test and counted in `unlocated`.
- Null hypothesis "spread by exposure": the event of run j lands on unit u with probability
  p_j(u) = GPU-steps of u in run j / GPU-steps of run j. Conditioning on each run's own layout
  matters: hosts change between attempts, and a host that ran 8 ranks in every run is expected
  to catch 8x the events of a host that ran one.
- Observed k(u) = events on u. Under the null k(u) is Poisson-binomial(p_1(u) .. p_n(u)); the
  p-value is its exact upper tail P(K >= k(u)), computed by dynamic programming (truncated at
  k(u), so O(n k)). `expected` = sum_j p_j(u) is shown beside `observed`.
- Multiple testing: every (signature, unit) pair with exposure is a hypothesis; Holm's step-down
  adjustment controls the family-wise error over all of them (hosts and ranks are separate
  families). A unit is a *suspect* when its adjusted p-value is below alpha (0.05).
- Per signature a verdict: `concentrated` (some unit is a suspect); `spread` (no suspect, and
  the events already sit on two or more distinct hosts, which one bad host cannot explain); or
  `too_few_events` (no suspect, but every located event is on one host, or there is only one
  event: more runs are needed before "bug anywhere" can be claimed).

Limits: ranks and hosts are confounded when a rank always runs on the same host; the verdict
names the host and the rank and leaves it to the user (or a bisect over hosts) to separate them.
Holm is conservative when many units have tiny exposure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from triage.case.records import Incident, Run

ALPHA = 0.05
KINDS = ("host", "rank")


@dataclass(frozen=True)
class SuspectTest:
    signature: str
    family: str
    kind: str  # "host" | "rank"
    unit: str
    observed: int
    expected: float
    events: int  # located events of this signature (the n of the test)
    share: float  # this unit's share of the exposure over those events' runs (expected / events)
    p_value: float
    p_adjusted: float
    suspect: bool

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature, "family": self.family, "kind": self.kind,
                "unit": self.unit, "observed": self.observed,
                "expected": round(self.expected, 4), "events": self.events,
                "share": round(self.share, 4), "p_value": _sig(self.p_value),
                "p_adjusted": _sig(self.p_adjusted), "suspect": self.suspect}


@dataclass(frozen=True)
class SignatureVerdict:
    signature: str
    family: str
    events: int
    unlocated_hosts: int
    verdict: str  # "concentrated" | "spread" | "too_few_events"
    suspects: tuple[str, ...]  # "host node-3", "rank 5"
    distinct_hosts: int  # distinct hosts the located events sit on

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature, "family": self.family, "events": self.events,
                "unlocated_hosts": self.unlocated_hosts, "verdict": self.verdict,
                "suspects": list(self.suspects), "distinct_hosts": self.distinct_hosts}


@dataclass(frozen=True)
class SuspectsReport:
    alpha: float
    tests: tuple[SuspectTest, ...]  # sorted: adjusted p, then p, signature, kind, unit
    verdicts: tuple[SignatureVerdict, ...]
    hypotheses: dict[str, int]  # kind -> number of tests Holm corrected for

    def to_json(self) -> dict[str, Any]:
        return {"schema": "triage.suspects/1", "alpha": self.alpha,
                "hypotheses": dict(self.hypotheses),
                "verdicts": [v.to_json() for v in self.verdicts],
                "tests": [t.to_json() for t in self.tests]}


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def poisson_binomial_tail(ps: Sequence[float], k: int) -> float:
    """P(K >= k) for K a sum of independent Bernoulli(p_i); exact, O(len(ps) * k)."""
    if k <= 0:
        return 1.0
    if k > len(ps):
        return 0.0
    # dist[i] = P(K = i) for i < k; mass that reaches k is absorbed (it is the tail).
    dist = [1.0] + [0.0] * (k - 1)
    tail = 0.0
    for p in ps:
        if p <= 0:
            continue
        q = 1 - p
        tail += dist[k - 1] * p
        for i in range(k - 1, 0, -1):
            dist[i] = dist[i] * q + dist[i - 1] * p
        dist[0] *= q
    return min(1.0, max(0.0, tail))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def run_exposure(runs: Sequence[Run], kind: str) -> dict[int, dict[str, int]]:
    """run id -> unit -> GPU-steps, from the runs' ranks (what `CaseStore.exposure` returns)."""
    out: dict[int, dict[str, int]] = {}
    for run in runs:
        units: dict[str, int] = {}
        for r in run.ranks:
            unit = r.host if kind == "host" else str(r.rank)
            if unit is not None:
                units[unit] = units.get(unit, 0) + r.steps
        out[run.id] = units
    return out


def _shares(units: dict[str, int], total: int) -> dict[str, float]:
    """unit -> share of the run's GPU-steps (the run total includes ranks of unknown host)."""
    if total <= 0:
        return {}
    return {u: s / total for u, s in units.items()}


def compute_suspects(runs: Sequence[Run], incidents: Sequence[Incident], *,
                     alpha: float = ALPHA, signature: str | None = None,
                     exposure: dict[str, dict[int, dict[str, int]]] | None = None) -> SuspectsReport:
    """`exposure` (kind -> run id -> unit -> GPU-steps) defaults to the runs' own ranks."""
    exposure = exposure or {kind: run_exposure(runs, kind) for kind in KINDS}
    totals = {r.id: r.gpu_steps for r in runs}
    shares_of = {kind: {rid: _shares(units, totals.get(rid, 0))
                        for rid, units in exposure[kind].items()} for kind in KINDS}
    # signature -> list of (run, host, rank) events, one per run
    events: dict[str, dict[int, tuple[str | None, int | None]]] = {}
    families: dict[str, str] = {}
    for inc in incidents:
        for o in (inc.root, *inc.independent):
            if signature is not None and o.signature != signature:
                continue
            families[o.signature] = o.family
            events.setdefault(o.signature, {}).setdefault(inc.run_id, (o.host, o.rank))
    raw: dict[str, list[tuple]] = {k: [] for k in KINDS}
    spread_hosts: dict[str, int] = {}
    unlocated: dict[str, int] = {}
    for sid in sorted(events):
        evs = events[sid]
        for kind in KINDS:
            sh = shares_of[kind]
            located = [(rid, (h if kind == "host" else (None if r is None else str(r))))
                       for rid, (h, r) in sorted(evs.items())]
            located = [(rid, u) for rid, u in located if u is not None and sh.get(rid)]
            if kind == "host":
                unlocated[sid] = len(evs) - len(located)
                spread_hosts[sid] = len({u for _, u in located})
            n = len(located)
            if n == 0:
                continue
            shares = [sh[rid] for rid, _ in located]
            units = sorted({u for s in shares for u in s})
            counts: dict[str, int] = {}
            for _, u in located:
                counts[u] = counts.get(u, 0) + 1
            for u in units:
                ps = [s.get(u, 0.0) for s in shares]
                k = counts.get(u, 0)
                p = poisson_binomial_tail(ps, k)
                raw[kind].append((sid, u, k, sum(ps), n, p))
    tests: list[SuspectTest] = []
    hypotheses = {}
    for kind in KINDS:
        rows = raw[kind]
        hypotheses[kind] = len(rows)
        adjusted = holm([r[5] for r in rows])
        for (sid, u, k, expected, n, p), adj in zip(rows, adjusted):
            tests.append(SuspectTest(sid, families[sid], kind, u, k, expected, n, expected / n,
                                     p, adj, adj < alpha))
    tests.sort(key=lambda t: (t.p_adjusted, t.p_value, t.signature, t.kind, t.unit))
    verdicts = []
    for sid in sorted(events):
        mine = [t for t in tests if t.signature == sid and t.suspect]
        names = tuple(f"{t.kind} {t.unit}" for t in mine)
        hosts = spread_hosts.get(sid, 0)
        verdict = "concentrated" if mine else ("spread" if hosts >= 2 else "too_few_events")
        verdicts.append(SignatureVerdict(sid, families[sid], len(events[sid]),
                                         unlocated.get(sid, 0), verdict, names, hosts))
    return SuspectsReport(alpha, tuple(tests), tuple(verdicts), hypotheses)


def suspects_for_case(store, *, alpha: float = ALPHA, signature: str | None = None) -> SuspectsReport:
    """Convenience: read the case and compute (the CLI's one call)."""
    sid = store.signature(signature).id if signature else None
    return compute_suspects(store.runs(with_ranks=False), store.incidents(), alpha=alpha,
                            signature=sid, exposure={k: store.exposure(k) for k in KINDS})
