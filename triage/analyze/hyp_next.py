"""The next experiment: which run would settle "one bug or many" fastest, computed.

Candidates are the runs a team can launch: one more run with a given value of a run label
(`version=v2`, `seed=7`, `mitigation=fix-a`, ...), a run whose host set includes a given host,
and a plain run like the others. Each is a run of the median size of the case's runs (its
GPU-steps). Its outcome is what the ledger would see: clean, or failed with one signature (a
run stops at its first failure).

Under each hypothesis H of the ledger (the `TOP` most probable, renormalised), each cause
predicts a rate for the new run from its profile posterior (hyp_model.Scorer.predicted_rate:
posterior mean rates, averaged over profile models), and a share of each of its units
(posterior mean of the Dirichlet mix). A signature's rate is the sum over its units, a split
half counting only where its region allows. With total rate L and exposure E:
    P(clean | H) = exp(-L E),   P(signature s | H) = (1 - exp(-L E)) r_s / L.
The expected information gain is the mutual information between the hypothesis and the
outcome, I(H; O) = sum_H P(H) sum_o P(o|H) log2(P(o|H) / P(o)), in bits: the expected drop in
the entropy of the posterior over hypotheses. Each candidate also says how P(one bug) would
move after each of its likely outcomes.

Limits: plug-in rates (the posterior mean, not the full predictive) and the top hypotheses
only; the candidate set is the conditions already in the case (a mitigation never tried cannot
be predicted, so it is not proposed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.analyze.hyp_ledger import Ledger, Scored

TOP = 30


@dataclass(frozen=True)
class Outcome:
    what: str  # "clean" or a signature id
    probability: float
    p_one_bug_after: float

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.what, "probability": round(self.probability, 6),
                "p_one_bug_after": round(self.p_one_bug_after, 6)}


@dataclass(frozen=True)
class Experiment:
    dim: str | None
    value: str | None
    description: str
    gpu_steps: float
    eig_bits: float
    outcomes: tuple[Outcome, ...]

    def to_json(self) -> dict[str, Any]:
        return {"condition": None if self.dim is None else {self.dim: self.value},
                "description": self.description, "gpu_steps": self.gpu_steps,
                "expected_information_gain_bits": round(self.eig_bits, 6),
                "outcomes": [o.to_json() for o in self.outcomes]}


def _signature_rates(ledger: Ledger, s: Scored, dim: str | None, value: str | None) -> dict[str, float]:
    sc, t = ledger.scorer, ledger.tables
    rates: dict[str, float] = {}
    for units, claim in zip(s.hyp.causes, s.hyp.claims):
        cause_rate = sc.predicted_rate(units, dim, value, claim)
        if cause_rate <= 0:
            continue
        counts = [sc.unit_counts(u)[0] for u in units]
        total = sum(counts) + len(units) * 1.0
        for u, n in zip(units, counts):
            share = (1.0 + n) / total
            if u.region is not None:
                rdim, vals, inside = u.region
                d = t.dim(rdim)
                allowed = vals if inside else frozenset(d.values) - vals
                if dim == rdim:
                    share *= 1.0 if value in allowed else 0.0
                else:
                    e_in = float(sum(e for v, e in zip(d.values, d.exposure) if v in allowed))
                    share *= e_in / t.total_exposure
            rates[u.signature] = rates.get(u.signature, 0.0) + cause_rate * share
    return rates


def _predict(ledger: Ledger, s: Scored, dim, value, host_share: float, e_new: float
             ) -> dict[str, float]:
    if dim == "host":
        at = _signature_rates(ledger, s, "host", value)
        avg = _signature_rates(ledger, s, None, None)
        keys = set(at) | set(avg)
        rates = {k: host_share * at.get(k, 0.0) + (1 - host_share) * avg.get(k, 0.0) for k in keys}
    else:
        rates = _signature_rates(ledger, s, dim, value)
    lam = sum(rates.values())
    p_clean = math.exp(-lam * e_new)
    out = {"clean": p_clean}
    if lam > 0:
        for k, r in rates.items():
            out[k] = (1 - p_clean) * r / lam
    return out


def next_experiments(ledger: Ledger, limit: int = 5) -> list[Experiment]:
    """Candidate runs ranked by expected information gain (bits), best first."""
    t = ledger.tables
    top = ledger.scored[:TOP]
    w = np.array([s.posterior for s in top])
    if w.sum() <= 0:
        return []
    w = w / w.sum()
    is_one = np.array([len(s.hyp.causes) == 1 for s in top])
    e_new = float(np.median(t.run_exposure)) if len(t.run_exposure) else 0.0
    n_hosts = [len(r.host_steps) for r in t.runs if r.host_steps]
    host_share = 1.0 / float(np.median(n_hosts)) if n_hosts else 1.0
    candidates: list[tuple[str | None, str | None, str]] = [(None, None, "one more run like the others")]
    for d in t.dims:
        if d.run_level:
            for v in d.values:
                candidates.append((d.name, v, f"a run with {d.name}={v}"))
        elif d.name == "host":
            for v in d.values:
                candidates.append(("host", v, f"a run whose hosts include {v}"))
    out = []
    for dim, value, text in candidates:
        preds = [_predict(ledger, s, dim, value, host_share, e_new) for s in top]
        keys = sorted(set().union(*preds))
        p = np.array([[pr.get(k, 0.0) for k in keys] for pr in preds])  # (H, O)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        marg = w @ p
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(p > 0, np.log2(p / np.maximum(marg, 1e-300)), 0.0)
        eig = float(np.sum(w[:, None] * p * ratio))
        outcomes = []
        for j, k in enumerate(keys):
            if marg[j] < 1e-3:
                continue
            post = w * p[:, j]
            post = post / post.sum()
            # P(one bug) after: scale the ledger's P(one bug) by the update of the top set
            p_one = float(post[is_one].sum()) if is_one.any() else 0.0
            outcomes.append(Outcome(k, float(marg[j]), p_one))
        outcomes.sort(key=lambda o: (-o.probability, o.what))
        out.append(Experiment(dim, value, text, e_new, max(0.0, eig), tuple(outcomes)))
    out.sort(key=lambda e: (-e.eig_bits, e.description))
    return out[:limit]
