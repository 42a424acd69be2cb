"""Build `ScanResult`s for case-store tests: what the scanner would return for one synthetic run.

Used where a test needs many runs with a controlled layout (which host, which rank, which step
failed): rates and suspects need dozens of runs, far more than real torch jobs can give here.
Tests over real logs live in test_realruns.py.
"""

from __future__ import annotations

from triage.records import (Failure, InputInfo, RankState, ScanResult, ScanStats,
                            SignatureSummary, SourceRef)

SIG_NAN = "sig1:nan0000000000001"
SIG_TIMEOUT = "sig1:timeout00000002"
SIG_IMA = "sig1:ima0000000000003"
SIG_PEER = "sig1:peer000000000004"

FAMILY = {SIG_NAN: "nonfinite", SIG_TIMEOUT: "collective_timeout",
          SIG_IMA: "cuda_illegal_access", SIG_PEER: "comm_error"}
TEMPLATE = {SIG_NAN: "FloatingPointError: loss is <NUM> at step <NUM>",
            SIG_TIMEOUT: "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=<NUM>)",
            SIG_IMA: "CUDA error: an illegal memory access was encountered",
            SIG_PEER: "Connection closed by peer [<IP>]:<NUM>"}


def hosts_for(world: int, per_host: int = 8, prefix: str = "node") -> dict[int, str]:
    return {r: f"{prefix}{r // per_host}" for r in range(world)}


def failure(sig: str, rank: int, host: str | None, step: int | None, role: str,
            line: int = 10, path: str | None = None) -> Failure:
    return Failure(family=FAMILY.get(sig, "other"), rank=rank, host=host, step=step,
                   time=None, message=f"[rank{rank}]: {TEMPLATE.get(sig, sig)} ({step})",
                   source=SourceRef(path or f"rank{rank}.log", line), role=role, signature=sig,
                   playbook=f"{FAMILY.get(sig, 'other')}.rule", why="test")


def scan_result(world: int = 8, steps: int = 100, hosts: dict[int, str] | None = None,
                root: tuple[str, int, int] | None = None, symptom: str | None = SIG_PEER,
                last_steps: dict[int, int] | None = None) -> ScanResult:
    """A run of `world` ranks. `root=(sig, rank, step)` makes it fail there; the other ranks
    then fail with `symptom` at the same step."""
    hosts = hosts if hosts is not None else hosts_for(world)
    failures: list[Failure] = []
    rc = None
    if root is not None:
        sig, rrank, rstep = root
        rc = failure(sig, rrank, hosts.get(rrank), rstep, "root")
        failures.append(rc)
        if symptom:
            for r in range(world):
                if r != rrank:
                    failures.append(failure(symptom, r, hosts.get(r), rstep, "symptom", line=20))
    stop = root[2] if root else steps
    ranks = tuple(RankState(r, hosts.get(r), (last_steps or {}).get(r, stop), None)
                  for r in range(world))
    sigs: dict[str, list[Failure]] = {}
    for f in failures:
        sigs.setdefault(f.signature, []).append(f)
    summaries = tuple(SignatureSummary(s, FAMILY.get(s, "other"), TEMPLATE.get(s, s), len(fs),
                                       tuple(sorted({f.rank for f in fs})),
                                       tuple(sorted({f.host for f in fs if f.host})),
                                       min(f.step for f in fs), f"{FAMILY.get(s)}.rule")
                      for s, fs in sigs.items())
    return ScanResult(inputs=tuple(InputInfo(f"rank{r}.log", 100, 10) for r in range(world)),
                      root_cause=rc, failures=tuple(failures), signatures=summaries,
                      stats=ScanStats(10 * world, 100 * world, 0.01), ranks=ranks,
                      world_size=world, max_step=stop)
