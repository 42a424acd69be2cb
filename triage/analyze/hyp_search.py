"""Which hypotheses are considered: exact enumeration, search, latent-class splits, user ones.

Partitions of signatures (one unit each)
- Up to `EXACT_MAX` signatures: every set partition (Bell(10) = 115,975). A cause's score
  depends only on its set of units, so the log marginal of all 2^K - 1 subsets is computed
  once, vectorised over subsets (Scorer.causes_all_subsets), and each partition's score is a sum of table lookups: the partitions are restricted
  growth strings generated level by level in numpy, turned into one bitmask per block, and
  scored in one vectorised gather. All of them enter the normaliser; the best `KEEP` (and
  one-bug and all-separate) are materialised as hypotheses with explanations.
- Beyond: a deterministic local search. Starting from all-separate (greedy agglomerative
  merges) and from one-bug (greedy splits), each step scores *every* single-unit move (to any
  other cause or to a new one) and takes the best, until none improves. Every partition scored
  on the way is kept, so the posterior is over all of them; its mass outside that set is not
  known and the result says the search was not exact.

Latent-class splits ("two bugs behind one signature")
For the best partitions, each signature with enough incidents is split by one condition value
(`version = v2` vs the rest, `host = node-17` vs the rest, a step range vs the rest) into two
units that must go to different causes; each half is tried in every cause and in a new one.
A cause holding a half is confined to the half's region (hyp_model: Regions), so a placement
whose cause has incidents outside it is impossible and is not kept.
Every candidate split is tried in every placement on the best partition (all of them are
considered, so their posterior mass counts), and the best `SPLIT_KEEP` are expanded on the next
best `SPLIT_BASES` partitions. Only one signature is split per hypothesis. The halves are
units like any other, so the score is the same closed form; the hard assignment of incidents
to causes by condition is the approximation (a cause that produced the signature on both sides
of the split is not considered).

Invariants
- The log posterior of a hypothesis is log prior + sum over its causes of `Scorer.cause`.
- Posteriors over everything considered sum to 1 (the materialised ones plus `rest`, the
  log mass of enumerated partitions not materialised).
- Nothing depends on the order of signatures except the order of ties in output, and ties are
  broken by the canonical key of the hypothesis, which is a sorted set of unit keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from triage.analyze.hyp_evidence import Tables, Unit
from triage.analyze.hyp_model import (CRP_ALPHA, Claim, Scorer, log_prior, log_split_pattern,
                                      logsumexp)

EXACT_MAX = 10
KEEP = 60
SPLIT_BASES = 3
SPLIT_KEEP = 6
SPLIT_MIN_INCIDENTS = 2  # each half of a split needs at least this many incidents
SEARCH_MAX_STEPS = 200


@dataclass(frozen=True)
class Hyp:
    """One hypothesis: causes as sets of units, optional claims, and its scores."""

    causes: tuple[tuple[Unit, ...], ...]
    claims: tuple[Claim | None, ...]
    log_evidence: float  # log P(data | hypothesis)
    log_prior: float
    kind: str  # "partition" | "split" | "user"
    name: str = ""
    note: str = ""

    @property
    def log_joint(self) -> float:
        return self.log_evidence + self.log_prior

    @property
    def key(self) -> tuple:
        """Canonical: the incident sets of the causes (two spellings of one hypothesis are one)."""
        return tuple(sorted((tuple(sorted(tuple(np.flatnonzero(u.mask).tolist()) for u in c)),
                             cl.dim if cl else "",
                             tuple(sorted(cl.values)) if cl else ())
                            for c, cl in zip(self.causes, self.claims)))


@dataclass
class Considered:
    hyps: list[Hyp]
    rest: float = -math.inf  # log joint mass of enumerated partitions not materialised
    exact: bool = True
    n_considered: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def log_z(self) -> float:
        return logsumexp([h.log_joint for h in self.hyps] + [self.rest])


# -- scoring helpers -------------------------------------------------------------------------


def score(scorer: Scorer, causes: Sequence[Sequence[Unit]], claims: Sequence[Claim | None] | None,
          kind: str, n_split: int, n_signatures: int, name: str = "", note: str = "") -> Hyp:
    claims = tuple(claims) if claims is not None else (None,) * len(causes)
    causes_t = tuple(tuple(sorted(c, key=lambda u: u.key)) for c in causes)
    ev = sum(scorer.cause(c, cl) for c, cl in zip(causes_t, claims))
    split_dims = {u.signature: u.region[0] for c in causes_t for u in c if u.region is not None}
    lp = log_prior([len(c) for c in causes_t], n_signatures, n_split, scorer.t,
                   list(split_dims.values()) if len(split_dims) == n_split else None)
    return Hyp(causes_t, claims, ev, lp, kind, name, note)


@lru_cache(maxsize=16)
def restricted_growth_strings(k: int) -> np.ndarray:
    """All set partitions of k items as restricted growth strings, shape (Bell(k), k)."""
    rows = np.zeros((1, 1), dtype=np.int8)
    top = np.zeros(1, dtype=np.int8)
    for _pos in range(1, k):
        parts, tops = [], []
        for v in range(_pos + 1):
            sel = top >= v - 1
            if not sel.any():
                continue
            r = rows[sel]
            parts.append(np.hstack([r, np.full((len(r), 1), v, dtype=np.int8)]))
            tops.append(np.maximum(top[sel], v).astype(np.int8))
        rows = np.vstack(parts)
        top = np.concatenate(tops)
    return rows


def enumerate_partitions(scorer: Scorer, units: Sequence[Unit]) -> tuple[np.ndarray, np.ndarray]:
    """(block bitmasks per partition (P, K), log joint per partition (P,)), exactly."""
    k = len(units)
    n_sub = 1 << k
    sizes = np.array([bin(m).count("1") for m in range(n_sub)])
    block = scorer.causes_all_subsets(units) + math.log(CRP_ALPHA) + _lgamma_sizes(sizes)
    block[0] = 0.0
    rgs = restricted_growth_strings(k)
    n = len(rgs)
    masks = np.zeros((n, k), dtype=np.int64)
    rows = np.arange(n)
    for i in range(k):
        np.bitwise_or.at(masks, (rows, rgs[:, i].astype(np.int64)), 1 << i)
    const = (math.lgamma(CRP_ALPHA) - math.lgamma(CRP_ALPHA + k)
             + log_split_pattern(k, 0))
    joint = block[masks].sum(axis=1) + const  # block[0] == 0 for empty blocks
    return masks, joint


def _lgamma_sizes(sizes: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(s) if s > 0 else 0.0 for s in sizes])


def partitions_from_masks(masks: np.ndarray, units: Sequence[Unit]) -> list[list[Unit]]:
    return [[units[i] for i in range(len(units)) if m >> i & 1] for m in masks if m]


# -- search beyond exact ---------------------------------------------------------------------


def local_search(scorer: Scorer, units: Sequence[Unit], n_signatures: int) -> dict[tuple, Hyp]:
    """Greedy merge from all-separate and greedy split from one-bug, recording every move."""
    seen: dict[tuple, Hyp] = {}

    def visit(parts: list[list[Unit]]) -> Hyp:
        h = score(scorer, [p for p in parts if p], None, "partition", 0, n_signatures)
        seen.setdefault(h.key, h)
        return h

    for start in ([[u] for u in units], [list(units)]):
        current = [list(p) for p in start]
        best = visit(current)
        for _ in range(SEARCH_MAX_STEPS):
            candidates: list[tuple[float, tuple, list[list[Unit]]]] = []
            for i, part in enumerate(current):
                for u in part:
                    for j in range(len(current) + 1):
                        if j == i or (j == len(current) and len(part) == 1):
                            continue
                        new = [list(p) for p in current] + [[]]
                        new[i].remove(u)
                        new[j].append(u)
                        new = [p for p in new if p]
                        h = visit(new)
                        candidates.append((h.log_joint, h.key, new))
            # merges of two whole causes (a big step the single moves cannot take at once)
            for i in range(len(current)):
                for j in range(i + 1, len(current)):
                    new = [p for q, p in enumerate(current) if q not in (i, j)]
                    new.append(current[i] + current[j])
                    h = visit(new)
                    candidates.append((h.log_joint, h.key, new))
            if not candidates:
                break
            top = max(candidates, key=lambda c: (c[0], c[1]))
            if top[0] <= best.log_joint + 1e-12:
                break
            best = seen[top[1]]
            current = top[2]
    return seen


# -- latent-class splits ---------------------------------------------------------------------


def split_candidates(tables: Tables, sig: str) -> list[tuple[str, frozenset[str]]]:
    out = []
    base = tables.sig_index == tables.signatures.index(sig)
    for d in tables.dims:
        vals = d.index[base]
        for v, name in enumerate(d.values):
            inside = int((vals == v).sum())
            if inside >= SPLIT_MIN_INCIDENTS and len(vals) - inside >= SPLIT_MIN_INCIDENTS:
                out.append((d.name, frozenset([name])))
    return out


def split_hypotheses(scorer: Scorer, bases: Sequence[Hyp], n_signatures: int) -> list[Hyp]:
    """Split one signature by one condition value; place the halves in every pair of causes."""
    t = scorer.t
    if not bases:
        return []
    out: dict[tuple, Hyp] = {}

    def placements(base: Hyp, sig: str, halves: tuple[Unit, Unit]) -> list[Hyp]:
        rest = [[u for u in c if u.signature != sig] for c in base.causes]
        rest = [c for c in rest if c]
        got = []
        m = len(rest)
        for i in range(m + 1):
            for j in range(m + 1):
                if i == j and i < m:
                    continue
                parts = [list(c) for c in rest] + [[], []]
                parts[i].append(halves[0])
                parts[j if j < m else m + 1].append(halves[1])
                parts = [p for p in parts if p]
                h = score(scorer, parts, None, "split", 1, n_signatures)
                if h.log_joint > -math.inf:  # a half's cause that fires outside its region
                    got.append(h)
        return got

    screened: list[tuple[float, str, tuple[str, frozenset[str]]]] = []
    for sig in t.signatures:
        for cand in split_candidates(t, sig):
            halves = t.split_units(sig, *cand)
            tried = placements(bases[0], sig, halves)
            for h in tried:  # every placement scored is considered: its mass counts
                out.setdefault(h.key, h)
            # impossible on the best partition (a half's cause fires outside its region) may
            # still be possible on the next ones: screened last, not dropped
            best = max((h.log_joint for h in tried), default=-math.inf)
            screened.append((best, halves[0].key, (sig, cand)))
    screened.sort(key=lambda s: (-s[0], s[1]))
    for _score, _key, (sig, cand) in screened[:SPLIT_KEEP]:
        halves = t.split_units(sig, *cand)
        for base in bases[:SPLIT_BASES]:
            for h in placements(base, sig, halves):
                out.setdefault(h.key, h)
    return list(out.values())
