"""The evidence the hypothesis ledger scores: runs with exposure, incidents with conditions.

This module turns plain input records (`RunObs`, `IncidentObs`, `Evidence`) into `Tables`: for
every condition dimension (a run label such as `version`, `seed` or `mitigation`, the `host`
an incident happened on, and the `steps` range it happened in), the list of values, the
exposure (GPU-steps) spent under each value, and for every incident the index of its value.
The scoring in `hyp_model` reads only these tables.

Exposure is what makes counts comparable: a run that did not fail still adds its GPU-steps to
every value it ran under, so "S2 only with version v2" means "no S2 in the N GPU-steps spent on
v1", not merely "no S2 seen".

Dimensions and their exposure
- run labels (every key any run carries, `seed` and `version` included): a run's GPU-steps
  count under its value; a run without the key counts under "(unset)".
- `host`: GPU-steps per host (ranks on the host x steps they completed). Used only when every
  run knows its hosts and every incident's host is one of its run's hosts; otherwise dropped
  (an incident with no exposure under its value would have likelihood zero, which is a data
  gap, not evidence).
- `steps` (onset): the step range, `STEP_BUCKETS` equal ranges over [0, longest run]. A run's
  GPU-steps are spread evenly over the steps it completed; an incident counts in the range of
  the step it failed at. Used only when every incident and run has a step count.
Dimensions with a single value carry no information and are dropped, as are run labels with
more than `MAX_VALUES` values or a different value on every run (a job id, a timestamp), which
would make the model a lookup table, and more than `MAX_HOSTS` hosts.

Units
The model partitions *units*, not signatures: a unit is a set of incidents that one cause
explains together. Normally a unit is all incidents whose root cause has one signature; a
"latent class" hypothesis (two bugs behind one signature) splits a signature into units by a
condition (`version = v2` and the rest). A unit is a boolean mask over incidents plus the
signature it belongs to and, for a split, the region (dimension and value set) that defines it.

Invariants
- `Tables` depend on the evidence as a set: renaming signatures or reordering runs permutes
  rows, never changes a number used by the scoring.
- Every incident counts exactly once in every dimension, under a value with positive exposure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from triage.errors import InputError

STEP_BUCKETS = 4
MAX_VALUES = 64  # run labels
MAX_HOSTS = 1024
UNSET = "(unset)"


@dataclass(frozen=True)
class RunObs:
    """One launch attempt: its exposure and the conditions it ran under."""

    name: str
    gpu_steps: float  # exposure: GPU-steps completed (failed runs: until the failure)
    labels: Mapping[str, str] = field(default_factory=dict)  # seed, version, mitigation, ...
    host_steps: Mapping[str, float] = field(default_factory=dict)  # host -> GPU-steps there
    steps: int | None = None  # steps completed (for the onset dimension)


@dataclass(frozen=True)
class IncidentObs:
    """One failed attempt: the root cause's signature and the symptoms it explains."""

    id: str
    run: str
    signature: str  # the root cause's signature: what the model counts
    symptoms: tuple[str, ...] = ()  # other signatures of this incident (shown, not counted)
    host: str | None = None
    rank: int | None = None
    step: int | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything the ledger scores. `frames`: signature -> frame keys seen in its traces."""

    runs: tuple[RunObs, ...]
    incidents: tuple[IncidentObs, ...]
    frames: Mapping[str, frozenset[str]] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)  # signature -> "family: template"
    notes: tuple[str, ...] = ()  # what the adapter had to assume, shown with the result

    def upto(self, n_runs: int) -> "Evidence":
        """The evidence as it stood after the first `n_runs` runs (for the replay log)."""
        keep = {r.name for r in self.runs[:n_runs]}
        return Evidence(self.runs[:n_runs], tuple(i for i in self.incidents if i.run in keep),
                        self.frames, self.titles, self.notes)


@dataclass(frozen=True)
class Dim:
    """One condition dimension: its values (sorted), exposure per value, incident value index."""

    name: str
    values: tuple[str, ...]
    exposure: np.ndarray  # float, len(values), sums to the total exposure
    index: np.ndarray  # int, one per incident
    run_level: bool  # True for run labels (an experiment can choose them)
    per_run: np.ndarray  # float (runs, values): exposure of each run under each value


@dataclass(frozen=True)
class Unit:
    """A set of incidents one cause explains together (see the module docstring)."""

    key: str  # canonical: signature, or "signature|dim=values" / "signature|dim!=values"
    signature: str
    mask: np.ndarray  # bool over incidents
    region: tuple[str, frozenset[str], bool] | None = None  # (dim, values, inside?) for splits


@dataclass(frozen=True)
class Tables:
    incidents: tuple[IncidentObs, ...]
    signatures: tuple[str, ...]  # sorted distinct root signatures
    sig_index: np.ndarray  # int, per incident
    dims: tuple[Dim, ...]
    total_exposure: float
    runs: tuple[RunObs, ...]
    run_exposure: np.ndarray  # float, per run

    def restrict(self, dim: str, values: frozenset[str]) -> tuple[float, list[np.ndarray]]:
        """Exposure inside `dim` in `values`, broken down along every dimension.

        Within a run, exposure is spread evenly over its hosts' GPUs and its steps, so the joint
        exposure of (d = v, d' = v') in run r is X_d[r, v] X_d'[r, v'] / G_r; for run labels this
        is exact, for host x steps it assumes every host ran every step (they do: one job).
        """
        d = self.dim(dim)
        inside = np.array([v in values for v in d.values], dtype=bool)
        g = np.where(self.run_exposure > 0, self.run_exposure, 1.0)
        share = d.per_run[:, inside].sum(axis=1) / g
        total = float(d.per_run[:, inside].sum())
        return total, [share @ e.per_run for e in self.dims]

    def dim(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def signature_unit(self, sig: str) -> Unit:
        return Unit(sig, sig, self.sig_index == self.signatures.index(sig))

    def split_units(self, sig: str, dim: str, values: frozenset[str]) -> tuple[Unit, Unit]:
        d = self.dim(dim)
        inside_idx = np.array([v in values for v in d.values], dtype=bool)
        base = self.sig_index == self.signatures.index(sig)
        inside = base & inside_idx[d.index]
        label = ",".join(sorted(values))
        return (Unit(f"{sig}|{dim}={label}", sig, inside, (dim, frozenset(values), True)),
                Unit(f"{sig}|{dim}!={label}", sig, base & ~inside, (dim, frozenset(values), False)))


def build_tables(ev: Evidence) -> Tables:
    """Check the evidence and tabulate it. Raises InputError for evidence that cannot be scored."""
    runs = {r.name: r for r in ev.runs}
    if len(runs) != len(ev.runs):
        raise InputError("two runs share a name", where="evidence", hint="run names must be unique")
    for r in ev.runs:
        if not (r.gpu_steps >= 0):
            raise InputError(f"run {r.name!r} has negative exposure", where="evidence",
                             hint="gpu_steps counts GPU-steps completed")
    for i in ev.incidents:
        if i.run not in runs:
            raise InputError(f"incident {i.id!r} names unknown run {i.run!r}", where="evidence",
                             hint="every incident belongs to a run of the evidence")
    total = float(sum(r.gpu_steps for r in ev.runs))
    if ev.incidents and total <= 0:
        raise InputError("incidents but no exposure", where="evidence",
                         hint="runs need steps completed (GPU-steps) to normalise rates")
    incidents = tuple(sorted(ev.incidents, key=lambda i: i.id))
    sigs = tuple(sorted({i.signature for i in incidents}))
    pos = {s: k for k, s in enumerate(sigs)}
    sig_index = np.array([pos[i.signature] for i in incidents], dtype=np.int64)
    dims: list[Dim] = []
    keys = sorted({k for r in ev.runs for k in r.labels})
    for key in keys:
        values = sorted({r.labels.get(key, UNSET) for r in ev.runs})
        if not (2 <= len(values) <= MAX_VALUES):
            continue
        if len(ev.runs) > 2 and len(values) == len(ev.runs):
            continue  # a per-run id (a job id, a timestamp), not a condition runs share
        vpos = {v: k for k, v in enumerate(values)}
        exp = np.zeros(len(values))
        for r in ev.runs:
            exp[vpos[r.labels.get(key, UNSET)]] += r.gpu_steps
        idx = np.array([vpos[runs[i.run].labels.get(key, UNSET)] for i in incidents], dtype=np.int64)
        if incidents and np.any(exp[idx] <= 0):
            continue
        per_run = np.zeros((len(ev.runs), len(values)))
        for r, run in enumerate(ev.runs):
            per_run[r, vpos[run.labels.get(key, UNSET)]] = run.gpu_steps
        dims.append(Dim(key, tuple(values), exp, idx, True, per_run))
    host = _host_dim(ev.runs, incidents, runs, total)
    if host is not None:
        dims.append(host)
    steps = _steps_dim(ev.runs, incidents, runs)
    if steps is not None:
        dims.append(steps)
    return Tables(incidents, sigs, sig_index, tuple(dims), total, tuple(ev.runs),
                  np.array([r.gpu_steps for r in ev.runs], dtype=float))


def _host_dim(all_runs: Sequence[RunObs], incidents: Sequence[IncidentObs],
              runs: Mapping[str, RunObs], total: float) -> Dim | None:
    if not all_runs or any(not r.host_steps for r in all_runs):
        return None
    for r in all_runs:
        if abs(sum(r.host_steps.values()) - r.gpu_steps) > 1e-6 * max(1.0, r.gpu_steps):
            return None
    for i in incidents:
        if i.host is None or runs[i.run].host_steps.get(i.host, 0) <= 0:
            return None
    values = sorted({h for r in all_runs for h in r.host_steps})
    if not (2 <= len(values) <= MAX_HOSTS):
        return None
    vpos = {v: k for k, v in enumerate(values)}
    per_run = np.zeros((len(all_runs), len(values)))
    for k, r in enumerate(all_runs):
        for h, s in r.host_steps.items():
            per_run[k, vpos[h]] += s
    idx = np.array([vpos[i.host] for i in incidents], dtype=np.int64)
    return Dim("host", tuple(values), per_run.sum(axis=0), idx, False, per_run)


def _steps_dim(all_runs: Sequence[RunObs], incidents: Sequence[IncidentObs],
               runs: Mapping[str, RunObs]) -> Dim | None:
    if not all_runs or any(r.steps is None or r.steps < 0 for r in all_runs):
        return None
    if any(i.step is None or i.step < 0 or i.step > (runs[i.run].steps or 0) for i in incidents):
        return None
    longest = max(r.steps or 0 for r in all_runs)
    if longest < STEP_BUCKETS:
        return None
    width = (longest + 1) / STEP_BUCKETS  # steps 0..longest inclusive
    edges = [round(k * width) for k in range(STEP_BUCKETS + 1)]
    values = tuple(f"{edges[k]}-{edges[k + 1] - 1}" for k in range(STEP_BUCKETS))
    per_run = np.zeros((len(all_runs), STEP_BUCKETS))
    for j, r in enumerate(all_runs):
        n = (r.steps or 0) + 1  # steps 0..steps completed
        for k in range(STEP_BUCKETS):
            overlap = max(0, min(n, edges[k + 1]) - edges[k])
            per_run[j, k] = r.gpu_steps * overlap / n
    exp = per_run.sum(axis=0)
    idx = np.array([min(STEP_BUCKETS - 1, next(k for k in range(STEP_BUCKETS)
                                               if i.step < edges[k + 1]))
                    for i in incidents], dtype=np.int64) if incidents else np.zeros(0, np.int64)
    if incidents and np.any(exp[idx] <= 0):
        return None
    return Dim("steps", values, exp, idx, False, per_run)
