"""A bisection session: a search, a trial runner and the case, tied together durably.

`start_step`, `start_seed` and `start_ranks` validate the user's input, store a new session
(its whole spec as JSON) and return a `Session`; `Session.run()` loops ask -> run a batch of
trials -> store each trial -> tell, until the search is done, and returns the answer (the
`--json` object). `Session.load(store, id)` rebuilds a session from the case: the search is
told every stored trial, in order, so `resume` continues exactly where a crash or Ctrl-C
stopped it, and `replay` recomputes the answer without running anything.

Invariants
- Every trial is stored (its own transaction) before the next batch starts; with `--jobs N`
  a batch is at most N trials asked for together.
- The searches are pure functions of their stored trials (see ordered.py, sets.py, seeds.py),
  so `replay` of a finished session gives the answer it printed.
- Trial output goes to `<case dir>/<case name>-bisect/<session id>/trial-NNNN.log`, a path
  stored relative to that folder.
- A trial whose command cannot start (ERROR) stops the session with a `TrialError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from triage.bisect.executors import environ_for_jobs, make_executor
from triage.bisect.ordered import OrderedSearch
from triage.bisect.outcome import Outcome, TrialRecord
from triage.bisect.seeds import SeedSearch
from triage.bisect.sets import SetSearch
from triage.bisect.trial import Template, TrialSpec, check_signature, not_runnable
from triage.case.bisect import BisectDAO, SessionRow
from triage.errors import InputError, UsageError

BISECT_SCHEMA = "triage.bisect/1"
SEED_SCHEMA = "triage.bisect.seed/1"
RANKS_SCHEMA = "triage.bisect.ranks/1"

Progress = Callable[[TrialRecord], None]


# -- parsing user input ---------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$")


def parse_ranges(text: str, where: str) -> list[int]:
    """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10] (sorted, unique)."""
    out: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"{part.strip()!r} is not a number or a range A-B", where=where,
                             hint="write e.g. 0-63 or 0,3,5-7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"range {part.strip()!r} runs backwards", where=where, hint="write A-B with A <= B")
        if hi - lo > 1_000_000:
            raise UsageError(f"range {part.strip()!r} is too large", where=where, hint="at most a million values")
        out.update(range(lo, hi + 1))
    return sorted(out)


def read_hosts(path: str) -> list[str]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the hosts file: {exc.strerror}", where=path,
                         hint="one host name per line") from None
    hosts = []
    for ln in lines:
        ln = ln.split("#", 1)[0].strip()
        if ln and ln not in hosts:
            hosts.append(ln)
    if not hosts:
        raise InputError("no host names in the hosts file", where=path, hint="one host name per line")
    return hosts


def read_values(text: str) -> list[str]:
    """--values: a file with one value per line (when such a file exists) or a comma list."""
    p = Path(text)
    if "," not in text and p.is_file():
        vals = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        vals = [v for v in vals if v and not v.startswith("#")]
    else:
        vals = [v.strip() for v in text.split(",") if v.strip()]
    if len(vals) < 2:
        raise UsageError("--values needs at least two values (a good one and a bad one)",
                         where="--values", hint="e.g. --values v1,v2,v3 or --values revisions.txt")
    if len(set(vals)) != len(vals):
        raise UsageError("--values lists a value twice", where="--values", hint="list each value once")
    return vals


def _common(spec: dict[str, Any]) -> None:
    if spec.get("jobs", 1) < 1:
        raise UsageError("--jobs must be at least 1", where="--jobs", hint="e.g. --jobs 4")
    if spec.get("timeout") is not None and spec["timeout"] <= 0:
        raise UsageError("--timeout must be positive", where="--timeout", hint="seconds, e.g. --timeout 600")
    if spec.get("max_trials") is not None and spec["max_trials"] < 1:
        raise UsageError("--max-trials must be at least 1", where="--max-trials", hint="e.g. --max-trials 200")
    check_signature(spec.get("signature"))


# -- sessions ---------------------------------------------------------------------------------

def _folder(store, sid: int) -> str:
    case = Path(store.path)
    return str(case.parent / f"{case.stem}-bisect" / str(sid))


@dataclass
class Session:
    store: Any
    row: SessionRow
    trials: list[TrialRecord]

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def spec(self) -> dict[str, Any]:
        return self.row.spec

    @property
    def folder(self) -> Path:
        return Path(self.row.folder)

    @classmethod
    def create(cls, store, kind: str, axis: str, spec: dict[str, Any]) -> "Session":
        _common(spec)
        row = BisectDAO(store).create(kind, axis, spec, lambda sid: _folder(store, sid))
        return cls(store, row, [])

    @classmethod
    def load(cls, store, sid: int | None = None) -> "Session":
        dao = BisectDAO(store)
        row = dao.latest() if sid is None else dao.session(sid)
        return cls(store, row, dao.trials(row.id))

    # -- the search ------------------------------------------------------------------------

    def search(self, max_trials: int | None = None):
        """A fresh search of this session's kind, told every stored trial."""
        sp = self.spec
        budget = max_trials if max_trials is not None else sp.get("max_trials")
        if self.row.kind == "step":
            s: Any = OrderedSearch(self._size(), confidence=sp["confidence"],
                                   max_trials=budget)
        elif self.row.kind == "seed":
            s = SeedSearch(sp["seeds"], repeats=sp["repeats"], max_trials=budget)
        else:
            s = SetSearch(len(sp["elements"]), repeats=sp.get("repeats"), max_trials=budget)
        for t in self.trials:
            s.tell(t.key, t.outcome)
        return s

    def _size(self) -> int:
        """N: the number of candidate culprits (values after the good one)."""
        sp = self.spec
        return len(sp["values"]) - 1 if "values" in sp else sp["bad"] - sp["good"]

    def _value(self, index: int) -> Any:
        """The axis value at an index: an int step, or a string from --values."""
        sp = self.spec
        return sp["values"][index] if "values" in sp else sp["good"] + index

    def _point(self, key: Any) -> dict[str, str]:
        sp, kind = self.spec, self.row.kind
        if kind == "step":
            if "values" in sp:
                return {"value": sp["values"][key]}
            v = str(sp["good"] + key)
            return {"step": v, "value": v}
        if kind == "seed":
            return {"seed": str(key), "value": str(key)}
        names = [sp["elements"][i] for i in key]
        joined = ",".join(names)
        return {self.row.axis: joined, "value": joined}

    def trial_spec(self) -> TrialSpec:
        sp = self.spec
        env = environ_for_jobs() if sp.get("executor", "local") != "local" else {}
        return TrialSpec(Template.parse(sp["template"]), sp.get("timeout"), sp.get("signature"),
                         sp.get("cwd"), env)

    def run(self, *, progress: Progress | None = None, max_trials: int | None = None) -> dict[str, Any]:
        """Run trials until the search is done; every trial is stored as it ends."""
        dao = BisectDAO(self.store)
        search = self.search(max_trials)
        spec = self.trial_spec()
        jobs = int(self.spec.get("jobs", 1))
        try:
            executor = make_executor(self.spec.get("executor", "local"), spec, self.folder, jobs,
                                     self.spec.get("executor_params"))
        except UsageError:
            dao.finish(self.id, "error", None)
            raise
        try:
            while True:
                keys = search.ask(jobs)
                if not keys:
                    break
                base = len(self.trials)
                batch = []
                for i, key in enumerate(keys):
                    out = self.folder / f"trial-{base + i + 1:04d}.log"
                    batch.append((self._point(key), out))
                results = executor.run(batch)
                for key, (point, out), done in zip(keys, batch, results):
                    rec = dao.add_trial(self.id, key, point, done.outcome,
                                        exit_code=done.raw.exit_code, seconds=done.raw.seconds,
                                        timed_out=done.raw.timed_out, output=out.name,
                                        signatures=done.signatures, note=done.note)
                    self.trials.append(rec)
                    search.tell(key, done.outcome)
                    if progress is not None:
                        progress(rec)
                errors = [d for d in results if d.outcome is Outcome.ERROR]
                if errors:
                    dao.finish(self.id, "error", None)
                    raise not_runnable(errors[0].note)
        except KeyboardInterrupt:
            dao.finish(self.id, "stopped", self.result(search))
            raise
        result = self.result(search)
        dao.finish(self.id, "done", result)
        self.row = dao.session(self.id)
        return result

    # -- answers ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        c = {"good": 0, "bad": 0, "skip": 0, "unrelated": 0}
        for t in self.trials:
            if t.outcome.value in c:
                c[t.outcome.value] += 1
        return c

    def result(self, search=None) -> dict[str, Any]:
        search = search if search is not None else self.search()
        if self.row.kind == "step":
            return self._step_result(search)
        if self.row.kind == "seed":
            return self._seed_result(search)
        return self._ranks_result(search)

    def _step_result(self, search: OrderedSearch) -> dict[str, Any]:
        st = search.state()
        as_value = self._value
        # never a culprit without a failure seen (unless there is only one candidate)
        found = (st.bad > 0 or self._size() == 1) and st.confidence >= self.spec["confidence"]
        return {
            "schema": BISECT_SCHEMA,
            "axis": self.row.axis,
            "culprit": as_value(st.culprit) if found else None,
            "interval": [as_value(st.interval[0]), as_value(st.interval[1])],
            "confidence": round(st.confidence, 4),
            "trials": len(self.trials),
            "flake_rate": round(st.flake_rate, 4) if st.bad > 0 else None,
            "outcomes": self.counts(),
        }

    def _seed_result(self, search: SeedSearch) -> dict[str, Any]:
        r = search.result()
        return {
            "schema": SEED_SCHEMA,
            "axis": "seed",
            "session": self.id,
            "reproducing": [s.seed for s in r.seeds if s.reproduces],
            "depends_on_seed": round(r.p_depends, 4),
            "verdict": r.verdict.value,
            "seeds": [s.to_json() for s in r.seeds],
            "trials": len(self.trials),
            "outcomes": self.counts(),
        }

    def _ranks_result(self, search: SetSearch) -> dict[str, Any]:
        r = search.result()
        names = self.spec["elements"]
        status = {Outcome.BAD: "found", Outcome.FLAKY: "did_not_reproduce",
                  Outcome.ERROR: "undecided"}[r.status]
        minimal = [names[i] for i in r.minimal] if r.status is Outcome.BAD else None
        if minimal is not None and self.row.axis == "ranks":
            minimal = [int(x) for x in minimal]
        return {
            "schema": RANKS_SCHEMA,
            "axis": self.row.axis,
            "session": self.id,
            "status": status,
            "minimal": minimal,
            "fail_rate": None if r.fail_rate is None else round(r.fail_rate, 4),
            "repeats": r.repeats,
            "subsets_tested": r.tests,
            "trials": len(self.trials),
            "outcomes": self.counts(),
        }

    def replay_trace(self) -> list[dict[str, Any]]:
        """For an ordered session: the answer after each stored trial (nothing is run)."""
        if self.row.kind != "step":
            return []
        s = OrderedSearch(self._size(), confidence=self.spec["confidence"])
        trace = []
        for t in self.trials:
            s.tell(t.key, t.outcome)
            st = s.state()
            trace.append({"seq": t.seq, "value": self._value(t.key), "outcome": t.outcome.value,
                          "best": self._value(st.culprit), "confidence": round(st.confidence, 4)})
        return trace


# -- entry points ------------------------------------------------------------------------------

def start_step(store, *, template: str, good: str | None, bad: str | None,
               values: str | None = None, **opts: Any) -> Session:
    t = Template.parse(template)
    spec: dict[str, Any] = {"template": template, **opts}
    if not 0.5 < spec.get("confidence", 0.99) < 1:
        raise UsageError("--confidence must be between 0.5 and 1", where="--confidence",
                         hint="e.g. --confidence 0.99")
    spec.setdefault("confidence", 0.99)
    if values is not None:
        vals = read_values(values)
        t.require("value")
        gi = vals.index(good) if good is not None and good in vals else (0 if good is None else -1)
        bi = vals.index(bad) if bad is not None and bad in vals else (len(vals) - 1 if bad is None else -1)
        if gi < 0 or bi < 0:
            missing = good if gi < 0 else bad
            raise UsageError(f"{missing!r} is not one of --values", where="--good/--bad",
                             hint="name values from the list, or leave them out (first good, last bad)")
        if bi <= gi:
            raise UsageError("the bad value must come after the good one", where="--good/--bad",
                             hint="the list is ordered: oldest first")
        spec["values"] = vals[gi:bi + 1]
        return Session.create(store, "step", "value", spec)
    t.require("step", "value")
    try:
        g, b = int(good), int(bad)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError("--good and --bad must be step numbers", where="--good/--bad",
                         hint="e.g. --good 0 --bad 5000, or use --values for revisions") from None
    if b <= g:
        raise UsageError(f"--bad {b} must be after --good {g}", where="--good/--bad",
                         hint="the good step comes first")
    spec.update(good=g, bad=b)
    return Session.create(store, "step", "step", spec)


def start_seed(store, *, template: str, seeds: str, repeats: int = 3, **opts: Any) -> Session:
    Template.parse(template).require("seed")
    if repeats < 1:
        raise UsageError("--repeats must be at least 1", where="--repeats", hint="e.g. --repeats 3")
    seed_list = [str(s) for s in parse_ranges(seeds, "--seeds")]
    return Session.create(store, "seed", "seed", {"template": template, "seeds": seed_list,
                                                  "repeats": repeats, **opts})


def start_ranks(store, *, template: str, ranks: str | None = None, hosts: str | None = None,
                repeats: int | None = None, **opts: Any) -> Session:
    if (ranks is None) == (hosts is None):
        raise UsageError("give exactly one of --ranks and --hosts", where="--ranks/--hosts",
                         hint="e.g. --ranks 0-63, or --hosts hosts.txt")
    t = Template.parse(template)
    if ranks is not None:
        t.require("ranks")
        elements = [str(r) for r in parse_ranges(ranks, "--ranks")]
        axis = "ranks"
    else:
        t.require("hosts")
        elements = read_hosts(hosts)  # type: ignore[arg-type]
        axis = "hosts"
    if repeats is not None and repeats < 1:
        raise UsageError("--repeats must be at least 1", where="--repeats", hint="e.g. --repeats 3")
    return Session.create(store, "ranks", axis, {"template": template, "elements": elements,
                                                 "repeats": repeats, **opts})


def from_probe(path: str) -> dict[str, Any]:
    """The first bad step from probe records, offline (triage.analyze.diverge does the work).

    The interval runs from the step after the last step recorded before the first bad one to
    the first bad step: with a probe recording every K steps the culprit is known to K steps.
    """
    from triage.analyze.diverge import analyse, load_records, probe_files

    files = probe_files([path])
    records, reported, warnings = load_records(files)
    if not records:
        raise InputError("no probe records found", where=path,
                         hint="point --from-probe at the folder the probe wrote (triage.probe/1)")
    res = analyse(records, reported, inputs=[str(f) for f in files], warnings=warnings)
    steps = sorted({r.step for r in records})
    if res.first_bad_step is None:
        last = steps[-1] if steps else None
        return {"schema": BISECT_SCHEMA, "axis": "step", "culprit": None,
                "interval": [last, last], "confidence": 0.0, "trials": 0, "flake_rate": None,
                "outcomes": {"good": 0, "bad": 0, "skip": 0, "unrelated": 0}}, res
    before = [s for s in steps if s < res.first_bad_step]
    low = before[-1] + 1 if before else res.first_bad_step
    return {"schema": BISECT_SCHEMA, "axis": "step", "culprit": res.first_bad_step,
            "interval": [low, res.first_bad_step], "confidence": 1.0 if low == res.first_bad_step
            else round(1.0 / (res.first_bad_step - low + 1), 4), "trials": 0, "flake_rate": None,
            "outcomes": {"good": 0, "bad": 0, "skip": 0, "unrelated": 0}}, res


def sessions(store) -> list[Session]:
    dao = BisectDAO(store)
    return [Session(store, row, dao.trials(row.id)) for row in dao.sessions()]

