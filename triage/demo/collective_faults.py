"""A real gloo job on CPU whose ranks fall out of step: the source of the hang tests' evidence.

    python -m triage.demo.collective_faults OUT --world-size 4 --fault skip --culprit 3

starts `--world-size` processes (torch.multiprocessing, fork: the children share the parent's
imported torch, so an 8-rank job starts in about a second), joins them in one gloo process group
(a FileStore under OUT, so concurrent jobs never race for a port) and runs a tiny training loop.
Every step issues the same two collectives on the default group:

    all_reduce(grads)    shape [20]   (a 4x4 Linear: 16 weights + 4 biases)
    broadcast(loss, 0)   shape [1]

At step `--at-step`, rank `--culprit` goes off-script:

| fault | what the culprit does                                   | what everyone sees               |
| ----- | ------------------------------------------------------- | -------------------------------- |
| extra | an extra broadcast of shape [3] before the all-reduce   | gloo timeouts on every rank      |
| skip  | skips the broadcast (goes on to the next all-reduce)    | gloo timeouts on every rank      |
| shape | all-reduces [21] instead of [20], under                 | "Detected mismatch between       |
|       | TORCH_DISTRIBUTED_DEBUG=DETAIL (without it gloo aborts  | collectives" on every rank       |
|       | the whole job with SIGABRT, leaving no dump)            |                                  |
| sleep | sleeps before the all-reduce                            | the others time out; the parent  |
|       |                                                         | SIGTERMs the sleeper             |
| none  | nothing                                                 | a clean run                      |

Every rank logs to OUT/logs/rank<R>.log (a timestamp, `[rank<R>]:`, the message; exceptions
with their traceback) and, on an exception or SIGTERM, writes its flight-recorder dump with
`torch._C._distributed_c10d._dump_fr_trace()` to OUT/fr/trace_<R> (torch's `<prefix><rank>`
naming; with `--json-dumps` also the JSON form, OUT/fr_json/trace_<R>.json; `--stack-traces` keeps the
call sites, at 10-20 s per dump): gloo has no watchdog, so
TORCH_FR_DUMP_TEMP_FILE alone never dumps (DESIGN.md). A clean run dumps at the end too.
OUT/job.json records the arguments and the exit code of every rank (tests read the truth from
there; triage's analysis does not read it).

`--batch 2:extra,8:sleep,...` runs several such jobs (last rank culprit) from one interpreter
into OUT/<fault>-<world>: torch is imported once and every job forks from it.

Limits: one host; the process-group timeout (`--timeout`, default 3 s) bounds every fault, so a
job takes a few seconds. A DETAIL mismatch is caught before the real collective runs, so under
`shape` the dumps themselves show no disagreement: the culprit is in the logs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

FAULTS = ("none", "extra", "skip", "shape", "sleep")


def _dump(out: Path, rank: int, args: argparse.Namespace) -> None:
    import torch

    fr = out / "fr"
    fr.mkdir(parents=True, exist_ok=True)
    c10d = torch._C._distributed_c10d
    # Stack traces make one dump take 10-20 s here (symbolisation), so they are opt-in.
    (fr / f"trace_{rank}").write_bytes(c10d._dump_fr_trace(includeStackTraces=args.stack_traces))
    if args.json_dumps:
        (out / "fr_json").mkdir(exist_ok=True)
        (out / "fr_json" / f"trace_{rank}.json").write_bytes(c10d._dump_fr_trace_json())


def _linger(out: Path, rank: int, args: argparse.Namespace) -> None:
    """Wait (at most timeout + 2 s) for every other rank to fail too, before exiting.

    Exiting at once would make the parent SIGTERM ranks still inside their own timeout, and
    which ranks log a timeout would be a race; a real job's ranks all reach their timeout.
    """
    marks = out / "failed"
    marks.mkdir(exist_ok=True)
    (marks / str(rank)).touch()
    deadline = time.monotonic() + args.timeout + 2.0
    while time.monotonic() < deadline and len(list(marks.iterdir())) < args.world_size:
        time.sleep(0.05)


def _logger(out: Path, rank: int) -> logging.Logger:
    log = logging.getLogger(f"collective_faults.rank{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    (out / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "logs" / f"rank{rank}.log")
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s [rank{rank}]: %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


def _worker(rank: int, args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    out = Path(args.out).resolve()
    log = _logger(out, rank)
    culprit = rank == args.culprit

    def on_term(signum, frame):  # the parent ends the job: leave the evidence behind
        log.warning("received SIGTERM, writing the flight-recorder dump")
        _dump(out, rank, args)
        logging.shutdown()
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    if args.detail:  # torch read the variable when it was imported: set the level itself
        dist.set_debug_level(dist.DebugLevel.DETAIL)
    torch.manual_seed(0)
    dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=rank,
                            world_size=args.world_size,
                            timeout=_dt.timedelta(seconds=args.timeout))
    log.info("joined the process group: world size %d, host %s", args.world_size,
             socket.gethostname())
    model = torch.nn.Linear(4, 4)
    try:
        for step in range(args.steps):
            x = torch.randn(8, 4)
            loss = model(x).pow(2).mean()
            model.zero_grad()
            loss.backward()
            grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            fault_now = culprit and step == args.at_step
            if fault_now and args.fault == "extra":
                dist.broadcast(torch.zeros(3), 0)  # a stray "debug metrics" broadcast
            if fault_now and args.fault == "sleep":
                time.sleep(args.sleep)
            if fault_now and args.fault == "shape":
                grads = torch.cat([grads, torch.zeros(1)])
            dist.all_reduce(grads)
            if not (fault_now and args.fault == "skip"):
                dist.broadcast(loss.detach().reshape(1), 0)
            log.info("step %d loss %.6f", step, loss.item())
    except Exception:
        log.exception("step failed")
        _dump(out, rank, args)
        _linger(out, rank, args)
        logging.shutdown()
        os._exit(1)
    _dump(out, rank, args)
    log.info("done")
    logging.shutdown()
    os._exit(0)


def run(args: argparse.Namespace) -> dict:
    """Run the job in this process's children; return what job.json says."""
    import torch.multiprocessing as mp

    out = Path(args.out).resolve()  # a relative file:// URL would name a host, not a path
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("store", "failed"):  # left by an earlier job in the same folder
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)
        elif (out / stale).exists():
            (out / stale).unlink()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.detail = args.detail or args.fault == "shape"
    t0 = time.monotonic()
    ctx = mp.start_processes(_worker, args=(args,), nprocs=args.world_size, join=False,
                             start_method="fork")
    try:
        while not ctx.join():
            pass
    except Exception as exc:  # a rank failed: start_processes already SIGTERMed the others
        print(f"job ended: {type(exc).__name__}: {exc}", file=sys.stderr)
    for p in ctx.processes:  # join() returns at the first failure; reap everyone
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()
    codes = {str(r): p.exitcode for r, p in enumerate(ctx.processes)}
    job = {"world_size": args.world_size, "fault": args.fault, "culprit": args.culprit,
           "at_step": args.at_step, "steps": args.steps, "timeout": args.timeout,
           "detail": args.detail, "exit_codes": codes,
           "seconds": round(time.monotonic() - t0, 2)}
    (out / "job.json").write_text(json.dumps(job, indent=2) + "\n")
    return job


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m triage.demo.collective_faults",
                                description="A gloo job on CPU where one rank goes off-script.")
    p.add_argument("out", help="output folder (logs/, fr/, job.json)")
    p.add_argument("--world-size", type=int, default=4)
    p.add_argument("--fault", choices=FAULTS, default="skip")
    p.add_argument("--culprit", type=int, default=None, help="default: the last rank")
    p.add_argument("--at-step", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--timeout", type=float, default=3.0, help="process-group timeout, seconds")
    p.add_argument("--sleep", type=float, default=120.0, help="how long `sleep` sleeps")
    p.add_argument("--detail", action="store_true", help="TORCH_DISTRIBUTED_DEBUG=DETAIL")
    p.add_argument("--json-dumps", action="store_true", help="also write JSON dumps")
    p.add_argument("--batch", metavar="WORLD:FAULT,...",
                   help="run several jobs (last rank culprit) into OUT/<fault>-<world>")
    p.add_argument("--stack-traces", action="store_true",
                   help="record Python frames in the dumps (slow: 10-20 s per dump here)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch:
        # many jobs from one parent: torch is imported once and every job forks from it
        # (saves the 3-7 s of a fresh interpreter per job on a busy machine)
        root = Path(args.out)
        for spec in args.batch.split(","):
            ws, _, fault = spec.partition(":")
            if not ws.isdigit() or fault not in FAULTS:
                parser().error(f"--batch wants WORLD:FAULT,..., got {spec!r}")
            one = argparse.Namespace(**{**vars(args), "world_size": int(ws), "fault": fault,
                                        "out": str(root / f"{fault}-{ws}"), "batch": None,
                                        "culprit": int(ws) - 1})
            print(json.dumps(run(one)), flush=True)
        return 0
    if args.culprit is None:
        args.culprit = args.world_size - 1
    if not 0 <= args.culprit < args.world_size or args.world_size < 2:
        parser().error("need --world-size >= 2 and 0 <= --culprit < --world-size")
    job = run(args)
    print(json.dumps(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
