"""`triage bisect`: find the first bad step, the reproducing seeds, the minimal failing ranks.

Argument parsing and rendering only: each body opens the case, calls one function of
triage.bisect and renders its answer (a plain report for people, `--json` for programs).
Per-trial progress lines go to stderr on a terminal; the answer goes to stdout.
Exit codes: 0 an answer was found, 1 the search ran but found nothing (undecided, did not
reproduce), 2 usage, 5 case, 6 the trial command could not run, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from triage.cli.common import err, handle_errors, print_json, want_progress

bisect_app = typer.Typer(help="Bisect a flaky failure by step, seed, or rank/host.",
                         no_args_is_help=True, rich_markup_mode=None)

CaseOpt = Annotated[Optional[Path], typer.Option(
    "--case", help="Case file (default: $TRIAGE_CASE, else .triage/case.db).", dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
CmdOpt = Annotated[str, typer.Option("--cmd", help="Trial command template, e.g. './repro.sh --step {step}'. Split like a shell, run without one.")]
SigOpt = Annotated[Optional[str], typer.Option("--signature", help="Count a failure as bad only if the scanner finds this signature (sig1:... or a family); other failures are 'unrelated'.")]
TimeoutOpt = Annotated[Optional[float], typer.Option("--timeout", help="Seconds per trial; the trial's whole process group is killed after it.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Trials run in parallel.")]
MaxOpt = Annotated[Optional[int], typer.Option("--max-trials", help="Stop after this many trials.")]
ExecOpt = Annotated[str, typer.Option("--executor", help="local, slurm (submitit) or submitit-local.")]
SlurmOpt = Annotated[Optional[list[str]], typer.Option("--slurm", help="KEY=VALUE submitit parameter (e.g. slurm_partition=dev), repeatable.")]
CwdOpt = Annotated[Optional[Path], typer.Option("--cwd", help="Working directory of the trials.", file_okay=False)]


def _open(case: Path | None, create: bool = True):
    from triage.case import CaseStore
    return CaseStore.open(case, create=create)


def _opts(signature, timeout, jobs, max_trials, executor, slurm, cwd) -> dict[str, Any]:
    from triage.errors import UsageError
    params: dict[str, str] = {}
    for item in slurm or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{item!r} is not KEY=VALUE", where="--slurm", hint="e.g. --slurm slurm_partition=dev")
        params[key] = value
    return {"signature": signature, "timeout": timeout, "jobs": jobs, "max_trials": max_trials,
            "executor": executor, "executor_params": params,
            "cwd": str(cwd.resolve()) if cwd else None}


def _progress(json_mode: bool):
    if not want_progress(json_mode):
        return None

    def show(rec) -> None:
        point = " ".join(f"{k}={v}" for k, v in rec.point.items() if k != "value") or rec.point.get("value", "")
        extra = f" ({rec.note})" if rec.note else ""
        err.print(f"trial {rec.seq:>4}: {point} -> {rec.outcome.value}{extra}", markup=False, highlight=False)
    return show


def _run(session, json_mode: bool, max_trials: int | None = None) -> dict[str, Any]:
    if want_progress(json_mode):
        err.print(f"bisect session {session.id}: trial output in {session.folder}", markup=False,
                  highlight=False)
    try:
        return session.run(progress=_progress(json_mode), max_trials=max_trials)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: triage bisect resume {session.id}", file=__import__("sys").stderr)
        raise typer.Exit(130)


# -- rendering ----------------------------------------------------------------------------------

def render(result: dict[str, Any], session_id: int | None = None) -> str:
    schema = result.get("schema")
    lines: list[str] = []
    if schema == "triage.bisect/1":
        lo, hi = result["interval"]
        o = result["outcomes"]
        if result["culprit"] is not None:
            lines.append(f"first bad {result['axis']}: {result['culprit']} "
                         f"(confidence {result['confidence']:.3f})")
        else:
            lines.append(f"first bad {result['axis']}: not found "
                         f"(best guess holds {result['confidence']:.3f} of the posterior)")
        lines.append(f"credible interval: {lo} .. {hi}")
        lines.append(f"trials: {result['trials']} (good {o['good']}, bad {o['bad']}, "
                     f"skip {o['skip']}, unrelated {o['unrelated']})")
        if result["trials"] and o["bad"] == 0:
            lines.append("the failure never reproduced in these trials (flaky, or --bad is not bad)")
        if result["flake_rate"] is not None:
            lines.append(f"flake rate: {result['flake_rate']:.2f} (a trial at or after the culprit "
                         f"passes anyway this often)")
    elif schema == "triage.bisect.seed/1":
        rep = result["reproducing"]
        lines.append(f"seeds reproducing: {len(rep)} of {len(result['seeds'])}"
                     + (f" ({', '.join(rep[:20])}{', ...' if len(rep) > 20 else ''})" if rep else ""))
        lines.append(f"depends on the seed: P = {result['depends_on_seed']:.3f} ({result['verdict']})")
        lines.append(f"{'seed':>8}  {'bad/tried':>9}  {'rate':>5}  95% interval")
        for s in result["seeds"]:
            tried = s["bad"] + s["good"]
            lo, hi = s["interval"]
            lines.append(f"{s['seed']:>8}  {s['bad']:>4}/{tried:<4}  {s['rate']:>5.2f}  [{lo:.2f}, {hi:.2f}]")
        lines.append(f"trials: {result['trials']}")
    elif schema == "triage.bisect.ranks/1":
        axis = result["axis"]
        if result["status"] == "found":
            lines.append(f"minimal failing {axis}: {', '.join(map(str, result['minimal']))}")
        elif result["status"] == "did_not_reproduce":
            lines.append(f"the failure did not reproduce with all {axis} (flaky): nothing to bisect")
        else:
            lines.append(f"minimal failing {axis}: undecided (trial budget spent)")
        if result["fail_rate"] is not None:
            lines.append(f"failure rate with all {axis}: {result['fail_rate']:.2f}; "
                         f"a subset passed after {result['repeats']} clean trials")
        lines.append(f"subsets tested: {result['subsets_tested']}, trials: {result['trials']}")
    if session_id is not None:
        lines.append(f"session: {session_id} (triage bisect log {session_id})")
    return "\n".join(lines)


def _emit(result: dict[str, Any], json_mode: bool, session_id: int | None) -> None:
    if json_mode:
        print_json(result)
    else:
        print(render(result, session_id))
    found = (result.get("culprit") is not None if result.get("schema") == "triage.bisect/1"
             else result.get("status", "found") == "found" if "status" in result
             else bool(result.get("reproducing")))
    if not found:
        raise typer.Exit(1)


# -- commands -------------------------------------------------------------------------------------

@bisect_app.command("step")
def step_cmd(
    cmd: Annotated[Optional[str], typer.Option("--cmd", help="Trial command template with {step} (or {value} with --values).")] = None,
    good: Annotated[Optional[str], typer.Option("--good", help="A step (or value) known good.")] = None,
    bad: Annotated[Optional[str], typer.Option("--bad", help="A step (or value) known bad.")] = None,
    values: Annotated[Optional[str], typer.Option("--values", help="Ordered values (comma list or file, oldest first) instead of steps.")] = None,
    confidence: Annotated[float, typer.Option("--confidence", help="Stop when one value holds this posterior mass.")] = 0.99,
    from_probe: Annotated[Optional[Path], typer.Option("--from-probe", help="Find the first bad step from probe records offline; runs nothing.")] = None,
    signature: SigOpt = None, timeout: TimeoutOpt = None, jobs: JobsOpt = 1, max_trials: MaxOpt = 500,
    executor: ExecOpt = "local", slurm: SlurmOpt = None, cwd: CwdOpt = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """Probabilistic bisection over steps or an ordered list of values."""
    with handle_errors():
        from triage.bisect import from_probe as probe_answer, start_step
        from triage.errors import UsageError
        if from_probe is not None:
            result, res = probe_answer(str(from_probe))
            if not json:
                err.print(res.headline(), markup=False, highlight=False)
            _emit(result, json, None)
            return
        if cmd is None:
            raise UsageError("--cmd is required (or --from-probe DIR)", where="bisect step",
                             hint="e.g. --cmd './repro.sh {step}' --good 0 --bad 5000")
        store = _open(case)
        s = start_step(store, template=cmd, good=good, bad=bad, values=values,
                       confidence=confidence, **_opts(signature, timeout, jobs, max_trials, executor, slurm, cwd))
        _emit(_run(s, json), json, s.id)


@bisect_app.command("seed")
def seed_cmd(
    cmd: CmdOpt,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds to try, e.g. 0-99 or 1,5,9.")],
    repeats: Annotated[int, typer.Option("--repeats", help="Trials per seed.")] = 3,
    signature: SigOpt = None, timeout: TimeoutOpt = None, jobs: JobsOpt = 1, max_trials: MaxOpt = None,
    executor: ExecOpt = "local", slurm: SlurmOpt = None, cwd: CwdOpt = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """Which seeds reproduce, each with its failure rate; does the failure depend on the seed?"""
    with handle_errors():
        from triage.bisect import start_seed
        store = _open(case)
        s = start_seed(store, template=cmd, seeds=seeds, repeats=repeats,
                       **_opts(signature, timeout, jobs, max_trials, executor, slurm, cwd))
        _emit(_run(s, json), json, s.id)


@bisect_app.command("ranks")
def ranks_cmd(
    cmd: CmdOpt,
    ranks: Annotated[Optional[str], typer.Option("--ranks", help="Ranks, e.g. 0-63 ({ranks} becomes a comma list).")] = None,
    hosts: Annotated[Optional[Path], typer.Option("--hosts", help="File with one host per line ({hosts} becomes a comma list).", dir_okay=False)] = None,
    repeats: Annotated[Optional[int], typer.Option("--repeats", help="Clean trials before a subset passes (default: from the measured failure rate).")] = None,
    signature: SigOpt = None, timeout: TimeoutOpt = None, jobs: JobsOpt = 1, max_trials: MaxOpt = 1000,
    executor: ExecOpt = "local", slurm: SlurmOpt = None, cwd: CwdOpt = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """Delta debugging to a minimal failing set of ranks or hosts."""
    with handle_errors():
        from triage.bisect import start_ranks
        store = _open(case)
        s = start_ranks(store, template=cmd, ranks=ranks, hosts=str(hosts) if hosts else None,
                        repeats=repeats, **_opts(signature, timeout, jobs, max_trials, executor, slurm, cwd))
        _emit(_run(s, json), json, s.id)


@bisect_app.command("log")
def log_cmd(
    session: Annotated[Optional[int], typer.Argument(help="Session id (default: list sessions).")] = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """List bisect sessions, or the trials of one session."""
    with handle_errors():
        from triage.bisect import Session, sessions
        store = _open(case, create=False)
        if session is None:
            rows = sessions(store)
            if json:
                print_json({"schema": "triage.bisect.sessions/1", "sessions": [
                    {"id": s.id, "kind": s.row.kind, "axis": s.row.axis, "status": s.row.status,
                     "trials": len(s.trials), "created_at": s.row.created_at,
                     "template": s.spec["template"], "result": s.row.result} for s in rows]})
                return
            print(f"{'id':>4}  {'kind':<6} {'axis':<6} {'status':<8} {'trials':>6}  command")
            for s in rows:
                print(f"{s.id:>4}  {s.row.kind:<6} {s.row.axis:<6} {s.row.status:<8} "
                      f"{len(s.trials):>6}  {s.spec['template']}")
            return
        s = Session.load(store, session)
        if json:
            print_json({"schema": "triage.bisect.log/1", "session": s.id, "kind": s.row.kind,
                        "axis": s.row.axis, "status": s.row.status, "template": s.spec["template"],
                        "folder": str(s.folder), "trials": [t.to_json() for t in s.trials],
                        "result": s.row.result})
            return
        print(f"session {s.id}: {s.row.kind} over {s.row.axis}, {s.row.status}, "
              f"{len(s.trials)} trials")
        print(f"command: {s.spec['template']}")
        print(f"{'seq':>4}  {'point':<24} {'outcome':<9} {'exit':>5} {'seconds':>8}  note")
        for t in s.trials:
            point = ",".join(f"{k}={v}" for k, v in t.point.items() if k != "value") or t.point.get("value", "")
            code = "-" if t.exit_code is None else str(t.exit_code)
            print(f"{t.seq:>4}  {point:<24} {t.outcome.value:<9} {code:>5} {t.seconds:>8.2f}  {t.note or ''}")


@bisect_app.command("resume")
def resume_cmd(
    session: Annotated[Optional[int], typer.Argument(help="Session id (default: the latest).")] = None,
    max_trials: Annotated[Optional[int], typer.Option("--max-trials", help="New trial budget for the whole session.")] = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """Continue a session after a crash or Ctrl-C; stored trials are not run again."""
    with handle_errors():
        from triage.bisect import Session
        store = _open(case, create=False)
        s = Session.load(store, session)
        _emit(_run(s, json, max_trials), json, s.id)


@bisect_app.command("replay")
def replay_cmd(
    session: Annotated[Optional[int], typer.Argument(help="Session id (default: the latest).")] = None,
    case: CaseOpt = None, json: JsonOpt = False,
) -> None:
    """Recompute a session's answer from its stored trials, running nothing."""
    with handle_errors():
        from triage.bisect import Session
        store = _open(case, create=False)
        s = Session.load(store, session)
        result = s.result()
        if not json:
            for row in s.replay_trace():
                print(f"trial {row['seq']:>4}: {row['value']} -> {row['outcome']:<9} "
                      f"best {row['best']} ({row['confidence']:.3f})")
        _emit(result, json, s.id)


def register(app: typer.Typer) -> None:
    app.add_typer(bisect_app, name="bisect")
