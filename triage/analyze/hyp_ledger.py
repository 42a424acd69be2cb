"""The ledger: the scored hypotheses of a case, and how they are said in words.

`triage.analyze.hypotheses.analyse` builds a `Ledger`; this module holds what it returns:
`Scored` hypotheses (a `Hyp` with its posterior and its causes as `CauseView`s, best first),
P(one bug), the verdict, Bayes factors against one bug, the public JSON (`to_json`, contract
`triage.hypotheses/1`), and the words: each cause's most probable rate profile with the
numbers behind it (`describe_cause`), what a mitigation did (`mitigation_notes`) and which
evidence moved the answer (`moved_words`, from the leave-one-dimension-out shares computed
by the analysis).

Invariants
- `scored` is sorted by posterior (log joint), ties by the hypothesis' canonical key.
- P(one bug) is the posterior of every single-cause hypothesis; Bayes factors are against the
  one-bug partition (`one_bug`), whose evidence never depends on a user's claims.
- Words are computed from the same numbers the JSON carries; no sentence is canned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

import numpy as np

from triage.analyze.hyp_evidence import Tables, Unit
from triage.analyze.hyp_model import Claim, Scorer
from triage.analyze.hyp_search import Considered, Hyp

SCHEMA = "triage.hypotheses/1"


class Verdict(str, Enum):
    ONE_BUG = "one_bug"
    MANY_BUGS = "many_bugs"
    UNDECIDED = "undecided"


VERDICT_CONFIDENCE = 0.8


@dataclass(frozen=True)
class CauseView:
    id: str
    signatures: tuple[str, ...]
    runs: tuple[str, ...]
    incidents: tuple[str, ...]
    conditions: dict[str, list[str]]
    units: tuple[Unit, ...]
    claim: Claim | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "signatures": list(self.signatures), "runs": list(self.runs),
                "incidents": list(self.incidents), "conditions": self.conditions}


@dataclass(frozen=True)
class Scored:
    hyp: Hyp
    id: str
    name: str
    posterior: float
    causes: tuple[CauseView, ...]

    @property
    def log_evidence(self) -> float:
        return self.hyp.log_evidence

    def explanation(self) -> dict[str, Any]:
        return {"posterior": _r(self.posterior), "causes": [c.to_json() for c in self.causes]}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "posterior": _r(self.posterior),
                "log_evidence": _r(self.log_evidence), "explanation": self.explanation()}


@dataclass
class Ledger:
    tables: Tables
    scorer: Scorer
    considered: Considered
    scored: list[Scored]  # every materialised hypothesis, best first
    labels: dict[str, str]  # signature -> "S1"
    titles: dict[str, str]
    one_bug: Scored
    separate: Scored
    moved: list[tuple[str, float]] = field(default_factory=list)  # (evidence, log BF share)
    reference: Scored | None = None

    @property
    def best(self) -> Scored:
        return self.scored[0]

    @property
    def p_one_bug(self) -> float:
        """Posterior of every hypothesis with a single cause (one bug, with or without a claim)."""
        return sum(s.posterior for s in self.scored if len(s.hyp.causes) == 1)

    @property
    def verdict(self) -> Verdict:
        if self.p_one_bug >= VERDICT_CONFIDENCE:
            return Verdict.ONE_BUG
        if self.p_one_bug <= 1 - VERDICT_CONFIDENCE:
            return Verdict.MANY_BUGS
        return Verdict.UNDECIDED

    def bayes_factor_log10(self, s: Scored) -> float:
        """log10 of P(data | s) / P(data | one bug)."""
        return (s.log_evidence - self.one_bug.log_evidence) / math.log(10)

    def listed(self, limit: int = 10) -> list[Scored]:
        """The top `limit` hypotheses, plus one-bug, all-separate and every user hypothesis."""
        out = self.scored[:limit]
        keys = {s.hyp.key for s in out}
        for s in [self.one_bug, self.separate] + [s for s in self.scored if s.hyp.kind == "user"]:
            if s.hyp.key not in keys:
                out.append(s)
                keys.add(s.hyp.key)
        return out

    def to_json(self, limit: int = 10) -> dict[str, Any]:
        return {"schema": SCHEMA, "p_one_bug": _r(self.p_one_bug),
                "best": self.best.explanation(),
                "hypotheses": [s.to_json() for s in self.listed(limit)]}

    # -- words -------------------------------------------------------------------------------

    def sig_list(self, sigs: Sequence[str]) -> str:
        names = sorted((self.labels[s] for s in sigs), key=lambda x: int(x[1:]))
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    def describe_cause(self, cause: CauseView) -> str:
        """The profile with the highest posterior, in words, with the numbers behind it."""
        sc, t = self.scorer, self.tables
        fits = sc.profile_posterior(cause.units, cause.claim)
        top = max(fits, key=lambda p: (p.posterior, p.kind))
        who = self.sig_list(cause.signatures)
        plural = len(cause.signatures) > 1
        verb = "occur" if plural else "occurs"
        mask = np.zeros(len(t.incidents), dtype=bool)
        for u in cause.units:
            mask |= u.mask
        n = int(mask.sum())
        if top.kind in ("localised", "confined"):
            d = t.dim(top.dim)
            vals = set(top.region[1]) if top.kind == "confined" else {top.value}
            inside = np.array([v in vals for v in d.values])
            n_in = int(inside[d.index[mask]].sum())
            share = float(d.exposure[inside].sum() / t.total_exposure)
            where = ",".join(sorted(vals))
            word = "only" if n_in == n else "mostly"
            text = (f"{who} {verb} {word} with {d.name}={where}: {n_in} of {n} incidents on "
                    f"{share:.0%} of the GPU-steps")
        elif top.kind == "subset":
            d = t.dim(top.dim)
            counts = np.bincount(d.index[mask], minlength=len(d.values))
            inside = counts > 0  # the most probable active set: the values with incidents
            share = float(d.exposure[inside].sum() / t.total_exposure)
            where = ",".join(v for v, k in zip(d.values, inside) if k)
            text = (f"{who} {verb} only with {d.name}={where}: {n} of {n} incidents on "
                    f"{share:.0%} of the GPU-steps; none in {int((~inside).sum())} of "
                    f"{len(d.values)} {_plural(d.name)}")
        elif top.kind == "removed":
            d = t.dim(top.dim)
            share = float(d.exposure[d.values.index(top.value)] / t.total_exposure)
            text = (f"{who} {'vanish' if plural else 'vanishes'} with {d.name}={top.value}: "
                    f"0 of {n} incidents on {share:.0%} of the GPU-steps")
        elif top.kind == "per-value":
            d = t.dim(top.dim)
            counts = np.bincount(d.index[mask], minlength=len(d.values))
            rates = counts / d.exposure
            mean = n / t.total_exposure
            order = np.argsort(-rates, kind="stable")[:2]
            together = " together" if plural else ""
            parts = [f"{d.values[i]} at {rates[i] / mean:.1f}x the average ({int(counts[i])} of "
                     f"{n} incidents)" for i in order if counts[i] > 0]
            zero = int((counts == 0).sum())
            text = (f"{who} {'rates vary' if plural else 'rate varies'} with {d.name}{together}: "
                    + ", ".join(parts)
                    + (f"; none in {zero} of {len(d.values)} {_plural(d.name)}" if zero else ""))
        else:
            spread = []
            for d in t.dims:
                seen = len(set(d.index[mask].tolist()))
                spread.append(f"{seen} of {len(d.values)} {_plural(d.name)}")
            text = (f"{who} {verb} at one steady rate"
                    + (f" (spread over {', '.join(spread)})" if spread else "")
                    + f": {n} incidents, {_per_million(n, t.total_exposure)} per 10^6 GPU-steps")
        if top.region is not None and top.kind != "confined":
            rdim, rvals = top.region
            text += f"; the cause is confined to {rdim}={','.join(sorted(rvals))}"
        text += f" [{top.posterior:.0%} of this cause's profile posterior]"
        return text

    def mitigation_notes(self, cause: CauseView) -> list[str]:
        """Interventions: how the cause's rate changed under each mitigation value."""
        t = self.tables
        out = []
        mask = np.zeros(len(t.incidents), dtype=bool)
        for u in cause.units:
            mask |= u.mask
        for d in t.dims:
            if not d.name.startswith("mitigation"):
                continue
            counts = np.bincount(d.index[mask], minlength=len(d.values))
            parts = [f"{v}: {int(c)} in {_per_million_e(e)} M GPU-steps"
                     for v, c, e in zip(d.values, counts, d.exposure)]
            out.append(f"{self.sig_list(cause.signatures)} under {d.name}: " + "; ".join(parts))
        return out

    def moved_words(self) -> list[str]:
        ref = self.reference
        if ref is None:
            return []
        total = (self.best.hyp.log_joint - ref.hyp.log_joint) / math.log(10)
        out = [f"log10 posterior odds of the best explanation against {ref.name!r}: {total:+.2f}"]
        for what, share in self.moved[:4]:
            if abs(share) < 0.05:
                continue
            direction = "for" if share > 0 else "against"
            out.append(f"{what}: {share:+.2f} (log10) {direction} the best explanation")
        return out


def _plural(name: str) -> str:
    return {"host": "hosts", "steps": "step ranges", "version": "versions",
            "seed": "seeds"}.get(name, f"{name} values")


def _per_million(n: int, e: float) -> str:
    return f"{n / e * 1e6:.3g}" if e > 0 else "n/a"


def _per_million_e(e: float) -> str:
    return f"{e / 1e6:.3g}"


def _r(x: float) -> float:
    if x == -math.inf or x != x:
        return -1e300 if x == -math.inf else 0.0
    return float(round(x, 6))


def _label_key(lab: str) -> tuple:
    head = lab.split("[")[0]
    try:
        return (int(head[1:]), lab)
    except ValueError:
        return (1 << 30, lab)
