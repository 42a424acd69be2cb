"""The hypothesis ledger: one bug or many, answered with numbers.

`analyse(evidence, user=...)` scores every hypothesis considered (see hyp_search) by marginal
likelihood under the model of hyp_model and returns a `Ledger`: the posterior over them,
P(one bug), the best explanation (its causes, each with its incidents, signatures, runs and the
conditions it lives in), Bayes factors against the one-bug hypothesis, and the evidence that
moved the answer most, in words. `Ledger.to_json()` is the public `triage.hypotheses/1`
contract. `next_experiment` (hyp_next) ranks experiments by expected information gain;
`replay` recomputes the ledger as runs were added (the log).

Module map
    hyp_evidence  inputs (RunObs, IncidentObs, Evidence) -> condition tables with exposure
    hyp_ledger    the result: scored hypotheses, P(one bug), JSON, explanations in words
    hyp_model     closed-form marginal likelihood of a cause; the prior over hypotheses
    hyp_search    which hypotheses are considered (exact, search, latent-class splits)
    hyp_user      the user's YAML hypotheses, compiled to causes
    hyp_next      expected information gain of candidate experiments
    hypotheses    this module: the analysis, the case adapter, the replay (log)

"Which evidence moved it" is computed, not narrated: the log Bayes factor of the best
explanation against one bug (or against the runner-up when one bug is best) is recomputed with
each condition dimension left out of the model (and with frames left out); the drop is that
dimension's share. The words then describe, for each cause of the best explanation, the rate
profile with the highest posterior ("S2 and S4 occur only with version=v2: 12 of 12
incidents on 50% of the GPU-steps").

Invariants
- Posteriors of all considered hypotheses (materialised ones plus the enumerated rest) sum to 1.
- Output is deterministic: signatures are labelled S1, S2, ... by incident count then id;
  hypotheses sorted by posterior then canonical key.
- Renaming signatures or reordering runs changes labels only, never a number.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from triage.analyze.hyp_evidence import Evidence, IncidentObs, RunObs, Tables, build_tables
from triage.analyze.hyp_ledger import (SCHEMA, CauseView, Ledger, Scored, Verdict, _label_key,
                                       _r)
from triage.analyze.hyp_model import Scorer, logsumexp
from triage.analyze.hyp_search import (EXACT_MAX, KEEP, SPLIT_BASES, Considered, Hyp,
                                       enumerate_partitions, local_search, partitions_from_masks,
                                       score, split_hypotheses)
from triage.analyze.hyp_user import HypothesisSpec, compile_spec
from triage.errors import InputError

__all__ = ["SCHEMA", "Ledger", "Scored", "CauseView", "Verdict", "analyse", "analyse_case",
           "evidence_from_case", "replay", "LogPoint", "stored_hypotheses", "signature_labels"]


# -- the analysis ----------------------------------------------------------------------------


def analyse(evidence: Evidence, user: Sequence[tuple[HypothesisSpec, str]] = (),
            *, materialise: int = KEEP, explain: bool = True,
            exact_max: int = EXACT_MAX, labels: dict[str, str] | None = None) -> Ledger:
    """Score the hypotheses over the incidents of `evidence`. `user`: (spec, where) pairs.

    Up to `exact_max` signatures every partition is enumerated; beyond, they are searched.
    """
    tables = build_tables(evidence)
    if not tables.incidents:
        raise InputError("no incidents to explain", where="case",
                         hint="ingest failed runs first: triage ingest LOGS --run NAME")
    scorer = Scorer(tables, frames=dict(evidence.frames))
    considered = consider(scorer, user, materialise, exact_max)
    considered.notes = list(evidence.notes) + considered.notes
    ledger = _ledger(tables, scorer, considered, evidence, labels)
    if explain:
        _attribute(ledger, evidence, user, materialise)
    return ledger


def consider(scorer: Scorer, user: Sequence[tuple[HypothesisSpec, str]] = (),
             materialise: int = KEEP, exact_max: int = EXACT_MAX) -> Considered:
    t = scorer.t
    units = [t.signature_unit(s) for s in t.signatures]
    k = len(units)
    hyps: dict[tuple, Hyp] = {}
    rest = -math.inf
    exact = k <= exact_max
    n_considered = 0
    if exact:
        masks, joint = enumerate_partitions(scorer, units)
        n_considered = len(joint)
        order = np.lexsort((np.arange(len(joint)), -joint))
        keep = set(order[:materialise].tolist()) | {0, len(joint) - 1}  # one-bug, all-separate
        for i in sorted(keep):
            h = score(scorer, partitions_from_masks(masks[i], units), None, "partition", 0, k)
            hyps[h.key] = h
        rest_mask = np.ones(len(joint), dtype=bool)
        rest_mask[sorted(keep)] = False
        rest = logsumexp(joint[rest_mask]) if rest_mask.any() else -math.inf
    else:
        found = local_search(scorer, units, k)
        for h in found.values():
            hyps.setdefault(h.key, h)
        for parts in ([units], [[u] for u in units]):
            h = score(scorer, parts, None, "partition", 0, k)
            hyps.setdefault(h.key, h)
        n_considered = len(hyps)
    bases = sorted(hyps.values(), key=lambda h: (-h.log_joint, h.key))[:SPLIT_BASES]
    for h in split_hypotheses(scorer, bases, k):
        if h.key not in hyps:
            hyps[h.key] = h
            n_considered += 1
    for spec, where in user:
        causes, claims, n_split = compile_spec(spec, t, where)
        h = score(scorer, causes, claims, "user", n_split, k, spec.name, spec.note)
        if h.key in hyps and hyps[h.key].kind != "user":
            # the same hypothesis as an automatic one: one entry, the user's name
            old = hyps[h.key]
            hyps[h.key] = Hyp(old.causes, old.claims, old.log_evidence, old.log_prior, "user",
                              spec.name, spec.note)
        else:
            if h.key not in hyps:
                n_considered += 1
            hyps[h.key] = h
    notes = [] if exact else [f"{k} signatures: more than {exact_max}, so the partitions were "
                              "searched (greedy merge and split with every single move scored), "
                              "not enumerated; posteriors are over the partitions visited"]
    return Considered(list(hyps.values()), rest, exact, n_considered, notes)


def signature_labels(tables: Tables) -> dict[str, str]:
    """S1, S2, ... by number of incidents (most first), then signature id."""
    counts = np.bincount(tables.sig_index, minlength=len(tables.signatures))
    order = sorted(range(len(tables.signatures)), key=lambda i: (-counts[i], tables.signatures[i]))
    return {tables.signatures[i]: f"S{n + 1}" for n, i in enumerate(order)}


def _ledger(tables: Tables, scorer: Scorer, considered: Considered, ev: Evidence,
            given: dict[str, str] | None = None) -> Ledger:
    labels = signature_labels(tables)
    if given is not None and all(s in given for s in tables.signatures):
        labels = {s: given[s] for s in tables.signatures}
    log_z = considered.log_z
    k = len(tables.signatures)
    scored = []
    for h in considered.hyps:
        post = math.exp(h.log_joint - log_z) if h.log_joint > -math.inf else 0.0
        scored.append(Scored(h, _hyp_id(h, tables), _name(h, labels, k), post,
                             _causes(h, tables, labels)))
    scored.sort(key=lambda s: (-s.hyp.log_joint, s.hyp.key))
    units = [tables.signature_unit(s) for s in tables.signatures]
    one_key = score(scorer, [units], None, "partition", 0, k).key
    sep_key = score(scorer, [[u] for u in units], None, "partition", 0, k).key
    one = next(s for s in scored if s.hyp.key == one_key)
    sep = next(s for s in scored if s.hyp.key == sep_key)
    titles = dict(ev.titles)
    return Ledger(tables, scorer, considered, scored, labels, titles, one, sep)


def _hyp_id(h: Hyp, t: Tables) -> str:
    parts = []
    for c, cl in zip(h.causes, h.claims):
        parts.append("+".join(sorted(u.key for u in c)) + (f"@{cl.dim}={sorted(cl.values)}" if cl else ""))
    digest = hashlib.sha1("|".join(sorted(parts)).encode()).hexdigest()[:8]
    return f"h-{digest}"


def _name(h: Hyp, labels: dict[str, str], k: int) -> str:
    if h.kind == "user":
        return h.name
    if len(h.causes) == 1:
        return "one bug"
    if h.kind == "partition" and len(h.causes) == k:
        return "each signature its own bug"
    groups = []
    for c in h.causes:
        names = []
        for u in c:
            lab = labels[u.signature]
            if u.region is not None:
                dim, vals, inside = u.region
                lab += f"[{dim}{'=' if inside else '!='}{','.join(sorted(vals))}]"
            names.append(lab)
        groups.append("{" + ", ".join(sorted(names, key=_label_key)) + "}")
    groups.sort(key=lambda g: (_label_key(g[1:].split(",")[0].split("[")[0].rstrip("}")), g))
    prefix = "split: " if h.kind == "split" else ""
    return prefix + " ".join(groups)


def _causes(h: Hyp, t: Tables, labels: dict[str, str]) -> tuple[CauseView, ...]:
    views = []
    for units, claim in zip(h.causes, h.claims):
        mask = np.zeros(len(t.incidents), dtype=bool)
        for u in units:
            mask |= u.mask
        idx = np.flatnonzero(mask)
        incs = [t.incidents[i] for i in idx]
        conditions = {}
        for d in t.dims:
            conditions[d.name] = sorted({d.values[d.index[i]] for i in idx})
        sigs = tuple(sorted({u.signature for u in units}, key=lambda s: _label_key(labels[s])))
        views.append((int(mask.sum()), sigs, units, claim, incs, conditions))
    views.sort(key=lambda v: (-v[0], _label_key(labels[v[1][0]])))
    out = []
    for n, (size, sigs, units, claim, incs, conditions) in enumerate(views):
        out.append(CauseView(f"C{n + 1}", sigs, tuple(sorted({i.run for i in incs})),
                             tuple(sorted(i.id for i in incs)), conditions,
                             tuple(units), claim))
    return tuple(out)


def _attribute(ledger: Ledger, ev: Evidence, user, materialise: int) -> None:
    """Leave each dimension (and frames) out; the change in log10 odds is its share."""
    best = ledger.best
    ref = ledger.one_bug if best.hyp.key != ledger.one_bug.hyp.key else (
        ledger.scored[1] if len(ledger.scored) > 1 else None)
    ledger.reference = ref
    if ref is None:
        return
    t = ledger.tables
    full = (best.hyp.log_joint - ref.hyp.log_joint) / math.log(10)
    variants: list[tuple[str, Scorer]] = []
    names = [d.name for d in t.dims]
    for name in names:
        variants.append((f"{name} ({len(t.dim(name).values)} values)",
                         Scorer(t, dims=[n for n in names if n != name],
                                frames=dict(ev.frames))))
    if ledger.scorer.frames:
        variants.append(("shared stack frames", Scorer(t, frames=dict(ev.frames), use_frames=False)))
    moved = []
    k = len(t.signatures)
    for what, sc in variants:
        b = score(sc, best.hyp.causes, best.hyp.claims, best.hyp.kind,
                  _n_split(best.hyp), k)
        r = score(sc, ref.hyp.causes, ref.hyp.claims, ref.hyp.kind, _n_split(ref.hyp), k)
        without = (b.log_joint - r.log_joint) / math.log(10)
        moved.append((what, full - without))
    moved.sort(key=lambda m: (-abs(m[1]), m[0]))
    ledger.moved = moved


def _n_split(h: Hyp) -> int:
    per: dict[str, int] = {}
    for c in h.causes:
        for u in c:
            per[u.signature] = per.get(u.signature, 0) + 1
    return sum(1 for v in per.values() if v > 1)


# -- the case adapter ------------------------------------------------------------------------


def evidence_from_case(store) -> Evidence:
    """Read runs (with exposure), incidents and signatures from a `triage.case.CaseStore`.

    Exposure is GPU-steps. A run that failed before its logs showed a step completed none: its
    exposure is zero and its incident's onset is step 0 (a data error in the first batch). But
    when a run that did not fail shows no steps, or no run shows any, the logs do not show
    steps, GPU-steps cannot be compared across runs, and every run counts as one unit of
    exposure instead (its hosts sharing it by their number of ranks) and the step-range
    dimension is left out; the ledger says so in its notes.
    """
    runs = []
    rank_hosts: dict[str, dict[int, str]] = {}
    all_runs = store.runs()
    per_run = (all(r.gpu_steps <= 0 for r in all_runs)
               or any(r.gpu_steps <= 0 and not r.failed for r in all_runs))
    early = {r.name for r in all_runs if r.gpu_steps <= 0 and r.failed and not per_run}
    notes: tuple[str, ...] = ()
    if per_run and all_runs:
        notes = ("some runs show no training steps, so exposure is counted in runs, not "
                 "GPU-steps, and onset (step range) is not used",)
    elif early:
        notes = (f"{len(early)} failed run(s) show no completed step while the others do: "
                 "counted as failing in their first step (no exposure, onset step 0)",)
    for r in all_runs:
        rank_hosts[r.name] = r.hosts
        labels = {str(k): str(v) for k, v in r.labels.items()}
        if r.seed is not None:
            labels.setdefault("seed", str(r.seed))
        if r.version is not None:
            labels.setdefault("version", str(r.version))
        host_steps = {}
        if r.ranks and all(k.host is not None for k in r.ranks):
            host_steps = {h: float(s) for h, s in r.host_steps.items()}
        if per_run:
            hosts = [k.host for k in r.ranks if k.host is not None]
            host_steps = ({h: hosts.count(h) / len(hosts) for h in sorted(set(hosts))}
                          if hosts and len(hosts) == len(r.ranks) else {})
            runs.append(RunObs(r.name, 1.0, labels, host_steps, None))
            continue
        steps = 0 if r.name in early and r.steps_completed is None else r.steps_completed
        runs.append(RunObs(r.name, float(r.gpu_steps), labels, host_steps, steps))
    incidents = []
    frames: dict[str, set[str]] = {}
    for inc in store.incidents():
        for o in (inc.root, *inc.symptoms, *inc.independent):
            site = raise_site(o.frames)
            if site is not None:
                frames.setdefault(o.signature, set()).add(site)
        root = inc.root
        ident = inc.run if root.rank is None else f"{inc.run}:r{root.rank}"
        host = root.host
        if host is None and root.rank is not None:  # the run's rank -> host map knows it
            host = rank_hosts.get(inc.run, {}).get(root.rank)
        step = 0 if root.step is None and inc.run in early else root.step
        incidents.append(IncidentObs(ident, inc.run, root.signature,
                                     tuple(s for s in inc.signatures if s != root.signature),
                                     host, root.rank, step))
    titles = {s.id: f"{s.family}: {s.template}" for s in store.signatures()}
    return Evidence(tuple(runs), tuple(incidents),
                    {sig: frozenset(sites) for sig, sites in frames.items()}, titles, notes)


def raise_site(frames) -> str | None:
    """Where a traceback was raised, as a frame key for the model: its innermost frame's file
    name and function ("model.py:forward"). Only the innermost: outer frames (train.py:main,
    the launcher's wrapper) are on every trace of a script, and would pull every signature
    with a traceback together."""
    if not frames:
        return None
    f = frames[-1]
    name = f.file.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{name}:{f.function}"


# -- the log ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPoint:
    runs: int
    run: str
    incidents: int
    signatures: int
    p_one_bug: float
    best: str
    best_posterior: float

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "run": self.run, "incidents": self.incidents,
                "signatures": self.signatures, "p_one_bug": _r(self.p_one_bug),
                "best": self.best, "best_posterior": _r(self.best_posterior)}


def replay(evidence: Evidence, user: Sequence[tuple[HypothesisSpec, str]] = (),
           max_points: int = 25) -> list[LogPoint]:
    """The ledger after each run was added (at most `max_points`, evenly spaced, always the last).

    Runs are taken in the order of the evidence (the case: ingestion order). Points before the
    first incident are skipped; user hypotheses naming signatures not yet seen are left out of
    that point. Signatures keep the labels (S1, S2, ...) they have with all the evidence.
    """
    n = len(evidence.runs)
    final = signature_labels(build_tables(evidence))
    first = next((k for k in range(1, n + 1) if evidence.upto(k).incidents), None)
    if first is None:
        return []
    ks = list(range(first, n + 1))
    if len(ks) > max_points:
        step = (len(ks) - 1) / (max_points - 1)
        ks = sorted({ks[round(i * step)] for i in range(max_points)})
    out = []
    for k in ks:
        ev = evidence.upto(k)
        ok_user = []
        for spec, where in user:
            try:
                compile_spec(spec, build_tables(ev), where)
                ok_user.append((spec, where))
            except InputError:
                continue
        led = analyse(ev, ok_user, materialise=5, explain=False, labels=final)
        out.append(LogPoint(k, evidence.runs[k - 1].name, len(ev.incidents),
                            len(led.tables.signatures), led.p_one_bug, led.best.name,
                            led.best.posterior))
    return out


# -- the case: user hypotheses and the posterior log ---------------------------------------


def stored_hypotheses(store) -> list[tuple[HypothesisSpec, str]]:
    """The user's hypotheses in the case, re-validated: (spec, where) pairs."""
    from triage.analyze.hyp_user import parse_spec
    from triage.case.hypotheses import HypothesisDAO
    out = []
    for h in HypothesisDAO(store).all():
        out.append((parse_spec(h.yaml, f"hypothesis {h.name!r} (added from {h.source})"),
                    f"hypothesis {h.name!r}"))
    return out


def evidence_digest(ev: Evidence, user: Sequence[tuple[HypothesisSpec, str]] = ()) -> str:
    """A stable digest of what was scored (for the posterior log)."""
    import json as _json
    blob = {
        "runs": sorted([r.name, r.gpu_steps, sorted(r.labels.items()), sorted(r.host_steps.items()),
                        r.steps] for r in ev.runs),
        "incidents": sorted([i.id, i.run, i.signature, i.host, i.rank, i.step]
                            for i in ev.incidents),
        "user": sorted(s.model_dump_json() for s, _ in user),
    }
    return hashlib.sha256(_json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def analyse_case(store, *, record: bool = True, limit: int = 10) -> tuple[Ledger, Evidence]:
    """Read the case, score it, and (unless `record=False`) append to the posterior log."""
    ev = evidence_from_case(store)
    user = stored_hypotheses(store)
    ledger = analyse(ev, user)
    if record:
        from triage.case.hypotheses import HypothesisDAO
        HypothesisDAO(store).record(runs=len(ev.runs), incidents=len(ev.incidents),
                                    digest=evidence_digest(ev, user),
                                    p_one_bug=_r(ledger.p_one_bug), best=ledger.best.name,
                                    best_posterior=_r(ledger.best.posterior),
                                    result=ledger.to_json(limit))
    return ledger, ev
