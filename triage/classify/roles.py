"""Root cause versus symptoms: which failure to fix, and which are only its echoes.

When one rank dies, the others report timeouts, reset connections, aborted communicators and
SIGTERMs from the agent. Those are symptoms. The root cause is chosen like this:

1. Candidates are failures whose rule says a match is typically a root cause (its own error:
   an exception, OOM, CUDA error, NaN, a SIGKILL/SIGSEGV exit, a hardware event).
2. The earliest candidate wins: by timestamp when every candidate has one (a line's own stamp,
   else the stamp of the same rank's previous line), else by the step it happened at, else by
   position in the input. Ties fall to input order, never to the order files were listed in a
   directory: inputs are sorted naturally before the scan.
3. With no candidate, every failure is a consequence of something silent: a hang. The hang
   analysis (triage.analyze.hang) lines the ranks up by process group and sequence number and
   names the rank that is behind or missing; that rank is the root cause (family `hang`). If it
   cannot single anyone out, the earliest symptom is reported as root with an honest `why`.

Elastic's "Root Cause (first observed failure)" is only evidence: it is the earliest of
whole-second timestamps on one node and often names a rank that merely timed out.
Roles of the rest: a symptom rule -> "symptom"; a later failure on the root's own rank, or a
chained exception -> "symptom"; any other root-type failure -> "independent". One exception: when
the root is a silent divergence between ranks (rule `numerics.rank_divergence`, from the probe's
records or its log line), a NaN, a loss-scale collapse or a desync at or after it, on any rank, is
its symptom: replicas holding different parameters produce exactly those (a wrong sum on rank 1
shows up as a NaN on rank 2 steps later).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from triage.records import Role

INF = math.inf


@dataclass(frozen=True)
class Verdict:
    root: Any | None  # the chosen occurrence (an object with the Occ attributes)
    root_family: str | None  # may differ from root.family (hang)
    root_rank: int | None
    why: str
    hang: Any = None
    synthetic: bool = False  # the root is inferred (a silent rank), not a line of its own
    advice: str | None = None  # playbook whose advice fits an inferred root (the timeout rule)


def order_key(o) -> tuple:
    return (o.input_index, o.offset)


def _earliest(cands: Sequence[Any]) -> Any:
    if all(c.time_key is not None for c in cands):
        return min(cands, key=lambda c: (c.time_key,) + order_key(c))
    return min(cands, key=lambda c: (c.step if c.step is not None else INF,) + order_key(c))


def _where(o) -> str:
    parts = [f"rank {o.rank}" if o.rank is not None else "an unattributed line"]
    if o.step is not None:
        parts.append(f"step {o.step}")
    if o.time:
        parts.append(o.time)
    return ", ".join(parts)


def choose_root(occs: Sequence[Any], *, hang_analysis: Callable[[], Any] | None = None) -> Verdict:
    if not occs:
        return Verdict(None, None, None, "no failure found")
    cands = [o for o in occs if o.rule_role == "root" and not o.chained]
    if cands:
        root = _earliest(cands)
        wrapper = None
        deeper = _deeper_on_same_rank(root, occs)
        if deeper is not None:
            wrapper, root = root, deeper
        echo = root.rule == DIVERGENCE_RULE
        others = sorted({c.rank for c in cands if c.rank is not None and c.rank != root.rank
                         and not (echo and c.family in DIVERGENCE_ECHOES)})
        basis = ("earliest timestamp" if all(c.time_key is not None for c in cands)
                 else "earliest step and position" if len(cands) > 1 else "only failure of its own")
        why = f"first failure of its own ({root.family}, rule {root.rule}) at {_where(root)}; {basis}"
        probe = root.fields.get("probe") if echo and isinstance(root.fields, dict) else None
        if probe:
            f = root.fields
            who = (f"rank(s) {f['odd_ranks']} differ from rank(s) {f['majority']}"
                   if f.get("odd_ranks") else f"no majority: {f.get('groups', '')}")
            why += (f"; the probe's records: parameter checksums at step {f.get('step')} "
                    f"disagree, {who}, before any log line said so (triage diverge {probe})")
        if wrapper is not None:
            why += (f"; the deepest failure visible on rank {root.rank}: the {wrapper.family} "
                    f"line ({wrapper.rule}) only wraps it")
        if others:
            why += f"; other ranks with errors of their own: {_short(others)}"
        symptoms = sum(1 for o in occs if o.rule_role == "symptom" or (
            echo and o.family in DIVERGENCE_ECHOES and o.rank != root.rank))
        if symptoms:
            why += f"; {symptoms} symptom occurrence(s) on other ranks follow from it"
        el = [o for o in occs if o.elastic_root and o.rank is not None and o.rank != root.rank]
        if el:
            why += (f"; elastic's 'Root Cause' names rank {el[0].rank}, but that is the earliest "
                    "whole-second exit on one node, not the first failure")
        return Verdict(root, root.family, root.rank, why)
    # Only symptoms: something went silent. Ask the hang analysis who.
    verdict = hang_analysis() if hang_analysis is not None else None
    first = _earliest(list(occs))
    if verdict is not None and getattr(verdict, "verdict", None) == "culprit" and verdict.culprits:
        culprit = verdict.culprits[0]
        own = [o for o in occs if o.rank == culprit]
        root = _earliest(own) if own else first
        states = getattr(verdict, "ranks", {}) or {}
        st = states.get(culprit)
        family = ("collective_mismatch" if getattr(st, "state", None) in ("off_script", "mismatch")
                  else "hang")
        why = (f"no rank reported an error of its own; hang analysis: {verdict.why}")
        if not own:
            why += f" (the line quoted is the earliest symptom, on rank {first.rank})"
        timeouts = [o for o in occs if o.family in ("collective_timeout", "collective_mismatch",
                                                    "comm_error")]
        advice = _earliest(timeouts).rule if timeouts else None  # the others' symptom explains it
        return Verdict(root, family, culprit, why, verdict, synthetic=not own, advice=advice)
    why = (f"no rank reported an error of its own; the earliest failure is this {first.family} "
           f"at {_where(first)}")
    if verdict is not None:
        why += f"; hang analysis undecided: {getattr(verdict, 'why', '')}"
    return Verdict(first, first.family, first.rank, why, verdict)


DIVERGENCE_RULE = "numerics.rank_divergence"
# what replicas that hold different parameters go on to report
DIVERGENCE_ECHOES = frozenset({"nonfinite", "loss_scale", "collective_mismatch"})
SHALLOW = frozenset({"signal", "python_exception", "other"})
NEAR_SECONDS = 5.0
NEAR_BYTES = 16384


def _near(a, b) -> bool:
    if a.time_key is not None and b.time_key is not None:
        return abs(a.time_key - b.time_key) <= NEAR_SECONDS
    return a.input_index == b.input_index and abs(a.offset - b.offset) <= NEAR_BYTES


def _deeper_on_same_rank(root, occs: Sequence[Any]):
    """A root gets the deepest family visible (DESIGN.md): when the first failure is a wrapper
    (a signal, a generic exception, `terminate called after throwing`), a more specific failure
    of the same rank at the same moment is the root cause it wraps."""
    if root.family not in SHALLOW or root.rank is None or root.rule == DIVERGENCE_RULE:
        return None  # a divergence is already the deepest cause: what follows is its echo
    near = [o for o in occs if o is not root and o.rank == root.rank and o.family not in SHALLOW
            and o.family not in ("collective_timeout", "comm_error") and _near(o, root)]
    return _earliest(near) if near else None


def role_of(o, verdict: Verdict) -> tuple[str, str]:
    """(role, why) of a failure that is not the root cause."""
    root = verdict.root
    rr = verdict.root_rank
    cause = f"rank {rr}" if rr is not None else "the root cause"
    if root is not None and o is root:
        return Role.ROOT.value, verdict.why
    if o.rule_role == "symptom":
        return Role.SYMPTOM.value, f"{o.family} is typically a consequence of another rank's failure; here of {cause}"
    if o.chained:
        return Role.SYMPTOM.value, "raised while handling an earlier exception on the same rank"
    if root is not None and getattr(root, "rule", None) == DIVERGENCE_RULE and \
            o.family in DIVERGENCE_ECHOES and (o.step is None or root.step is None
                                               or o.step >= root.step):
        at = f" at step {root.step}" if root.step is not None else ""
        return Role.SYMPTOM.value, (f"{o.family} after the ranks' parameters diverged{at} "
                                    f"(odd {cause}): replicas that disagree produce it")
    if rr is not None and o.rank == rr and root is not None:
        return Role.SYMPTOM.value, f"another report of rank {rr}'s failure (a wrapper or a later error)"
    return Role.INDEPENDENT.value, f"an error of its own on {_where(o)}, not explained by {cause}"


def _short(ranks: list[int], limit: int = 8) -> str:
    text = ", ".join(str(r) for r in ranks[:limit])
    return text + (f" and {len(ranks) - limit} more" if len(ranks) > limit else "")
