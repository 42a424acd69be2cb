"""Accuracy and calibration of the hypothesis ledger on simulated ground-truth worlds.

For each kind of world (triage/analyze/hyp_worlds.py: one bug with 2-5 symptoms; 2-5
independent bugs; a bad host plus a software bug; two bugs behind one signature; symptoms that
share hosts by chance; `triage demo`'s shape, a mitigated bug plus one it leaves alone) and each
number of incidents, draw worlds, simulate runs until that many incidents, and ask the ledger. By default every run is written as REAL log files (a console log
with rank prefixes, step lines and the error lines of its failure, plus triage-run.yaml) and
ingested through the CLI (`python -m triage ingest DIR --run NAME --label ...`) into a fresh
case, and the verdict is read from `python -m triage hypotheses --json`. `--direct` feeds the
simulator's evidence to the library instead (fast; for tuning).

Printed: per kind and number of incidents, how often the verdict is right (one bug vs many,
and the right grouping: the best explanation's causes are exactly the true bugs' incident
sets), and calibration: the best explanation's posterior, binned, against how often it was
right. Target: >= 95% right with 30 incidents; of verdicts given ~0.9, ~90% right.

    python benchmarks/hypotheses_accuracy.py --direct --worlds 40 --incidents 10,20,30,50
    python benchmarks/hypotheses_accuracy.py --worlds 4 --incidents 30 --jobs 2   # through the CLI
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage.analyze.hyp_worlds import KINDS, World, make_world, simulate, write_run  # noqa: E402
from triage.analyze.hypotheses import analyse  # noqa: E402

BINS = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.01)]


def verdict_direct(world: World) -> tuple[set[frozenset[str]], float, float]:
    led = analyse(world.evidence(), explain=False)
    best = {frozenset(c.incidents) for c in led.best.causes}
    return best, led.best.posterior, led.p_one_bug


def verdict_cli(world: World, root: Path) -> tuple[set[frozenset[str]], float, float]:
    case = root / "case.db"
    env = dict(os.environ, TRIAGE_CASE=str(case), OMP_NUM_THREADS="1")
    ids: dict[str, str] = {}
    for run in world.runs:
        d = root / run.name
        labels = write_run(run, d)
        cmd = [sys.executable, "-m", "triage", "ingest", str(d), "--run", run.name]
        for k, v in labels.items():
            cmd += ["--label", f"{k}={v}"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"ingest failed for {run.name}: {p.stderr.strip()}")
        if run.failure:
            ids[run.name] = f"{run.name}:r{run.failure[3]}"
    p = subprocess.run([sys.executable, "-m", "triage", "hypotheses", "--json"], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"triage hypotheses failed: {p.stderr.strip()}")
    out = json.loads(p.stdout)
    best = {frozenset(ids[r] for r in c["runs"]) for c in out["best"]["causes"]}
    return best, out["best"]["posterior"], out["p_one_bug"]


def verdict_direct_job(world: World) -> tuple[set[frozenset[str]], float, float]:
    return verdict_direct(world)


def verdict_cli_job(world: World) -> tuple[set[frozenset[str]], float, float]:
    with tempfile.TemporaryDirectory(prefix="triage-hyp-") as tmp:
        return verdict_cli(world, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", type=int, default=20, help="worlds per kind and size")
    ap.add_argument("--incidents", default="10,20,30,50")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=1,
                    help="worlds scored in parallel processes (the worlds drawn do not change)")
    ap.add_argument("--direct", action="store_true",
                    help="feed the simulator's evidence to the library (no log files, no CLI)")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.incidents.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    # worlds are drawn first, in order, so the result does not depend on --jobs
    worlds = [(kind, n, simulate(make_world(kind, rng), n, rng))
              for n in sizes for kind in kinds for _ in range(args.worlds)]
    job = verdict_direct_job if args.direct else verdict_cli_job
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            verdicts = pool.map(job, [w for _, _, w in worlds], chunksize=1)
    else:
        verdicts = [job(w) for _, _, w in worlds]
    rows = []  # (kind, n, right, posterior, one_right)
    for (kind, n, world), (best, post, p_one) in zip(worlds, verdicts):
        right = best == world.truth()
        one_right = (p_one >= 0.5) == world.one_bug
        rows.append((kind, n, right, post, one_right))
    mode = "direct (simulator evidence)" if args.direct else "real log files through the CLI"
    print(f"hypotheses accuracy: {args.worlds} worlds per kind and size, {mode}, "
          f"{time.perf_counter() - t0:.1f} s")
    header = "kind".ljust(14) + "".join(f"{n:>8}" for n in sizes)
    print("\nright grouping (best explanation == true bugs), by number of incidents")
    print(header)
    for kind in kinds + ["all"]:
        cells = []
        for n in sizes:
            sel = [r for r in rows if r[1] == n and (kind == "all" or r[0] == kind)]
            cells.append(f"{sum(r[2] for r in sel) / len(sel):>8.0%}" if sel else " " * 8)
        print(kind.ljust(14) + "".join(cells))
    print("\none bug vs many right (P(one bug) >= 0.5 iff one bug), by number of incidents")
    print(header)
    for kind in kinds + ["all"]:
        cells = []
        for n in sizes:
            sel = [r for r in rows if r[1] == n and (kind == "all" or r[0] == kind)]
            cells.append(f"{sum(r[4] for r in sel) / len(sel):>8.0%}" if sel else " " * 8)
        print(kind.ljust(14) + "".join(cells))
    print("\ncalibration: posterior of the best explanation vs how often it was right")
    print("posterior".ljust(14) + "verdicts".rjust(10) + "mean p".rjust(10) + "right".rjust(10))
    for lo, hi in BINS:
        sel = [r for r in rows if lo <= r[3] < hi]
        if sel:
            mean = sum(r[3] for r in sel) / len(sel)
            acc = sum(r[2] for r in sel) / len(sel)
            print(f"{lo:.2f}-{min(hi, 1.0):.2f}".ljust(14) + f"{len(sel):>10}{mean:>10.3f}{acc:>10.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
