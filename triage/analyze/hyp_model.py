"""The marginal likelihood of a cause, and the prior over hypotheses: the mathematics.

The generative model
Each cause c is a Poisson process over exposure (GPU-steps) with a rate profile lambda_c(x)
over conditions x, and a symptom mix theta_c over the units it explains (see hyp_evidence:
normally one unit per root-cause signature). Causes are independent. A run stops at its first
failure, but competing Poisson risks with censoring give the same likelihood in the rates as
independent Poisson counts over the exposure actually spent (the exposure of a failed run ends
at its failure), so counting incidents against exposure is exact, not an approximation.

The likelihood of one cause's incidents, as a point process over exposure, is
    prod_v lambda_v^{N_v} exp(-lambda_v E_v)   x   prod_u theta_u^{n_u}
(no E^N / N! terms: those belong to the data, are the same under every hypothesis, and would
differ between dimensions if the counts were binned first). With lambda_v ~ Gamma(a, b) and
theta ~ Dirichlet(alpha, ..., alpha), both integrate in closed form:
    GP(N, E)  = a log b - lgamma(a) + lgamma(a + N) - (a + N) log(b + E)
    DM(n)     = lgamma(K alpha) - lgamma(K alpha + N) + sum_u [lgamma(alpha + n_u) - lgamma(alpha)]
with a = K alpha for a cause of K units. That choice is the one that makes the model honest:
by Lukacs' theorem lambda*theta then has independent Gamma(alpha, b) components, so under a
*homogeneous* rate one cause with K symptoms and K causes with one symptom each have exactly
the same marginal likelihood. That is the thinning theorem in numbers: where nothing varies,
the data cannot tell one bug from many, and the ledger says so (the posterior stays at the
prior) instead of inventing evidence.

Rate profiles (what does discriminate)
A cause's rate profile is unknown; its marginal is a mixture over profile models, each closed
form, with prior weights (D: number of ordinary dimensions, M: of intervention dimensions):
    along an ordinary dimension d      (1 - W_HOMOGENEOUS)/D = 1/(2D), in three equal parts:
      per-value rates                    w = 1/(6D)        (each rate its own Gamma)
      localised to value u of d          w = 1/(6D |V_d|)  (one rate at u, another elsewhere)
      only under a subset S of values    w = 1/(6D) P(S)   (a Gamma rate for each value in S,
                                                            zero under the others)
    along an intervention d            W_INTERVENTION = 0.05, in three equal parts:
      per-value, localised               w = 1/60 and 1/(60 |V_d|)
      removed by value u of d            w = 1/(60 |V_d|)  (no incident under u, one steady
                                                            rate, Gamma(a, b), elsewhere)
    homogeneous                        w = the rest: 1 - [D > 0]/2 - M/20
Interventions (run labels `mitigation*`) get a small prior on purpose: a given change rarely
affects a given bug, so several causes that all drop under the same change are a coincidence
the prior charges for once per cause, while one cause pays it once. That is why "every symptom's
rate drops under one change" is the strongest evidence for one cause.
"Removed" is the change a mitigation is made for: the cause's rate is zero under it. It needs
its own profile because the per-value and localised ones cannot say it: their rates are
Gamma(a, b) with the shape a = K alpha of a K-signature cause, whose prior puts little mass near
zero when K is large (for K = 4, P(no incident where the case's average rate would give 15) is
about 1/500), so "all four symptoms vanish under the mitigation" was scored as barely better
than a steady rate, and the CRP's preference for one cause won.
"Only under a subset" is what a trigger looks like: a data bug on three of eight seeds, a bug in
the late step ranges, a bad pair of hosts. Per-value rates cannot say it for the same reason
(six Gamma rates near zero cost a factor for each), and "localised" is one value; without it a
cause that fires on two seeds was scored hardly better than a steady rate, so two symptoms of
one such bug looked like two bugs (the missing "moved together"), and a split of one signature,
whose halves are confined to a region (below), looked better than the signature whole. The prior
over S: its size uniform on 1..|V|-1 (all values is "per-value"), then the set uniform:
P(S) = 1/((|V| - 1) C(|V|, |S|)). Every value with an incident must be in S; the sum over S is
the elementary symmetric sums of the values' Gamma-Poisson terms, a dynamic programme over
values (`log_subset_sum`, vectorised over the 2^K subsets of signatures too). Dimensions with
more than `SUBSET_MAX_VALUES` values do without it.
Signatures of one cause share one profile; separate causes each pick their own. So symptoms
whose rates move together across hosts, versions, seeds, step ranges or mitigations favour one
cause (one profile explains them, and the Occam factor of choosing a profile is paid once),
and symptoms whose rates move differently favour several.
Rates get the prior mean of the case: b = alpha / mu with mu = (incidents / exposure) /
(signatures), an empirical-Bayes scale that keeps Bayes factors unit-free (GPU-steps or
GPU-hours give the same answer).

Shared stack frames
Optional: for each frame seen in the traces of at least two signatures but not all, the
presence of the frame across the units of a cause is Beta-Bernoulli(beta, beta) with beta = 1/2
(Jeffreys). Units that agree on a frame score higher together, disagreeing units lower. Frames
unique to one signature carry no information about grouping and are left out. A split
signature's frames count once (on its larger unit).

The prior over hypotheses
A Chinese-restaurant process (Dirichlet-process partition prior) with concentration
`CRP_ALPHA` = 1 over units:  P(B) = alpha^|B| Gamma(alpha)/Gamma(alpha+n) prod_b (|b|-1)!.
Why the CRP and not a geometric penalty per cause: it is exchangeable (renaming signatures
changes nothing) and consistent (dropping a signature leaves the same prior over the rest), so
adding a run with a new signature never changes what the prior says about the old ones; and it
favours fewer causes (P(one bug) = 1/n, P(all separate) = 1/n! for alpha = 1).

Splits (two bugs behind one signature). A signature is split into two units, whose halves
lie in different causes. How often a signature has two causes behind it is not known (generic
ones such as NaN or a collective timeout often do, specific ones rarely), so the share pi of
such signatures is a parameter with a uniform prior, integrated out (`log_split_pattern`):
a given set of s of the n signatures split has prior B(s + 1, n - s + 1); none split 1/(n + 1),
one given signature split 1/(n (n + 1)), i.e. 1/n of "none" (this replaced a fixed 0.15 per
signature, a number without a derivation: with two signatures it said 0.18 of "none", the
integrated prior says 1/2; with six and more it says less than 0.15 did). The split's region
is then chosen as the profiles choose theirs: a dimension with the profiles' weight
(`split_dim_weights`: an intervention W_INTERVENTION, an ordinary dimension (1 -
W_HOMOGENEOUS)/D, normalised), then one of its values uniformly (so 32 hosts do not make a
split by version 8x less likely than with 4 hosts); the two halves must lie in different
causes, so the CRP is renormalised by P(two given units apart) = alpha/(1+alpha).

Regions. A cause may be confined to a region (dimension d in a value set): by a user's claim
("cause A only on host node-17"), or because it holds the halves of a split signature ("the NaNs
outside version v4"). It then has no exposure outside: its profiles are scored on the exposure
inside the region, broken down along the other dimensions (Tables.restrict), and an incident
outside makes the hypothesis impossible (-inf). A claim pays the prior weight of a localised
profile. A cause holding a half of a split signature is always confined to the half's region:
a cause has one symptom mix everywhere, so if it fired outside the region it would have shown
the split signature there too, and the split gives all of those to the other cause; the hard
assignment of a split is consistent only with both causes confined. (It used to be confined
with half the prior weight and unconfined with the other half, which scored an inconsistent
model and made every split pay a factor 2 per cause for nothing.) Along an ordinary dimension
the confinement is free (the split paid for the region); along an intervention it pays the
weight of the "removed" profile (`_w_confined`): a split such as "the data errors without the
mitigation belong to the reduction bug" confines that whole cause to the unmitigated runs,
which is the mitigation removing it, and must not get that cheaper than a cause's own profile.

Limits: a profile varies along one dimension at a time (a cause that depends on both version
and host is scored by whichever explains it better; a split's confined halves are the one
way two dimensions combine: "the NaNs outside v4", on three seeds); user claims must name one
dimension per cause; rates per value are independent a priori (no smoothing between
neighbouring step ranges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from triage.analyze.hyp_evidence import Tables, Unit

ALPHA = 1.0  # Dirichlet concentration per unit; Gamma shape per unit
CRP_ALPHA = 1.0
FRAME_BETA = 0.5
W_HOMOGENEOUS = 0.5
W_INTERVENTION = 0.05  # prior probability that a given mitigation changes a given cause's rate


def is_intervention(dim: str) -> bool:
    """Run labels named mitigation* are interventions (a change made on purpose)."""
    return dim.startswith("mitigation")


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def logsumexp(xs: Sequence[float] | np.ndarray) -> float:
    arr = np.asarray(xs, dtype=float)
    if arr.size == 0:
        return -math.inf
    m = float(np.max(arr))
    if m == -math.inf:
        return -math.inf
    return m + math.log(float(np.sum(np.exp(arr - m))))


SUBSET_MAX_VALUES = 64  # the "only under some values" profile is summed over subsets up to here


def log_subset_sum(log_active: np.ndarray, can_be_off: np.ndarray) -> np.ndarray:
    """log of the "only under some values" marginal, for rows of values.

    `log_active` (R, V): log marginal of each value's counts with its own Gamma rate;
    `can_be_off` (R, V): the value has no incident (a zero rate is possible there; its
    likelihood is then exp(0) = 1). Sums over the active sets S (1 <= |S| <= V - 1, every value
    with an incident in S) with prior 1/(V - 1) for |S| (uniform) times 1/C(V, |S|) for the set:
    the elementary symmetric sums of the values' terms, by dynamic programming over values.
    """
    r, v = log_active.shape
    if v < 2:
        return np.full(r, -math.inf)
    dp = np.full((r, v + 1), -math.inf)
    dp[:, 0] = 0.0
    off = np.where(can_be_off, 0.0, -math.inf)
    for j in range(v):
        on = np.full((r, v + 1), -math.inf)
        on[:, 1:] = dp[:, :-1] + log_active[:, j:j + 1]
        dp = np.logaddexp(dp + off[:, j:j + 1], on)
    ks = np.arange(1, v)
    log_choose = np.array([math.lgamma(v + 1) - math.lgamma(k + 1) - math.lgamma(v - k + 1)
                           for k in ks])
    terms = dp[:, 1:v] - log_choose[None, :] - math.log(v - 1)
    top = terms.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = safe + np.log(np.exp(terms - safe[:, None]).sum(axis=1))
    return np.where(np.isfinite(top), out, -math.inf)


@dataclass(frozen=True)
class Claim:
    """A cause's rate is zero outside `values` of dimension `dim` (user hypotheses)."""

    dim: str
    values: frozenset[str]


@dataclass(frozen=True)
class ProfileFit:
    """One profile model's share of a cause's posterior, for explanations and predictions."""

    kind: str  # "homogeneous" | "per-value" | "localised" | "removed" | "confined" | "claim"
    dim: str | None
    value: str | None
    log_weight: float  # log prior weight + log marginal
    posterior: float = 0.0
    region: tuple[str, frozenset[str]] | None = None  # confined to this region


class Scorer:
    """Scores causes (sets of units) on fixed tables; caches by the units' keys.

    `dims` limits the dimensions used (for "which evidence moved it": leave one out).
    """

    def __init__(self, tables: Tables, *, dims: Iterable[str] | None = None,
                 frames: dict[str, frozenset[str]] | None = None, use_frames: bool = True):
        self.t = tables
        names = [d.name for d in tables.dims] if dims is None else list(dims)
        self.dims = tuple(d for d in tables.dims if d.name in names)
        n_inc = len(tables.incidents)
        k = max(1, len(tables.signatures))
        mu = (n_inc / tables.total_exposure / k) if n_inc and tables.total_exposure > 0 else 1.0
        self.b = ALPHA / mu if mu > 0 else 1.0
        self.log_b = math.log(self.b)
        self.frames = self._informative_frames(frames or {}) if use_frames else {}
        self._cache: dict[tuple, float] = {}
        self._counts: dict[str, tuple[int, list[np.ndarray]]] = {}
        self._lgamma_tables: dict[float, np.ndarray] = {}

    # -- helpers -----------------------------------------------------------------------------

    def _informative_frames(self, frames: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        sigs = [s for s in self.t.signatures if s in frames]
        if len(sigs) < 2:
            return {}
        seen: dict[str, int] = {}
        for s in sigs:
            for f in frames[s]:
                seen[f] = seen.get(f, 0) + 1
        keep = {f for f, c in seen.items() if 2 <= c < len(self.t.signatures)}
        return {s: frozenset(frames[s] & keep) for s in sigs} if keep else {}

    def unit_counts(self, unit: Unit) -> tuple[int, list[np.ndarray]]:
        got = self._counts.get(unit.key)
        if got is None:
            got = (int(unit.mask.sum()),
                   [np.bincount(d.index[unit.mask], minlength=len(d.values)).astype(float)
                    for d in self.dims])
            self._counts[unit.key] = got
        return got

    def _lg(self, a: float, n: np.ndarray) -> np.ndarray:
        """lgamma(a + n) for integer counts n, from a table per shape a (counts are small)."""
        table = self._lgamma_tables.get(a)
        top = int(n.max()) if n.size else 0
        if table is None or len(table) <= top:
            table = _lgamma(a + np.arange(max(top + 1, 64), dtype=float))
            self._lgamma_tables[a] = table
        return table[n.astype(np.int64)]

    def _gp(self, a: float, n: np.ndarray | float, e: np.ndarray | float) -> np.ndarray | float:
        """log Gamma-Poisson marginal (point-process form) of counts n over exposure e."""
        if isinstance(n, np.ndarray):
            return a * self.log_b - math.lgamma(a) + self._lg(a, n) - (a + n) * np.log(self.b + e)
        return a * self.log_b - math.lgamma(a) + math.lgamma(a + n) - (a + n) * math.log(self.b + e)

    # -- the cause ---------------------------------------------------------------------------

    def region(self, units: Sequence[Unit], claim: Claim | None) -> tuple[str, frozenset[str]] | None:
        """Where this cause may be confined: a claim, or the region of the split halves it holds."""
        if claim is not None:
            return claim.dim, claim.values
        regions = {u.region for u in units if u.region is not None}
        if len(regions) != 1:
            return None
        dim, values, inside = next(iter(regions))
        if not inside:
            values = frozenset(self.t.dim(dim).values) - values
        return dim, values

    def exposure(self, region: tuple[str, frozenset[str]] | None) -> tuple[float, list[np.ndarray]]:
        """Total exposure and exposure per value of each scored dimension, inside `region`."""
        key = ("exposure", region)
        got = self._cache.get(key)
        if got is None:
            if region is None:
                got = (self.t.total_exposure, [d.exposure for d in self.dims])
            else:
                total, per = self.t.restrict(*region)
                names = [d.name for d in self.t.dims]
                got = (total, [per[names.index(d.name)] for d in self.dims])
            self._cache[key] = got
        return got

    def profiles(self, units: Sequence[Unit], claim: Claim | None = None) -> list[ProfileFit]:
        """Every profile model of this cause with its log (prior weight x marginal).

        A cause may be confined to a region (no exposure outside it): always under a claim
        (paying the prior weight of a localised profile), and with half of the prior weight
        when it holds the halves of a split signature, since "NaN from a data
        bug that never fires on v4" is what such a split says. Confined profiles are scored
        on the exposure inside the region, along the other dimensions; an incident outside
        makes the confined model impossible.
        """
        fits = []
        for kind, dim, values, region, logs in self._terms(units, claim):
            if values is None:
                fits.append(ProfileFit(kind, dim, None, float(logs[0]), region=region))
            else:
                fits += [ProfileFit(kind, dim, v, float(lw), region=region)
                         for v, lw in zip(values, logs)]
        return fits

    def _terms(self, units: Sequence[Unit], claim: Claim | None) -> list[tuple]:
        """The profile models as (kind, dim, values or None, region, log weights array)."""
        a = len(units) * ALPHA
        counts = [self.unit_counts(u) for u in units]
        n_total = sum(c[0] for c in counts)
        region = self.region(units, claim)
        if claim is not None:
            d = next((d for d in self.t.dims if d.name == claim.dim), None)
            if d is None:
                return [("claim", claim.dim, None, region, np.array([-math.inf]))]
            penalty = math.log(self._w_localised(d.name)) - math.log(len(d.values))
            return self._terms_in(units, region, penalty, a, counts, n_total, True)
        if region is None:
            return self._terms_in(units, None, 0.0, a, counts, n_total, False)
        return self._terms_in(units, region, math.log(self._w_confined(region[0])), a, counts,
                              n_total, True)

    def _w_confined(self, dim: str) -> float:
        """Prior probability that a cause holding a half of a signature split along `dim` is
        confined to the half's region, given the split. It must be: a cause has one symptom
        mix everywhere, so a cause that fired outside its half's region would have shown the
        split signature there too, and the split gives every such incident to the other cause
        (the hard assignment is consistent only with both causes confined). Along an ordinary
        condition that is certain (1: the split prior paid for the region); along an
        intervention it is the change removing the cause, priced like the "removed" profile, so
        a split never makes a mitigation's effect cheaper than a cause's own profile can."""
        return self._w_removed(dim) if is_intervention(dim) else 1.0

    def _terms_in(self, units, region, penalty, a, counts, n_total, confined) -> list[tuple]:
        big_e, exps = self.exposure(region)
        if region is not None:
            rdim, rvals = region
            d = next((d for d in self.t.dims if d.name == rdim), None)
            if d is None:
                return [("confined", rdim, None, region, np.array([-math.inf]))]
            inside = np.array([v in rvals for v in d.values], dtype=bool)
            mask = np.zeros(len(self.t.incidents), dtype=bool)
            for u in units:
                mask |= u.mask
            if int((~inside[d.index[mask]]).sum()) or big_e <= 0:
                return [("confined", rdim, None, region, np.array([-math.inf]))]
        rdim = region[0] if region is not None else None
        out = [("confined" if confined else "homogeneous", rdim, None, region,
                np.array([penalty + math.log(self._w_homogeneous())
                          + float(self._gp(a, float(n_total), big_e))]))]
        for j, d in enumerate(self.dims):
            if region is not None and d.name == region[0]:
                continue
            exp_d = exps[j]
            nv = sum(c[1][j] for c in counts) if counts else np.zeros(len(d.values))
            per_value = self._gp(a, nv, exp_d)
            out.append(("per-value", d.name, None, region,
                        np.array([penalty + math.log(self._w_per_value(d.name))
                                  + float(np.sum(per_value))])))
            rest = self._gp(a, n_total - nv, big_e - exp_d)
            w = penalty + math.log(self._w_localised(d.name)) - math.log(len(d.values))
            keep = exp_d > 0  # no exposure there inside the region: not a profile of this cause
            out.append(("localised", d.name, tuple(v for v, k in zip(d.values, keep) if k), region,
                        (per_value + rest + w)[keep]))
            if self._has_subset(d, keep):
                sub = log_subset_sum(per_value[keep][None, :], (nv[keep] == 0)[None, :])
                out.append(("subset", d.name, None, region,
                            np.array([penalty + math.log(self._w_subset(d.name)) + float(sub[0])])))
            if is_intervention(d.name):
                # removed by value v: no incident under v, one steady rate elsewhere
                ok = keep & (nv == 0) & (big_e - exp_d > 0)
                w = penalty + math.log(self._w_removed(d.name)) - math.log(int(keep.sum()))
                out.append(("removed", d.name, tuple(v for v, k in zip(d.values, ok) if k),
                            region, (self._gp(a, n_total - nv, big_e - exp_d) + w)[ok]))
        return out

    def _n_dims(self) -> tuple[int, int]:
        """(ordinary dimensions, intervention dimensions) scored."""
        mit = sum(1 for d in self.dims if is_intervention(d.name))
        return len(self.dims) - mit, mit

    def _w_dim(self, dim: str) -> float:
        """Prior probability that a cause's profile varies along `dim`."""
        ordinary, _ = self._n_dims()
        if is_intervention(dim):
            return W_INTERVENTION
        return (1 - W_HOMOGENEOUS) / ordinary

    def _w_homogeneous(self) -> float:
        ordinary, mit = self._n_dims()
        return 1.0 - (1 - W_HOMOGENEOUS) * (ordinary > 0) - W_INTERVENTION * mit

    def _w_per_value(self, dim: str) -> float:
        return self._w_dim(dim) / 3

    def _w_localised(self, dim: str) -> float:
        return self._w_dim(dim) / 3

    def _w_subset(self, dim: str) -> float:
        """An ordinary condition's third kind of variation: the cause fires only under some of
        its values (a set of seeds, the late step ranges), with zero rate under the others."""
        return self._w_dim(dim) / 3

    @staticmethod
    def _has_subset(d, keep: np.ndarray) -> bool:
        return (not is_intervention(d.name)) and 2 <= int(keep.sum()) <= SUBSET_MAX_VALUES

    def _w_removed(self, dim: str) -> float:
        """An intervention's third kind of change: it removes the cause (rate zero under it)."""
        return self._w_dim(dim) / 3

    def cause(self, units: Sequence[Unit], claim: Claim | None = None) -> float:
        """log marginal likelihood of the incidents of these units as one cause."""
        key = (tuple(sorted(u.key for u in units)), claim)
        got = self._cache.get(key)
        if got is not None:
            return got
        k = len(units)
        counts = [self.unit_counts(u)[0] for u in units]
        n = sum(counts)
        mix = (math.lgamma(k * ALPHA) - math.lgamma(k * ALPHA + n)
               + sum(math.lgamma(ALPHA + c) - math.lgamma(ALPHA) for c in counts))
        profile = logsumexp(np.concatenate([t[4] for t in self._terms(units, claim)]))
        value = mix + profile + self._frames_term(units)
        self._cache[key] = value
        return value

    def causes_all_subsets(self, units: Sequence[Unit]) -> np.ndarray:
        """`cause(S)` for every subset S of `units` (by bitmask), vectorised over subsets.

        The same closed forms as `cause`, computed for all 2^K subsets at once: counts of a
        subset are a 0/1 matrix times the units' counts. Units must be unconfined (no split
        region), which is what the exact enumeration of partitions of signatures needs.
        Entry 0 (the empty set) is 0.
        """
        k = len(units)
        if any(u.region is not None for u in units):
            raise ValueError("causes_all_subsets takes whole signatures only")
        masks = np.arange(1 << k)
        member = ((masks[:, None] >> np.arange(k)[None, :]) & 1).astype(float)  # (2^K, K)
        size = member.sum(axis=1)
        a = size * ALPHA
        totals = np.array([self.unit_counts(u)[0] for u in units], dtype=float)
        n = member @ totals
        lg = _lgamma
        safe_a = np.where(a > 0, a, 1.0)
        base = safe_a * self.log_b - lg(safe_a)  # per subset
        mix = (lg(safe_a) - lg(safe_a + n)
               + member @ (lg(ALPHA + totals) - math.lgamma(ALPHA)))
        terms = [math.log(self._w_homogeneous()) + base + lg(safe_a + n)
                 - (safe_a + n) * math.log(self.b + self.t.total_exposure)]
        big_e = self.t.total_exposure
        for j, d in enumerate(self.dims):
            per_unit = np.stack([self.unit_counts(u)[1][j] for u in units])  # (K, V)
            nv = member @ per_unit  # (2^K, V)
            per_value = (base[:, None] + lg(safe_a[:, None] + nv)
                         - (safe_a[:, None] + nv) * np.log(self.b + d.exposure)[None, :])
            terms.append(math.log(self._w_per_value(d.name)) + per_value.sum(axis=1))
            rest_n = n[:, None] - nv
            rest = (base[:, None] + lg(safe_a[:, None] + rest_n)
                    - (safe_a[:, None] + rest_n) * np.log(self.b + big_e - d.exposure)[None, :])
            w = math.log(self._w_localised(d.name)) - math.log(len(d.values))
            keep = d.exposure > 0
            terms.append((per_value + rest + w)[:, keep].T)
            if self._has_subset(d, keep):
                sub = log_subset_sum(per_value[:, keep], nv[:, keep] == 0)
                terms.append(math.log(self._w_subset(d.name)) + sub)
            if is_intervention(d.name):
                ok = keep & (big_e - d.exposure > 0)
                w = math.log(self._w_removed(d.name)) - math.log(int(keep.sum()))
                removed = np.where(nv == 0, rest + w, -math.inf)
                terms.append(removed[:, ok].T)
        stacked = np.vstack([t if t.ndim == 2 else t[None, :] for t in terms])  # (M, 2^K)
        top = stacked.max(axis=0)
        profile = top + np.log(np.exp(stacked - top).sum(axis=0))
        out = mix + profile
        if self.frames:
            out = out + self._frames_all(units, member)
        out[0] = 0.0
        return out

    def _frames_all(self, units: Sequence[Unit], member: np.ndarray) -> np.ndarray:
        carry = np.array([float(u.signature in self.frames) for u in units])
        m = member @ carry
        total = np.zeros(len(member))
        for f in sorted(set().union(*self.frames.values())):
            has = np.array([float(u.signature in self.frames and f in self.frames[u.signature])
                            for u in units])
            kf = member @ has
            total += (_lgamma(FRAME_BETA + kf) + _lgamma(FRAME_BETA + m - kf)
                      - _lgamma(2 * FRAME_BETA + m) - _lbeta(FRAME_BETA, FRAME_BETA))
        return np.where(m > 0, total, 0.0)

    def _frames_term(self, units: Sequence[Unit]) -> float:
        if not self.frames:
            return 0.0
        carriers = [u for u in units if u.signature in self.frames and self._carries_frames(u)]
        if not carriers:
            return 0.0
        total = 0.0
        all_frames = set().union(*self.frames.values())
        m = len(carriers)
        for f in all_frames:
            k = sum(1 for u in carriers if f in self.frames[u.signature])
            total += (_lbeta(FRAME_BETA + k, FRAME_BETA + m - k) - _lbeta(FRAME_BETA, FRAME_BETA))
        return total

    def _carries_frames(self, unit: Unit) -> bool:
        """A split signature's frames count once: on its larger half (ties: the inside half)."""
        if unit.region is None:
            return True
        n = int(unit.mask.sum())
        whole = int((self.t.sig_index == self.t.signatures.index(unit.signature)).sum())
        return n > whole - n or (n == whole - n and unit.region[2])

    def profile_posterior(self, units: Sequence[Unit], claim: Claim | None = None) -> list[ProfileFit]:
        key = ("posterior", tuple(sorted(u.key for u in units)), claim)
        got = self._cache.get(key)
        if got is None:
            fits = self.profiles(units, claim)
            z = logsumexp([p.log_weight for p in fits])
            got = [ProfileFit(p.kind, p.dim, p.value, p.log_weight,
                              math.exp(p.log_weight - z) if z > -math.inf else 0.0, p.region)
                   for p in fits]
            self._cache[key] = got
        return got

    # -- predictions (for the next experiment) -------------------------------------------------

    def predicted_rate(self, units: Sequence[Unit], dim: str | None, value: str | None,
                       claim: Claim | None = None) -> float:
        """Posterior mean rate (per GPU-step) of this cause in a new run under dim=value.

        A plug-in of each profile's posterior mean rates, averaged over the profile posterior;
        along a dimension other than the profile's own, its rates are averaged with the exposure
        as weights. A profile confined to a region predicts zero outside it, and inside it a
        run that is not placed by the region's dimension spends only the region's share there.
        """
        avg, per_dim = self._rate_table(units, claim)
        if dim is None or dim not in per_dim:
            return avg
        d = self.t.dim(dim)
        if value not in d.values:
            return avg
        return float(per_dim[dim][d.values.index(value)])

    def _rate_table(self, units: Sequence[Unit], claim: Claim | None
                    ) -> tuple[float, dict[str, np.ndarray]]:
        key = ("rates", tuple(sorted(u.key for u in units)), claim)
        got = self._cache.get(key)
        if got is not None:
            return got
        a = len(units) * ALPHA
        counts = [self.unit_counts(u) for u in units]
        n_total = sum(c[0] for c in counts)
        names = [d.name for d in self.dims]
        avg = 0.0
        per_dim = {d.name: np.zeros(len(d.values)) for d in self.t.dims}
        for p in self.profile_posterior(units, claim):
            if p.posterior <= 0:
                continue
            big_e, exps = self.exposure(p.region)
            if big_e <= 0:
                continue
            if p.kind in ("homogeneous", "confined"):
                own, vec = None, None
                mean = (a + n_total) / (self.b + big_e)
            else:
                j = names.index(p.dim)
                d = self.dims[j]
                exp_d = exps[j]
                nv = sum(c[1][j] for c in counts)
                if p.kind == "per-value":
                    vec = (a + nv) / (self.b + exp_d)
                elif p.kind == "subset":
                    vec = self._subset_active(a, nv, exp_d) * (a + nv) / (self.b + exp_d)
                elif p.kind == "removed":
                    u = d.values.index(p.value)
                    vec = np.full(len(d.values), (a + n_total) / (self.b + big_e - exp_d[u]))
                    vec[u] = 0.0
                else:
                    u = d.values.index(p.value)
                    vec = np.full(len(d.values), (a + n_total - nv[u]) / (self.b + big_e - exp_d[u]))
                    vec[u] = (a + nv[u]) / (self.b + exp_d[u])
                own = d.name
                mean = float(np.sum(vec * exp_d) / big_e)
            share = 1.0 if p.region is None else big_e / self.t.total_exposure
            avg += p.posterior * share * mean
            for d in self.t.dims:
                contrib = vec if own == d.name else np.full(len(d.values), mean)
                if p.region is not None:
                    if d.name == p.region[0]:
                        inside = np.array([v in p.region[1] for v in d.values], dtype=float)
                        contrib = contrib * inside
                    else:
                        contrib = contrib * share
                per_dim[d.name] += p.posterior * contrib
        got = (avg, per_dim)
        self._cache[key] = got
        return got

    def _subset_active(self, a: float, nv: np.ndarray, exp_d: np.ndarray) -> np.ndarray:
        """Posterior probability that each value is in the active set of a "subset" profile."""
        keep = exp_d > 0
        idx = np.flatnonzero(keep)
        out = np.zeros(len(nv))
        if len(idx) < 2:
            return out
        lg = self._gp(a, nv[idx], exp_d[idx])
        off = nv[idx] == 0
        forced = np.repeat(off[None, :], len(idx), axis=0)
        forced[np.arange(len(idx)), np.arange(len(idx))] = False
        rows = np.vstack([off[None, :], forced])
        got = log_subset_sum(np.repeat(lg[None, :], len(rows), axis=0), rows)
        if not np.isfinite(got[0]):
            return out
        out[idx] = np.exp(np.minimum(got[1:] - got[0], 0.0))
        return out


def _lbeta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def log_crp(block_sizes: Sequence[int], alpha: float = CRP_ALPHA) -> float:
    """log CRP probability of one partition with these block sizes."""
    n = sum(block_sizes)
    return (len(block_sizes) * math.log(alpha) + math.lgamma(alpha) - math.lgamma(alpha + n)
            + sum(math.lgamma(s) for s in block_sizes))


def n_split_choices(tables: Tables) -> int:
    """How many one-value splits a signature could have."""
    return max(1, sum(len(d.values) for d in tables.dims))


def split_dim_weights(tables: Tables) -> dict[str, float]:
    """Prior probability of each dimension as the one a split is made along: as a rate profile
    weighs its dimension (`Scorer._w_dim`: (1 - W_HOMOGENEOUS)/D for each of the D ordinary
    dimensions, W_INTERVENTION for each intervention), normalised over the dimensions."""
    names = [d.name for d in tables.dims]
    ordinary = sum(1 for n in names if not is_intervention(n))
    raw = {n: W_INTERVENTION if is_intervention(n) else (1 - W_HOMOGENEOUS) / ordinary
           for n in names}
    total = sum(raw.values())
    return {n: w / total for n, w in raw.items()} if total > 0 else {}


def log_split_choice(tables: Tables, dim: str | None) -> float:
    """log prior of one split's choice of (dimension, value), given that the signature splits:
    a dimension as the rate profiles weigh them (`split_dim_weights`), then one of its values
    uniformly (1/|V_d|). Without the dimension (a caller that only counts splits): uniform over
    every (dimension, value) pair."""
    sizes = {d.name: len(d.values) for d in tables.dims}
    if dim is None or dim not in sizes:
        return -math.log(n_split_choices(tables))
    return math.log(split_dim_weights(tables)[dim]) - math.log(max(1, sizes[dim]))


def log_prior(block_sizes: Sequence[int], n_signatures: int, n_split: int, tables: Tables,
              split_dims: Sequence[str] | None = None) -> float:
    """Prior of a hypothesis: CRP over its units, which signatures are split
    (`log_split_pattern`) and along what (`log_split_choice`).

    `n_split` signatures are each split into two units whose halves lie apart (renormalised
    by alpha/(1+alpha) each, an exact correction for one split, close for more); `split_dims`,
    when given, names the dimension of each split (see `log_split_choice`).
    """
    value = log_crp(block_sizes) + log_split_pattern(n_signatures, n_split)
    if n_split:
        dims = list(split_dims) if split_dims is not None and len(split_dims) == n_split \
            else [None] * n_split
        for dim in dims:
            value += log_split_choice(tables, dim) - math.log(CRP_ALPHA / (1 + CRP_ALPHA))
    return value


def log_split_pattern(n_signatures: int, n_split: int) -> float:
    """log prior that these `n_split` of the `n_signatures` signatures (a given set) each have
    two causes behind them and the others one: the share of such signatures is unknown, uniform
    on [0, 1], and integrated out (Beta-Bernoulli): B(s + 1, n - s + 1) = s! (n - s)! / (n + 1)!.
    No split: 1/(n + 1); one given signature split: 1/(n (n + 1)), 1/n of that."""
    n, s = max(0, n_signatures), max(0, min(n_split, n_signatures))
    return math.lgamma(s + 1) + math.lgamma(n - s + 1) - math.lgamma(n + 2)
