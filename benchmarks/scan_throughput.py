"""Scan throughput beside grep: MB/s, lines/s, peak RSS and the time ratio to `LC_ALL=C grep -E -c`.

Generates (once, cached under --dir) realistic logs of a 1,024-rank job that died: an interleaved
console with torch/NCCL/trainer lines where rank 0 prints Megatron-style iteration lines, a CUDA
OOM on one rank near the end and a wall of NCCL watchdog timeouts from every other rank. Layouts:

    single   one interleaved console (--size bytes, default 1 GB)
    files    the same bytes as 1,024 per-rank files (rank_N.log)
    small    --small-files per-rank files of ~13 KB each (default 100,000; 1.3 GB)
    gz       the single console gzipped

For each layout it alternates runs of grep and of `triage scan --json` (the CLI, as a user runs
it, all rules, attribution and root cause), --repeat times, and prints the best and median of
each, the ratio triage/grep, MB/s, lines/s and triage's peak memory (PSS of the whole process tree: pages shared by forked workers count once;
sampled). `rg` is measured too where installed. Also prints the in-process `scan()` time with
all rules vs a handful of rules (the playbook issue's 1.5x bound).

    python benchmarks/scan_throughput.py                      # everything, 1 GB
    python benchmarks/scan_throughput.py --size 200M --layouts single,gz --repeat 2
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# ~30 error patterns a user would grep for: the same families the playbooks cover.
GREP_PATTERNS = r"""
Traceback \(most recent call last\)
[A-Za-z]+Error:
[A-Za-z]+Exception:
Watchdog caught collective operation timeout
Timed out waiting [0-9]+ms
Connection closed by peer
Connection reset by peer
NCCL WARN
NCCL error
ncclSystemError|ncclInternalError|ncclRemoteError|ncclUnhandledCudaError
CUDA out of memory
OutOfMemoryError
illegal memory access
misaligned address
unspecified launch failure
device-side assert triggered
CUBLAS_STATUS_[A-Z_]+
CUDNN_STATUS_[A-Z_]+
Xid \(PCI:[^)]*\): [0-9]+
uncorrectable ECC error
fallen off the bus
[Ll]oss is (nan|inf)
OVERFLOW!
loss scale.*minimum
DataLoader worker \(pid
Bus error
ChildFailedError
exitcode *: *-?[0-9]+
Out of memory: Killed process
slurmstepd: error
""".strip().splitlines()

HOSTS_PER = 8  # ranks per host


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text)


def _lines_for_step(rng: random.Random, step: int, ranks: int, t: float) -> list[str]:
    out = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    ms = int((t % 1) * 1000)
    out.append(f"[rank0]: {stamp},{ms:03d} INFO megatron:  iteration {step:>8}/  500000 | "
               f"consumed samples: {step * 2048:>12} | elapsed time per iteration (ms): 1523.4 | "
               f"learning rate: 3.000E-04 | global batch size:  2048 | lm loss: {2.5 - step * 1e-6:.6E} | "
               f"loss scale: 1.0 | grad norm: 0.812 | number of skipped iterations:   0 |")
    for _ in range(ranks // 16):
        r = rng.randrange(ranks)
        h = r // HOSTS_PER
        kind = rng.random()
        if kind < 0.35:
            out.append(f"[rank{r}]: node-{h:04d}:{4000 + r}:{5000 + r} [{r % HOSTS_PER}] NCCL INFO "
                       f"Channel {rng.randrange(32):02d}/0 : {r}[{r % 8}] -> {(r + 1) % ranks}[{(r + 1) % 8}] via P2P/IPC")
        elif kind < 0.7:
            out.append(f"[rank{r}]: {stamp},{ms:03d} INFO data: rank {r} loaded shard "
                       f"{rng.randrange(100000)} in {rng.random() * 100:.2f} ms (prefetch depth 4)")
        elif kind < 0.9:
            out.append(f"[rank{r}]:[I{time.strftime('%m%d %H:%M:%S', time.gmtime(t))}.{ms:03d}000 "
                       f"ProcessGroupNCCL.cpp:{rng.randrange(500, 3000)}] [PG ID 0 PG GUID 0(default_pg) Rank {r}] "
                       f"NCCL_DEBUG: INFO, TORCH_NCCL_ASYNC_ERROR_HANDLING: 3, TORCH_NCCL_DUMP_ON_TIMEOUT: 1")
        else:
            out.append(f"[rank{r}]: {stamp},{ms:03d} WARNING checkpoint: async save of shard {r} "
                       f"took {rng.random() * 10:.2f} s, slower than the 5.00 s budget")
    return out


def _ending(ranks: int, culprit: int, step: int, t: float) -> list[str]:
    md = time.strftime("%m%d %H:%M:%S", time.gmtime(t))
    out = [f"[rank{culprit}]: Traceback (most recent call last):",
           f'[rank{culprit}]:   File "/workspace/megatron/training.py", line 1190, in train_step',
           f"[rank{culprit}]:     losses_reduced = forward_backward_func(",
           f"[rank{culprit}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
           f"GPU {culprit % 8} has a total capacity of 79.15 GiB of which 1.06 GiB is free. Including "
           f"non-PyTorch memory, this process has 78.08 GiB memory in use. Of the allocated memory "
           f"75.12 GiB is allocated by PyTorch, and 1.43 GiB is reserved by PyTorch but unallocated."]
    for r in range(ranks):
        if r == culprit:
            continue
        out.append(f"[rank{r}]:[E{md}.123456 ProcessGroupNCCL.cpp:616] [Rank {r}] Watchdog caught "
                   f"collective operation timeout: WorkNCCL(SeqNum={step * 3 + 1}, OpType=ALLREDUCE, "
                   f"NumelIn=1048576, NumelOut=1048576, Timeout(ms)=600000) ran for 600038 "
                   f"milliseconds before timing out.")
    return out


def generate_single(path: Path, size: int, ranks: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    t = 1795400000.0
    step = 1
    written = 0
    culprit = ranks // 2 + 5
    with open(path, "w", encoding="utf-8") as fh:
        while written < size:
            block = []
            for _ in range(50):
                block.extend(_lines_for_step(rng, step, ranks, t))
                step += 1
                t += 1.5
            text = "\n".join(block) + "\n"
            fh.write(text)
            written += len(text)
        fh.write("\n".join(_ending(ranks, culprit, step, t + 600)) + "\n")


def split_per_rank(single: Path, outdir: Path, ranks: int) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    handles = {}
    try:
        with open(single, encoding="utf-8") as fh:
            for line in fh:
                r = 0
                if line.startswith("[rank"):
                    end = line.find("]")
                    r = int(line[5:end])
                    line = line[line.find(":", end) + 1:].lstrip(" ") if line[end + 1:end + 2] == ":" else line
                f = handles.get(r)
                if f is None:
                    f = handles[r] = open(outdir / f"rank_{r}.log", "w", encoding="utf-8")
                f.write(line)
    finally:
        for f in handles.values():
            f.close()


def generate_small(outdir: Path, nfiles: int, per_file: int, seed: int = 1) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    t = 1795400000.0
    culprit = nfiles // 3 + 7
    for r in range(nfiles):
        lines = []
        size = 0
        step = 1
        while size < per_file:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + step * 1.5))
            line = (f"{stamp},{step % 1000:03d} INFO trainer: step {step} | loss {2.5 - step * 1e-4:.4f} | "
                    f"tokens/s {rng.randrange(90000, 110000)} | host node-{r // 8:05d}")
            lines.append(line)
            size += len(line) + 1
            step += 1
        md = time.strftime("%m%d %H:%M:%S", time.gmtime(t + step * 1.5 + 600))
        if r == culprit:
            lines.append("RuntimeError: CUDA error: an illegal memory access was encountered")
        else:
            lines.append(f"[E{md}.123456 ProcessGroupNCCL.cpp:616] [Rank {r}] Watchdog caught collective "
                         f"operation timeout: WorkNCCL(SeqNum={step}, OpType=ALLREDUCE, NumelIn=4096, "
                         f"NumelOut=4096, Timeout(ms)=600000) ran for 600021 milliseconds before timing out.")
        (outdir / f"rank_{r}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")


class RssSampler:
    """Peak memory (PSS) of a process tree, sampled from /proc every 20 ms."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _tree(self) -> list[int]:
        pids = [self.pid]
        try:
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        with open(f"/proc/{p}/stat") as fh:
                            ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                        if ppid == self.pid:
                            pids.append(int(p))
                    except (OSError, ValueError, IndexError):
                        pass
        except OSError:
            pass
        return pids

    @staticmethod
    def _memory(pid: int) -> int:
        """Proportional set size (PSS): pages a forked worker still shares with its parent
        count once across the tree, not once per process as summed RSS would count them.
        Falls back to RSS where smaps_rollup is missing."""
        for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
            try:
                with open(f"/proc/{pid}/{name}") as fh:
                    for line in fh:
                        if line.startswith(key):
                            return int(line.split()[1]) * 1024
            except OSError:
                pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(self._memory(p) for p in self._tree())
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def timed(cmd: list[str], env: dict | None = None, shell: bool = False, rss: bool = False):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, shell=shell)
    sampler = RssSampler(proc.pid) if rss else None
    out, errb = proc.communicate()
    dt = time.perf_counter() - t0
    peak = sampler.stop() if sampler else 0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"command failed ({proc.returncode}): {cmd}\n{errb.decode()[-2000:]}")
    return dt, peak, out


def measure(name: str, target: list[str], grep_cmd, rg_cmd, nbytes: int, nlines: int, repeat: int,
            jobs: int) -> dict:
    env = {**os.environ, "LC_ALL": "C"}
    triage_cmd = [sys.executable, "-m", "triage", "scan", "--json", "--jobs", str(jobs), *target]
    g_times, t_times, r_times, peaks = [], [], [], []
    for _ in range(repeat):
        g_times.append(timed(grep_cmd, env=env, shell=isinstance(grep_cmd, str))[0])
        dt, peak, _ = timed(triage_cmd, rss=True)
        t_times.append(dt)
        peaks.append(peak)
        if rg_cmd:
            r_times.append(timed(rg_cmd, env=env, shell=isinstance(rg_cmd, str))[0])
    g, t = min(g_times), min(t_times)
    row = {"layout": name, "MB": nbytes / 1e6, "lines": nlines, "grep_s": g, "triage_s": t,
           "triage_median_s": statistics.median(t_times), "ratio": t / g,
           "MB/s": nbytes / 1e6 / t, "lines/s": nlines / t, "peak_rss_MB": max(peaks) / 1e6,
           "rg_s": min(r_times) if r_times else None}
    return row


def count_lines(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            while True:
                b = fh.read(1 << 24)
                if not b:
                    break
                n += b.count(b"\n")
    return n


def in_process_rules_ratio(path: Path, repeat: int) -> tuple[float, float, int, int]:
    """scan() with every rule vs with a handful of rules, same file, same process."""
    from triage.classify.playbook import Playbook, load_playbooks
    from triage.scan import scan

    full = load_playbooks()
    few_ids = [r for r in full.rules if r.family in ("cuda_oom", "collective_timeout")][:5]
    few = Playbook(tuple(few_ids))
    tf, th = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        scan([path], playbook=full, jobs=1)
        tf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scan([path], playbook=few, jobs=1)
        th.append(time.perf_counter() - t0)
    return min(tf), min(th), len(full.rules), len(few.rules)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G", help="size of the single console (default 1G)")
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--small-files", type=int, default=100_000)
    ap.add_argument("--small-size", default="13K")
    ap.add_argument("--layouts", default="single,files,small,gz")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "triage-bench"))
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    base = Path(args.dir) / f"r{args.ranks}-s{size}"
    base.mkdir(parents=True, exist_ok=True)
    patfile = base / "patterns.txt"
    patfile.write_text("\n".join(GREP_PATTERNS) + "\n")
    single = base / "console.log"
    if not single.exists():
        print(f"generating {single} ({size / 1e6:.0f} MB)…", file=sys.stderr)
        tmp = single.with_suffix(".tmp")
        generate_single(tmp, size, args.ranks)
        tmp.rename(single)
    rg = shutil.which("rg")
    rows = []
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    for layout in layouts:
        if layout == "single":
            target = [single]
            grep = ["grep", "-E", "-c", "-f", str(patfile), str(single)]
            rgc = [rg, "-c", "-f", str(patfile), str(single)] if rg else None
        elif layout == "files":
            d = base / "per-rank"
            if not (d / "rank_0.log").exists():
                print("splitting into per-rank files…", file=sys.stderr)
                split_per_rank(single, d, args.ranks)
            target = sorted(d.glob("rank_*.log"))
            grep = ["grep", "-r", "-E", "-c", "-f", str(patfile), str(d)]
            rgc = [rg, "-c", "-f", str(patfile), str(d)] if rg else None
            target = [d]
        elif layout == "small":
            d = base / f"small-{args.small_files}"
            if not (d / f"rank_{args.small_files - 1}.log").exists():
                print(f"generating {args.small_files:,} small files…", file=sys.stderr)
                generate_small(d, args.small_files, parse_size(args.small_size))
            target = [d]
            grep = ["grep", "-r", "-E", "-c", "-f", str(patfile), str(d)]
            rgc = [rg, "-c", "-f", str(patfile), str(d)] if rg else None
        elif layout == "gz":
            gz = base / "console.log.gz"
            if not gz.exists():
                print("compressing…", file=sys.stderr)
                try:
                    from isal import igzip as gzmod  # type: ignore
                except ImportError:
                    gzmod = gzip
                with open(single, "rb") as src, gzmod.open(gz, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
            target = [gz]
            grep = f"zcat {gz} | LC_ALL=C grep -E -c -f {patfile}"
            rgc = None
        else:
            raise SystemExit(f"unknown layout {layout}")
        files = [p for t in target for p in (sorted(Path(t).rglob("*")) if Path(t).is_dir() else [Path(t)]) if p.is_file()]
        nbytes = sum(p.stat().st_size for p in files)
        nlines = count_lines(files)
        print(f"measuring {layout}: {len(files):,} file(s), {nbytes / 1e6:,.0f} MB…", file=sys.stderr)
        rows.append(measure(layout, [str(t) for t in target], grep, rgc, nbytes, nlines,
                            args.repeat, args.jobs))
    print(f"\nscan throughput ({os.cpu_count()} cores, --jobs {args.jobs}, best of {args.repeat}, "
          f"alternating runs; triage = the CLI with all rules, attribution and root cause)")
    hdr = f"{'layout':8} {'MB':>8} {'grep s':>8} {'triage s':>9} {'ratio':>6} {'MB/s':>8} {'Mlines/s':>9} {'peak PSS':>9} {'rg s':>6}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        rgs = f"{r['rg_s']:.2f}" if r["rg_s"] else "-"
        print(f"{r['layout']:8} {r['MB']:8.0f} {r['grep_s']:8.2f} {r['triage_s']:9.2f} {r['ratio']:6.2f} "
              f"{r['MB/s']:8.0f} {r['lines/s'] / 1e6:9.2f} {r['peak_rss_MB']:7.0f}MB {rgs:>6}")
    if "single" in layouts:
        full_t, few_t, nfull, nfew = in_process_rules_ratio(single, max(1, args.repeat - 1))
        print(f"\nall {nfull} rules vs {nfew} rules, scan() in process, jobs=1: {full_t:.2f} s vs "
              f"{few_t:.2f} s, ratio {full_t / few_t:.2f} (bound: 1.5)")


if __name__ == "__main__":
    main()
