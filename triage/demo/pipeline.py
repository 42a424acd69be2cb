"""`triage demo`: one bug or many, answered end to end on real runs made here and now.

`run_demo(outdir)` runs a campaign of the demo job (triage.demo.train, 4-rank data
parallelism on gloo/CPU, under torchrun) and takes it through the whole tool with library calls
only:

    1. runs      seeds 1-14 in two arms: the custom all-reduce (the rare reduction bug lives
                 there) and the stock one (the mitigation, label mitigation=stock-allreduce);
                 every run's data set holds one corrupt record, reached or not depending on
                 the seed's shuffle (an independent bug, the same step in both arms)
    2. ingest    every run into a fresh case file (triage.case.ingest_run, the lead's scanner)
    3. signatures   what the case holds (store.signatures())
    4. hypotheses   one bug or many (triage.analyze.hypotheses.analyse_case)
    5. diverge   the first bad step of every run from its probe records (triage.analyze.diverge)
    6. report    the post-mortem, HTML and Markdown (triage.report)

and compares what triage concluded with what was really injected (each job writes its
injections to OUT/runs/NAME/truth/, which triage never reads): the root cause's rank, the first
bad step, and whether the best explanation is exactly the injected grouping.

The campaign (why these numbers)
The seeds are consecutive, not picked by their outcome. Telling "one bug, four symptoms" from
"a bug and a data error" rests on the mitigation arm: the reduction symptoms must vanish there
while the data error stays, and each symptom needs a few incidents. A run stops at its first
failure, so that takes runs, and a run's cost is almost all start-up: hence the fork launcher
(one torch import per job instead of five) and two jobs at once, 28 runs in about 70-90 s on 2
cores. The job's knobs (SAMPLES, CORRUPT_INDEX, REDUCE_BUG_RATE) make both bugs show within 40
steps: the corrupt record is read by about 60% of seeds, the custom all-reduce goes wrong on
some rank in 8% of steps. Simulating the campaign (the data error's real step per seed, the
reduction bug drawn at its rate, the ledger's own scoring) put the best explanation on the
injected grouping in 30 of 30 campaigns of 14 seeds per arm (posterior 0.8 on average) and 29
of 30 of 10 seeds (SMALL_PLAN, the end-to-end test's); see docs/demo.md.
The outcome of a seed is deterministic in the data it sees, so the plan is reproducible on this
torch build; another build may move a symptom, which the comparison with the truth then shows.

Steps are pluggable: each is one call in `run_demo`, and a stage whose package is missing from
the tree is skipped with a note (`DemoResult.skipped`) rather than failing the demo.

Outputs (all under ``outdir``, default ./triage-demo): runs/NAME/ (console.log, logs/, probe/,
truth/, job.json, triage-run.yaml), case.db, report.html, report.md, demo.json (with the
seconds each stage took).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from triage.classify.roles import DIVERGENCE_ECHOES, DIVERGENCE_RULE
from triage.demo.launch import JobCancelled, JobResult, run_job
from triage.errors import InputError, TriageError, UsageError

DEMO_SCHEMA = "triage.demo/1"
CUSTOM, STOCK = "custom", "stock"
MITIGATION = {CUSTOM: "none", STOCK: "stock-allreduce"}


@dataclass(frozen=True)
class RunSpec:
    seed: int
    allreduce: str  # CUSTOM (buggy) or STOCK (the mitigation)

    @property
    def name(self) -> str:
        return f"{self.allreduce}-s{self.seed}"

    @property
    def fault(self) -> str:
        return "reduce_bug,data_error" if self.allreduce == CUSTOM else "data_error"



def arms(seeds: Sequence[int]) -> tuple[RunSpec, ...]:
    """The same seeds in both arms: the custom all-reduce, then the stock one."""
    return tuple(RunSpec(s, CUSTOM) for s in seeds) + tuple(RunSpec(s, STOCK) for s in seeds)


# The campaign: consecutive seeds, not chosen by their outcome (see the module docstring).
DEFAULT_PLAN: tuple[RunSpec, ...] = arms(range(1, 15))
SMALL_PLAN: tuple[RunSpec, ...] = arms(range(1, 11))  # the end-to-end test's
DEFAULT_STEPS = 40
SMALL_STEPS = DEFAULT_STEPS
# The job's knobs that the demo sets (train.py's defaults are those of the other real-run
# tests): a data set of 4,096 records holds one corrupt record, 146 (an epoch is 64 steps of
# 4 x 16 records, so a 40-step run reads it with probability 40/64, at a step its seed's
# shuffle decides), and the custom all-reduce goes wrong with probability 0.02 per rank and
# step.
SAMPLES = 4096
CORRUPT_INDEX = 146
REDUCE_BUG_RATE = 0.02
JOBS = 2  # jobs at once
LAUNCHER = "fork"
JOB_TIMEOUT = 60.0  # seconds; a 40-step job takes 3-15 s, a desync ends in gloo's 10 s timeout
RETRIES = 1  # a job that times out is run once more (see _run_one)


def parse_plan(text: str) -> tuple[RunSpec, ...]:
    """"custom:1,2,6 stock:1,7" -> RunSpecs (the --plan option)."""
    specs: list[RunSpec] = []
    for part in text.split():
        arm, sep, seeds = part.partition(":")
        if not sep or arm not in (CUSTOM, STOCK):
            raise UsageError(f"bad plan item {part!r}", where="--plan",
                             hint="e.g. --plan 'custom:1,2,6 stock:1,7'")
        for s in seeds.split(","):
            if not s.strip().isdigit():
                raise UsageError(f"bad seed {s!r} in {part!r}", where="--plan",
                                 hint="seeds are non-negative integers")
            specs.append(RunSpec(int(s), arm))
    if not specs:
        raise UsageError("empty plan", where="--plan", hint="e.g. --plan 'custom:1,2 stock:1'")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError("a run appears twice in the plan", where="--plan")
    return tuple(specs)


@dataclass
class DemoRun:
    spec: RunSpec
    job: JobResult
    root: dict[str, Any] | None = None  # triage's root cause: family, rank, step, message
    first_bad_step: int | None = None
    diverge_summary: str | None = None
    crash: dict[str, Any] | None = None  # the logs' first loud failure (the root, unless a
    # divergence in the probe's records came first)
    timed_out_attempts: list[str] = field(default_factory=list)  # hung attempts, kept aside

    def truth(self) -> list[dict[str, Any]]:
        return [{"fault": i.fault, "rank": i.rank, "step": i.step, **i.detail}
                for i in self.job.injected]

    def root_fault(self) -> str | None:
        """The injected fault behind triage's root cause, from the truth: a parameter
        divergence the probe reported can only come from the reduction bug (a data error raises
        at once); any other root is what the first loud injection did."""
        if self.root is None:
            return None
        if _probe_divergence(self.root):
            return "reduce_bug" if any(i.fault == "reduce_bug" for i in self.job.injected) else None
        loud = [i for i in self.job.injected if i.detail.get("kind") != "bitflip"]
        return loud[0].fault if loud else None

    def truth_text(self, limit: int = 2) -> str:
        """Compact: "reduce_bug:bitflip r0@0, data_error r2@18" (at most `limit`, then a count)."""
        parts = []
        for i in self.job.injected:
            kind = f":{i.detail['kind']}" if "kind" in i.detail else ""
            parts.append(f"{i.fault}{kind} r{i.rank}@{i.step}")
        more = len(parts) - limit
        return (", ".join(parts[:limit]) + (f", +{more} more" if more > 0 else "")) or "nothing"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.spec.name, "seed": self.spec.seed,
                "allreduce": self.spec.allreduce, "mitigation": MITIGATION[self.spec.allreduce],
                "dir": str(self.job.outdir), "returncode": self.job.returncode,
                "seconds": round(self.job.duration, 1), "root_cause": self.root,
                "crash": self.crash, "first_bad_step": self.first_bad_step, "divergence": self.diverge_summary,
                "injected": self.truth(), "timed_out_attempts": list(self.timed_out_attempts)}


@dataclass
class DemoResult:
    outdir: Path
    runs: list[DemoRun] = field(default_factory=list)
    case: Path | None = None
    signatures: list[dict[str, Any]] = field(default_factory=list)
    hypotheses: dict[str, Any] | None = None
    diverged: dict[str, Any] | None = None  # the first run that diverged silently
    reports: dict[str, str] = field(default_factory=dict)  # format -> path
    skipped: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)  # triage's answers vs the truth
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (wall)

    def to_json(self) -> dict[str, Any]:
        return {"schema": DEMO_SCHEMA, "outdir": str(self.outdir),
                "case": str(self.case) if self.case else None,
                "runs": [r.to_json() for r in self.runs], "signatures": self.signatures,
                "hypotheses": self.hypotheses, "divergence": self.diverged,
                "reports": self.reports, "checks": self.checks, "skipped": self.skipped,
                "seconds": round(self.seconds, 1),
                "timings": {k: round(v, 1) for k, v in self.timings.items()}}


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def run_demo(outdir: str | Path = "triage-demo", *, plan: Sequence[RunSpec] = DEFAULT_PLAN,
             steps: int = DEFAULT_STEPS, pg_timeout: float = 10.0,
             job_timeout: float = JOB_TIMEOUT,
             jobs: int = JOBS, launcher: str = LAUNCHER, progress: Progress = _quiet,
             fresh: bool = True) -> DemoResult:
    """Run the campaign and every analysis; see the module docstring. Returns where all is.

    `jobs` real jobs run at once (each is 5 processes); `launcher` is how torchrun starts the
    workers ("fork" or "exec", see triage.demo.launch.build_command)."""
    started = time.monotonic()
    out = Path(outdir)
    if steps < 10:
        raise UsageError(f"steps must be at least 10, got {steps}", where="--steps")
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}", where="--jobs")
    _prepare(out, fresh)
    result = DemoResult(outdir=out)

    cancel = threading.Event()

    def one(spec: RunSpec) -> tuple[JobResult, list[str]]:
        if cancel.is_set():
            raise JobCancelled("cancelled before it started")
        return _run_one(out / "runs" / spec.name, spec, steps, pg_timeout, job_timeout,
                        launcher, cancel)

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(one, spec) for spec in plan]
        for n, (spec, fut) in enumerate(zip(plan, futures), 1):
            job, aside = fut.result()
            for where in aside:
                progress(f"  {spec.name}: the job did not end within {job_timeout:.0f} s; kept "
                         f"aside in {where} and run again")
            progress(f"run {n}/{len(plan)}: {spec.name} (seed {spec.seed}, {spec.allreduce} "
                     f"all-reduce): exit {job.returncode} after {job.duration:.1f} s"
                     + (" (timed out)" if job.timed_out else ""))
            result.runs.append(DemoRun(spec, job, timed_out_attempts=aside))
    except BaseException:  # Ctrl-C or a job that could not start: stop the others too
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    result.timings["runs"] = time.monotonic() - started
    _step(result, "ingest", progress, lambda: _ingest(result, progress))
    _step(result, "hypotheses", progress, lambda: _hypotheses(result))
    _step(result, "diverge", progress, lambda: _diverge(result))
    _step(result, "report", progress, lambda: _report(result))
    result.checks = compare_with_truth(result)
    result.seconds = time.monotonic() - started
    (out / "demo.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result


def _prepare(out: Path, fresh: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", where=str(out),
                         hint="choose another --out")
    if out.exists() and any(out.iterdir()):
        if not fresh:
            raise InputError("is not empty", where=str(out), hint="choose another --out")
        if not (out / "demo.json").exists() and not (out / "runs").exists():
            raise InputError("is not empty and does not look like a demo output", where=str(out),
                             hint="choose an empty or new directory with --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _run_one(run_dir: Path, spec: RunSpec, steps: int, pg_timeout: float,
             job_timeout: float, launcher: str, cancel: threading.Event
             ) -> tuple[JobResult, list[str]]:
    """Run one job; a job that outlives `job_timeout` is kept aside (NAME.timed-out-N) and run
    once more: no fault the demo injects can hold a 40-step job that long (a desync ends in
    gloo's timeout), so it is the rare fork-mode hang after training (launch.py), not evidence."""
    aside: list[str] = []
    while True:
        job = run_job(run_dir, fault=spec.fault, seed=spec.seed, steps=steps,
                      pg_timeout=pg_timeout, timeout=job_timeout, probe=True, probe_check=10,
                      launcher=launcher, cancel=cancel,
                      extra_args=("--samples", str(SAMPLES), "--corrupt-index",
                                  str(CORRUPT_INDEX), "--reduce-bug-rate", str(REDUCE_BUG_RATE)))
        if not job.timed_out or len(aside) >= RETRIES:
            break
        moved = run_dir.with_name(f"{run_dir.name}.timed-out-{len(aside) + 1}")
        run_dir.rename(moved)
        aside.append(str(moved))
    (run_dir / "triage-run.yaml").write_text(
        f"seed: {spec.seed}\nworld_size: {job.nproc}\n"
        f"labels: {{mitigation: {MITIGATION[spec.allreduce]}}}\n", encoding="utf-8")
    return job, aside


def _step(result: DemoResult, name: str, progress: Progress, fn: Callable[[], None]) -> None:
    """Run one stage. A stage whose package is not in the tree is skipped, not fatal; so is an
    analysis (not the ingest) that finds its input unusable (say, no incident to score)."""
    started = time.monotonic()
    try:
        fn()
        result.timings[name] = time.monotonic() - started
    except ImportError as exc:
        note = f"{name}: skipped ({exc.name or exc} is not available)"
        result.skipped.append(note)
        progress(note)
    except TriageError as exc:
        if name == "ingest":
            raise
        note = f"{name}: skipped ({exc})"
        result.skipped.append(note)
        progress(note)


def _ingest(result: DemoResult, progress: Progress) -> None:
    from triage.case import CaseStore
    from triage.case.ingest import ingest_run

    case = result.outdir / "case.db"
    result.case = case
    progress(f"ingesting {len(result.runs)} runs into {case}")
    with CaseStore.open(case) as store:
        for run in result.runs:
            # the console holds every rank's lines and the agent's summary; the per-rank tree
            # under logs/ repeats the same lines, so it is not ingested twice. The probe's
            # records go in too: a silent divergence they show before any log line is the root
            probe = run.job.probe_dir
            paths = [run.job.console] + ([probe] if probe is not None and probe.is_dir() else [])
            ingest_run(store, paths, run=run.spec.name, jobs=1)
        incidents = {inc.run: inc for inc in store.incidents()}
        for run in result.runs:
            inc = incidents.get(run.spec.name)
            if inc is not None:
                root = inc.root
                run.root = {"family": root.family, "rank": root.rank, "step": root.step,
                            "signature": root.signature, "message": root.message,
                            "playbook": root.playbook}
                crash = _crash(inc)
                run.crash = None if crash is None else {"family": crash.family,
                                                        "rank": crash.rank, "step": crash.step}
        result.signatures = [
            {"id": s.id, "family": s.family, "template": s.template, "runs": s.runs,
             "root_runs": s.root_runs, "ranks": list(s.ranks)}
            for s in sorted(store.signatures(), key=lambda s: (-s.root_runs, -s.runs, s.id))
        ]


def _hypotheses(result: DemoResult) -> None:
    if result.case is None:
        return
    from triage.analyze.hypotheses import analyse_case
    from triage.case import CaseStore

    with CaseStore.open(result.case, create=False) as store:
        ledger, _ = analyse_case(store)
        sig_runs: dict[str, list[str]] = {}
        for inc in store.incidents():
            sig_runs.setdefault(inc.root.signature, []).append(inc.run)
    best = ledger.best
    result.hypotheses = {
        "verdict": ledger.verdict.value,
        "p_one_bug": round(ledger.p_one_bug, 4),
        "best": {"name": best.name, "posterior": round(best.posterior, 4),
                 "causes": [{"signatures": list(c.signatures), "runs": sorted(c.runs, key=_natural),
                             "labels": [ledger.labels.get(s, s) for s in c.signatures],
                             "words": ledger.describe_cause(c)}
                            for c in best.causes]},
        "moved": ledger.moved_words(),
        # every materialised hypothesis (posterior, causes as signature lists), for marginals
        "scored": [{"posterior": round(sc.posterior, 6), "name": sc.name,
                    "causes": [list(c.signatures) for c in sc.causes]} for sc in ledger.scored],
        "titles": {ledger.labels[s]: ledger.titles.get(s, s) for s in ledger.labels},
        "labels": dict(ledger.labels),  # signature id -> S1, S2, ...
    }


def _diverge(result: DemoResult) -> None:
    from triage.analyze.diverge import find_divergence

    for run in result.runs:
        if run.job.probe_dir is None or not run.job.probe_dir.exists():
            continue
        try:
            div = find_divergence([run.job.probe_dir])
        except InputError:
            continue
        run.first_bad_step = div.first_bad_step
        run.diverge_summary = div.headline()
        if div.first_bad_step is None:
            continue
        crash = run.crash.get("step") if run.crash else None
        silent = run.crash is None
        if silent or (crash is not None and div.first_bad_step < crash):
            entry = {"run": run.spec.name, "probe": str(run.job.probe_dir), "silent": silent,
                     "crash_step": crash, "crash_rank": run.crash.get("rank") if run.crash else None,
                     **{k: v for k, v in div.to_json().items()
                        if k in ("first_bad_step", "kinds", "bad_ranks", "majority",
                                 "probe_reported", "summary")}}
            # prefer a silent divergence, then the longest lead over the crash
            lead = -1 if silent else 0
            if result.diverged is None or (lead, entry["first_bad_step"]) < (
                    -1 if result.diverged["silent"] else 0, result.diverged["first_bad_step"]):
                result.diverged = entry


def _report(result: DemoResult) -> None:
    if result.case is None:
        return
    from triage.case import CaseStore
    from triage.report import write_report
    # the submodule's function: importing the submodule rebinds the package's `from_case`
    # attribute to the module, so a second demo in one process would call a module
    from triage.report.from_case import from_case

    with CaseStore.open(result.case, create=False) as store:
        data = from_case(store)
    for fmt, name in (("html", "report.html"), ("md", "report.md")):
        written, _ = write_report(data, fmt, result.outdir / name)
        result.reports[fmt] = str(written.path)


def compare_with_truth(result: DemoResult) -> dict[str, Any]:
    """What triage concluded against what the jobs really injected (for the demo and tests).

    - root_ranks: for each failed run, whether triage's root cause names the rank of the first
      injection that is not silent (a silent wrong sum may come earlier on another rank; a
      desync may surface on another rank: that counts as a miss here, honestly).
    - first_bad_step: for each run whose probe found a bad step, whether it equals the step of
      the first reduce_bug injection.
    - verdict: the root signatures that the reduction bug caused and those the data error
      caused (`DemoRun.root_fault`; a signature both caused is listed under `mixed`); whether
      the best explanation is exactly that grouping (`best_is_truth`: one cause holding every
      reduction signature, one holding the data error's, nothing else); and the posterior
      marginals over the hypotheses triage materialised: P(all reduction signatures share one
      cause) and P(no data-error signature shares a cause with them). `ok` is `best_is_truth`.
    """
    checks: dict[str, Any] = {"root_ranks": {}, "first_bad_step": {}, "verdict": None}
    for run in result.runs:
        first = run.job.first_injection
        if first is None:
            continue
        loud = [i for i in run.job.injected if i.detail.get("kind") != "bitflip"]
        if run.root is not None and _probe_divergence(run.root):
            # the probe saw the silent wrong sum first: the root is the first injection's rank
            checks["root_ranks"][run.spec.name] = run.root.get("rank") == first.rank
        elif run.root is not None and loud:
            checks["root_ranks"][run.spec.name] = run.root.get("rank") == loud[0].rank
        reduce = [i for i in run.job.injected if i.fault == "reduce_bug"]
        if reduce and run.first_bad_step is not None:
            checks["first_bad_step"][run.spec.name] = run.first_bad_step == reduce[0].step
    hyp = result.hypotheses
    if hyp is not None:
        faults: dict[str, set[str]] = {}  # root signature -> the faults behind it
        for run in result.runs:
            fault = run.root_fault()
            if run.root is not None and fault is not None:
                faults.setdefault(run.root["signature"], set()).add(fault)
        reduce_sigs = sorted(s for s, f in faults.items() if f == {"reduce_bug"})
        data_sigs = sorted(s for s, f in faults.items() if f == {"data_error"})
        mixed = sorted(s for s, f in faults.items() if len(f) > 1)
        best = [set(c["signatures"]) for c in hyp["best"]["causes"]]
        truth = [set(g) for g in (reduce_sigs, data_sigs) if g]
        together = _p_together(hyp["scored"], reduce_sigs)
        apart = _p_apart(hyp["scored"], data_sigs, reduce_sigs)
        checks["verdict"] = {
            "reduction_signatures": reduce_sigs,
            "data_error_signatures": data_sigs,
            "mixed_signatures": mixed,
            "best_is_truth": not mixed and sorted(map(sorted, best)) == sorted(map(sorted, truth)),
            "best_reduction_in_one_cause": any(set(reduce_sigs) <= c for c in best),
            "best_data_error_separate": all(not (c & set(reduce_sigs)) for c in best
                                            if c & set(data_sigs)),
            "p_reduction_one_cause": round(together, 4),
            "p_data_error_separate": round(apart, 4),
        }
        checks["verdict"]["ok"] = checks["verdict"]["best_is_truth"]
    return checks


def _natural(name: str) -> tuple:
    """custom-s2 before custom-s10."""
    head, _, num = name.rpartition("-s")
    return (head, int(num)) if num.isdigit() else (name, -1)


def _probe_divergence(root: dict[str, Any]) -> bool:
    """A root cause that is a divergence between ranks: from the probe's records (scan) or its
    cross-rank check's log line."""
    return root.get("playbook") == DIVERGENCE_RULE or \
        "parameter checksums differ" in root.get("message", "")


def _crash(inc) -> Any:
    """The first failure the logs themselves state (not the probe's records): a numeric failure
    or desync first, as that is what the training loop died of; else the earliest by step."""
    logs = [o for o in (inc.root, *inc.symptoms, *inc.independent)
            if not (o.playbook == DIVERGENCE_RULE and o.message.startswith("{"))]
    loud = [o for o in logs if o.family in DIVERGENCE_ECHOES] or logs
    return min(loud, key=lambda o: o.step if o.step is not None else 1 << 62) if loud else None


def _p_together(scored: Sequence[dict[str, Any]], sigs: Sequence[str]) -> float:
    """Posterior mass of the hypotheses that put all of `sigs` in one cause."""
    want = set(sigs)
    if not want:
        return 0.0
    return sum(h["posterior"] for h in scored if any(want <= set(c) for c in h["causes"]))


def _p_apart(scored: Sequence[dict[str, Any]], sigs: Sequence[str], others: Sequence[str]) -> float:
    """Posterior mass of the hypotheses where no cause holds one of `sigs` and one of `others`."""
    a, b = set(sigs), set(others)
    if not a or not b:
        return 0.0
    return sum(h["posterior"] for h in scored
               if not any((set(c) & a) and (set(c) & b) for c in h["causes"]))
