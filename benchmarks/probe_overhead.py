"""Step time of the demo model with and without triage.probe, as a ratio.

    OMP_NUM_THREADS=1 python benchmarks/probe_overhead.py [--rounds 30] [--chunk 100] [--width 64 512]

One process, CPU, the demo job's MLP (32-W-W-8) and momentum SGD, batch 16 by default: a
deliberately tiny step (well under a millisecond), so the probe's fixed costs (hashing every
parameter byte, a gradient norm, non-finite counts, one JSON line) show at their worst. Larger
--width shows how the ratio falls as the step grows (the probe is linear in parameter bytes,
the step is linear in parameters x batch). The cross-rank check (check_every) needs a process
group and is not measured here: it is one 8-byte all-gather per K steps.

The three configurations (no probe, every step, every 10 steps) train in interleaved chunks, so
machine noise hits all three alike; the ratio is taken between the fastest chunks (the least
disturbed), and the median is shown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from triage.demo.train import MomentumSGD  # noqa: E402
from triage.probe import Probe  # noqa: E402


def make(width: int, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, 8))
    opt = MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch, 32)
    y = torch.randint(0, 8, (batch,))
    return model, opt, x, y


class Config:
    """One model + optimizer (+ probe), trained in chunks so configurations can interleave."""

    def __init__(self, width: int, batch: int, probe: Probe | None):
        self.model, self.opt, self.x, self.y = make(width, batch)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.probe = probe
        self.step = 0

    def chunk(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
            if self.probe is not None:
                self.probe.step(self.step, loss=loss, model=self.model)
            self.step += 1
        return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunk", type=int, default=100, help="steps per timed chunk")
    p.add_argument("--rounds", type=int, default=30, help="chunks per configuration")
    p.add_argument("--width", type=int, nargs="+", default=[64, 512])
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch}; {args.rounds} interleaved "
          f"chunks of {args.chunk} steps per configuration; fastest chunk (median in brackets)")
    print(f"{'width':>6} {'params':>9} {'no probe':>16} {'every step':>16} {'ratio':>6} "
          f"{'every 10':>16} {'ratio':>6}")
    for width in args.width:
        with tempfile.TemporaryDirectory() as tmp:
            configs = {"none": Config(width, args.batch, None),
                       "1": Config(width, args.batch, Probe(Path(tmp) / "1", every=1, rank=0, world_size=1)),
                       "10": Config(width, args.batch, Probe(Path(tmp) / "10", every=10, rank=0, world_size=1))}
            for c in configs.values():
                c.chunk(args.chunk)  # warm up
            times: dict[str, list[float]] = {k: [] for k in configs}
            order = list(configs)
            for r in range(args.rounds):
                for k in order[r % 3:] + order[: r % 3]:  # rotate who goes first
                    times[k].append(configs[k].chunk(args.chunk))
            for c in configs.values():
                if c.probe is not None:
                    c.probe.close()
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        n_params = sum(q.numel() for q in configs["none"].model.parameters())

        def cell(k: str) -> str:
            return f"{best[k] * 1e6:.0f}us ({med[k] * 1e6:.0f})"

        print(f"{width:>6} {n_params:>9,} {cell('none'):>16} {cell('1'):>16} "
              f"{best['1'] / best['none']:>5.2f}x {cell('10'):>16} {best['10'] / best['none']:>5.2f}x")


if __name__ == "__main__":
    main()
