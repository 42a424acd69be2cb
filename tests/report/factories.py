"""ScanResult factories for report tests: a small, realistic incident built by hand.

The incident: rank 2 on host node-b hits CUDA OOM at step 41; the other three ranks time out in
an all-reduce a minute later (symptoms). The wording follows torch's messages (OutOfMemoryError,
the c10d watchdog timeout); on this CPU-only machine no CUDA/NCCL log can be produced, so the
lines are written by hand in torchrun's "[rankN]:" prefix style.
"""

from __future__ import annotations

from pathlib import Path

from triage.records import (
    Failure,
    InputInfo,
    RankState,
    ScanResult,
    ScanStats,
    SignatureSummary,
    SourceRef,
)
from triage.report.model import Advice

OOM = ("[rank2]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
       "GPU 0 has a total capacity of 79.11 GiB of which 1.02 GiB is free.")
TIMEOUT = ("[rank{r}]: [E1123 00:01:{s:02d}.000000 ProcessGroupNCCL.cpp:632] [Rank {r}] "
           "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=812, "
           "OpType=ALLREDUCE, NumelIn=1048576, NumelOut=1048576, Timeout(ms)=600000) ran for "
           "600012 milliseconds before timing out.")


def log_lines(payload: str = "") -> list[str]:
    """Lines of the combined console log the failures below point into (1-based = index+1)."""
    lines = [f"[rank{r}]: step {s} loss {2.5 - s / 100:.4f}" for s in range(38, 42)
             for r in range(4)]
    lines += [
        "[rank2]: Traceback (most recent call last):",
        '[rank2]:   File "train.py", line 88, in <module>',
        "[rank2]:     loss = model(batch).sum()",
        OOM + payload,
    ]
    lines += [TIMEOUT.format(r=r, s=10 + r) for r in (0, 1, 3)]
    lines += ["E1123 00:01:20.000000 torch/distributed/elastic/multiprocessing/api.py:869] "
              "failed (exitcode: 1) local_rank: 2 (pid: 4242) of binary: python"]
    return lines


def write_log(directory: Path, payload: str = "", name: str = "console.log") -> Path:
    path = directory / name
    path.write_text("\n".join(log_lines(payload)) + "\n", encoding="utf-8")
    return path


def incident(path: str = "console.log", payload: str = "", host_payload: str = "",
             with_time: bool = True) -> ScanResult:
    lines = log_lines(payload)
    oom_line = lines.index(OOM + payload) + 1
    root = Failure(
        family="cuda_oom", rank=2, host="node-b" + host_payload, step=41,
        time="2026-11-23T00:00:05Z" if with_time else None, message=OOM + payload,
        source=SourceRef(path, oom_line), role="root", signature="sig1:0a1b2c3d4e5f",
        playbook="cuda_oom.allocate", why="CUDA allocator could not allocate memory")
    symptoms = []
    for r in (0, 1, 3):
        text = TIMEOUT.format(r=r, s=10 + r)
        symptoms.append(Failure(
            family="collective_timeout", rank=r, host="node-a" if r < 2 else "node-b" + host_payload,
            step=41, time=f"2026-11-23T00:01:{10 + r:02d}Z" if with_time else None,
            message=text, source=SourceRef(path, lines.index(text) + 1), role="symptom",
            signature="sig1:9f8e7d6c5b4a", playbook="collective_timeout.watchdog",
            why="waiting for rank 2, which had already failed"))
    failures = (root, *symptoms)
    sigs = (
        SignatureSummary(id="sig1:0a1b2c3d4e5f", family="cuda_oom",
                         template="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                  "<NUM> GiB." + payload,
                         count=1, ranks=(2,), hosts=("node-b" + host_payload,), first_step=41,
                         playbook="cuda_oom.allocate"),
        SignatureSummary(id="sig1:9f8e7d6c5b4a", family="collective_timeout",
                         template="Watchdog caught collective operation timeout: "
                                  "WorkNCCL(SeqNum=<NUM>, OpType=ALLREDUCE, ...)",
                         count=3, ranks=(0, 1, 3), hosts=("node-a", "node-b" + host_payload),
                         first_step=41, playbook="collective_timeout.watchdog"),
    )
    ranks = tuple(RankState(rank=r, host="node-a" if r < 2 else "node-b" + host_payload,
                            last_step=41 if r != 2 else 40) for r in range(4))
    return ScanResult(
        inputs=(InputInfo(path=path, bytes=4096, lines=len(lines)),), root_cause=root,
        failures=failures, signatures=sigs, stats=ScanStats(lines=len(lines), bytes=4096,
                                                            seconds=0.01),
        ranks=ranks, world_size=4, max_step=41)


ADVICE = {
    "cuda_oom.allocate": Advice(
        rule_id="cuda_oom.allocate", title="CUDA out of memory while allocating",
        causes=("activation memory grew with sequence length or batch size",
                "memory fragmentation in the caching allocator"),
        next_steps=("lower the micro-batch size or enable activation checkpointing",
                    "set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
                    "compare torch.cuda.max_memory_allocated() across ranks"),
        references=("https://pytorch.org/docs/stable/notes/cuda.html#memory-management",)),
}


ADVICE["cuda.oom"] = ADVICE["cuda_oom.allocate"].__class__(
    **{**ADVICE["cuda_oom.allocate"].__dict__, "rule_id": "cuda.oom"})


def advice(rule_id: str):
    """Fixed advice for golden files (independent of edits to the real playbooks)."""
    return ADVICE.get(rule_id)
