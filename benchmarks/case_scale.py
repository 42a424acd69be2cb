"""Case store at scale: ingest N runs of R ranks each, then time the cross-run analyses.

    python benchmarks/case_scale.py                  # 1,000 runs x 64 ranks (the issue's figure)
    python benchmarks/case_scale.py --runs 50 --json # a quick look, one JSON object

What it does: writes each run's per-rank logs (tests/case/synthlogs.py: `[rankN]:` step lines,
a traceback on the failing rank, gloo "Connection closed by peer" on the others; hosts in a
triage-run.yaml), ingests them one by one with the real ingest (hash, real scanner, one
transaction per run) into a fresh case, then times `signatures`, `rates` and `suspects` on the
full case, both as library calls and as the CLI (`python -m triage ... --json`, which adds
interpreter start-up). Failures: ~8% of runs die of an illegal memory access on one bad host,
~10% of a NaN anywhere, ~5% of a data error anywhere; the rest are clean (exposure).

Prints seconds per run (mean, median, p95), the database size, and the latencies. Not a test:
figures depend on the machine (this one: 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.case.synthlogs import write_run  # noqa: E402
from triage.analyze.rates import rates_for_case  # noqa: E402
from triage.analyze.suspects import suspects_for_case  # noqa: E402
from triage.case import CaseStore  # noqa: E402
from triage.case.ingest import ingest_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hosts-per-run", type=int, default=8)
    ap.add_argument("--host-pool", type=int, default=128)
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and case here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="case_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    case = work / "case.db"
    for p in (case, Path(f"{case}-wal"), Path(f"{case}-shm")):
        p.unlink(missing_ok=True)
    rng = random.Random(0)
    pool = [f"node{i:04d}" for i in range(args.host_pool)]
    per_host = max(1, args.ranks // args.hosts_per_run)
    t_gen = 0.0
    times: list[float] = []
    store = CaseStore.open(case)
    for i in range(args.runs):
        hosts_i = rng.sample(pool, args.hosts_per_run)
        hosts = {r: hosts_i[min(r // per_host, len(hosts_i) - 1)] for r in range(args.ranks)}
        u = rng.random()
        fault, rank = None, 0
        bad = [r for r, h in hosts.items() if h == "node0007"]
        if bad and u < 0.5:
            fault, rank = "ima", rng.choice(bad)
        elif u < 0.10:
            fault, rank = "nan", rng.randrange(args.ranks)
        elif u < 0.15:
            fault, rank = "value", rng.randrange(args.ranks)
        t0 = time.perf_counter()
        folder = write_run(work / "logs" / f"run{i:05d}", world=args.ranks, steps=args.steps,
                           fault=fault, fault_rank=rank,
                           fault_step=rng.randint(1, args.steps), hosts=hosts, seed=i)
        t1 = time.perf_counter()
        res = ingest_run(store, [folder], run=f"attempt-{i:05d}", jobs=1)
        times.append(time.perf_counter() - t1)
        t_gen += t1 - t0
        assert res.created
        if not args.json and (i + 1) % max(1, args.runs // 10) == 0:
            print(f"  {i + 1}/{args.runs} runs, {statistics.mean(times) * 1000:.1f} ms/run",
                  file=sys.stderr)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = case.stat().st_size

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    lib = {}
    lib["signatures"], sigs = timed(store.signatures)
    lib["rates"], rates = timed(lambda: rates_for_case(store, at_gpus=100_000))
    lib["suspects"], sus = timed(lambda: suspects_for_case(store))
    problems = store.integrity_check()
    store.close()
    cli = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cmd in (["signatures"], ["rates", "--at-gpus", "100000"], ["suspects"]):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "triage", *cmd, "--case", str(case), "--json"],
                       check=True, capture_output=True, env=env)
        cli[cmd[0]] = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import triage.cli"], check=True, env=env)
    startup = time.perf_counter() - t
    ima = next((v for v in sus.verdicts if v.family == "cuda_illegal_access"), None)
    out = {
        "runs": args.runs, "ranks": args.ranks, "steps": args.steps,
        "seconds_per_run": {"mean": round(statistics.mean(times), 4),
                            "median": round(statistics.median(times), 4),
                            "p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 4)},
        "ingest_seconds_total": round(sum(times), 1),
        "log_generation_seconds": round(t_gen, 1),
        "db_bytes": size, "db_mib": round(size / 2**20, 1),
        "latency_library_s": {k: round(v, 3) for k, v in lib.items()},
        "latency_cli_s": {k: round(v, 3) for k, v in cli.items()},
        "cli_startup_s": round(startup, 3),
        "signatures": len(sigs), "failed_runs": rates.failed_runs,
        "bad_host_verdict": (ima.verdict, list(ima.suspects)) if ima else None,
        "integrity_problems": problems,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        spr = out["seconds_per_run"]
        print(f"{args.runs} runs x {args.ranks} ranks x {args.steps} steps")
        print(f"ingest: {spr['mean'] * 1000:.1f} ms/run mean, {spr['median'] * 1000:.1f} median, "
              f"{spr['p95'] * 1000:.1f} p95 ({out['ingest_seconds_total']} s in all)")
        print(f"database: {out['db_mib']} MiB ({size} bytes), {len(sigs)} signatures, "
              f"{rates.failed_runs} failed runs")
        for k in lib:
            print(f"{k:>10}: {lib[k] * 1000:7.0f} ms library, {cli[k] * 1000:7.0f} ms CLI --json "
                  f"(interpreter + imports alone: {startup * 1000:.0f} ms)")
        print(f"bad host found: {out['bad_host_verdict']}; integrity: {problems or 'ok'}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
