"""Write the per-rank logs of one synthetic training attempt, in torch's `[rankN]:` format.

For tests and benchmarks that need many runs (durability loops, 1,000-run scale) where real
torch jobs would take hours on two cores. The lines follow what real jobs print (see
tests/realruns.py for the real ones): step lines, a Python traceback ending in the error on the
failing rank, and gloo's "Connection closed by peer" on the others. The CUDA line's wording is
PyTorch's (c10/cuda/CUDAException: "CUDA error: an illegal memory access was encountered"); it
cannot be produced on this CPU-only machine. Hosts go into triage-run.yaml, as a user would
write them when the launcher does not print them.
"""

from __future__ import annotations

from pathlib import Path

ERRORS = {
    "ima": "RuntimeError: CUDA error: an illegal memory access was encountered",
    "nan": "FloatingPointError: loss is nan at step {step} (rank {rank})",
    "value": "ValueError: corrupt record {step}7 in shard /data/shard-{rank}.bin",
}


def write_run(folder: Path, *, world: int, steps: int, fault: str | None = None,
              fault_rank: int = 0, fault_step: int = 0, hosts: dict[int, str] | None = None,
              seed: int = 0, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stop = fault_step if fault else steps
    for r in range(world):
        lines = [f"[rank{r}]: starting seed={seed} {extra}"]
        last = stop if r == fault_rank or not fault else stop
        lines += [f"[rank{r}]: step {s} | loss {2.5 - s * 1e-3:.4f}" for s in range(1, last + 1)]
        if fault and r == fault_rank:
            lines += [f"[rank{r}]: Traceback (most recent call last):",
                      f'[rank{r}]:   File "/work/train.py", line 88, in <module>',
                      f"[rank{r}]:     loss.backward()",
                      f"[rank{r}]: " + ERRORS[fault].format(step=fault_step, rank=r)]
        elif fault:
            lines.append(f"[rank{r}]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/"
                         f"pair.cc:534] Connection closed by peer [10.1.{r // 256}.{r % 256}]:"
                         f"{29500 + r}")
        (folder / f"rank{r}.log").write_text("\n".join(lines) + "\n")
    if hosts:
        body = "".join(f"  {r}: {h}\n" for r, h in sorted(hosts.items()))
        (folder / "triage-run.yaml").write_text(f"seed: {seed}\nhosts:\n{body}")
    return folder
