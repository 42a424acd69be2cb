"""A real data-parallel training job with injectable faults: the patient for `triage demo`.

Run it under torchrun (or through `triage.demo.launch.run_job`, which does that for you):

    python -m torch.distributed.run --standalone --nproc-per-node 4 \\
        -m triage.demo.train --steps 40 --seed 3 --fault nan --fault-step 12 --fault-rank 2

What it is: a small MLP classifier (32-64-64-8) on a synthetic data set, data parallel over a
gloo process group on CPU: every rank computes gradients on its own shard of each batch and the
gradients are averaged with an all-reduce. It logs like a real trainer (Python logging with
timestamps, one step line per rank per step) and lets every error torch raises propagate
untouched; the entry point is wrapped in elastic's ``@record`` so a failing rank writes
``error.json`` under torchrun's ``--log-dir``.

Under ``torchrun --start-method fork --run-path .../train.py`` (triage.demo.launch's "fork"
launcher) the workers are forked from the agent, which has imported torch already. A forked
worker restores the default signal handlers (it inherits the agent's, which would delay its
death on SIGTERM until a blocking collective returns), prints its own exception the way an
exec-started worker's interpreter does (elastic's fork wrapper would only pipe it to the
agent), and returns instead of calling ``os._exit`` (the wrapper exits for it).

Gradient sync and optimizer: ``--sync ddp`` wraps the model in DistributedDataParallel (with
the reduction bug as a DDP comm hook); the default ``--sync manual`` averages one flat gradient
buffer with one all-reduce per step, and ``--optim plain`` (default) is momentum SGD written
out. Both defaults exist for speed only: constructing DDP or any torch.optim optimizer imports
torch._dynamo, several CPU-seconds per rank, which on a 2-core machine doubles the time of a
short 4-rank job. The training is the same: the first update is bitwise identical and later
losses agree to float rounding (DDP's bucket lays the gradients out in another order, so gloo
adds some elements in another order); tests/demo/test_realruns.py checks it.

Faults (``--fault KIND[,KIND...]``), each injected on rank ``--fault-rank`` at step
``--fault-step`` unless said otherwise:

- ``exception``: the batch-shape check of the data path raises ``ValueError``.
- ``sigkill``: the rank sends itself SIGKILL (no traceback, no error.json).
- ``hang``: the rank sleeps forever before the gradient all-reduce; the other ranks time out in
  it after ``--pg-timeout`` seconds, and the agent then terminates the sleeper.
- ``nan``: the rank's loss becomes NaN; the trainer's own finite check raises
  ``FloatingPointError``.
- ``data_error``: a corrupt record raises ``ValueError`` in the data set's decode. With
  ``--fault-step``/``--fault-rank`` it is the first record that rank reads at that step;
  without them the corrupt record sits at data-set index ``--corrupt-index`` and is reached (or
  not) depending on the seed's shuffle, on whichever rank draws it.
- ``reduce_bug``: gradients are synchronised by a custom all-reduce (a DDP comm hook) with a
  rare, data-dependent bug: when a keyed hash of a rank's gradient bucket falls below
  ``--reduce-bug-rate``, that rank's copy of the sum comes back wrong. How it is wrong also
  depends on the hash, and decides the symptom:
    * ``bitflip`` (mantissa bit 12 of the largest element flipped: off by about 0.05%):
      silent divergence, seen only by the probe (a one-ulp error would be rounded away by the
      update and never show);
    * ``nan`` (one element NaN): the gradient-norm check misses NaN (``x > limit`` is False),
      the update poisons the parameters, and the next step's loss check raises
      ``FloatingPointError``;
    * ``huge`` (one element 1e12): the gradient-norm check raises ``RuntimeError``;
    * ``spike`` (the whole bucket x64): the rank's spike heuristic skips the update *and* the
      metrics all-reduce, so its collectives fall out of step with the other ranks'
      (a desync: a gloo error or a timeout).
  ``--fault-step``/``--fault-rank`` are ignored: the data decides. The seed decides the data.

What was really injected is written, one JSON line per injection, to
``$TRIAGE_DEMO_TRUTH/truth-rank<R>.jsonl`` when that variable is set (outside the log tree, so
triage never reads it: tests compare triage's answers against it).

Limits: CPU and gloo only; one bucket per step (the model is small), so the reduce bug fires at
most once per rank per step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from datetime import timedelta

FAULTS = ("exception", "sigkill", "hang", "nan", "data_error", "reduce_bug")
REDUCE_KINDS = ("bitflip", "nan", "huge", "spike")

log = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m triage.demo.train", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault", default="", help="comma-separated: " + ", ".join(FAULTS))
    p.add_argument("--fault-step", type=int, default=None)
    p.add_argument("--fault-rank", type=int, default=None)
    p.add_argument("--sync", choices=("manual", "ddp"), default="manual",
                   help="gradient sync: one flat all-reduce by hand (fast start) or DDP")
    p.add_argument("--optim", choices=("plain", "torch"), default="plain",
                   help="momentum SGD written out (fast start) or torch.optim.SGD")
    p.add_argument("--pg-timeout", type=float, default=30.0, help="process-group timeout, seconds")
    p.add_argument("--batch-size", type=int, default=16, help="per rank")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--samples", type=int, default=8192)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--corrupt-index", type=int, default=4242)
    p.add_argument("--reduce-bug-rate", type=float, default=0.01,
                   help="probability per rank and step that the custom all-reduce goes wrong")
    p.add_argument("--grad-limit", type=float, default=1e4)
    p.add_argument("--spike-factor", type=float, default=20.0)
    p.add_argument("--probe", default=None, help="directory for probe records (off by default)")
    p.add_argument("--probe-every", type=int, default=1)
    p.add_argument("--probe-check", type=int, default=0,
                   help="compare parameter checksums across ranks every K recorded steps")
    p.add_argument("--probe-on-divergence", choices=("log", "raise"), default="log")
    args = p.parse_args(argv)
    faults = tuple(f for f in args.fault.split(",") if f)
    for f in faults:
        if f not in FAULTS:
            p.error(f"unknown fault {f!r}; choose from {', '.join(FAULTS)}")
    args.faults = faults
    return args


def _truth(fault: str, rank: int, step: int, **detail) -> None:
    """Record an injection outside the logs (see module docstring)."""
    where = os.environ.get("TRIAGE_DEMO_TRUTH")
    if not where:
        return
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, f"truth-rank{rank}.jsonl"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"fault": fault, "rank": rank, "step": step, **detail}) + "\n")


class SyntheticRecords:
    """A map-style data set of 'encoded records': features from a fixed generator, labels from a
    fixed random teacher network, so the task is learnable and identical on every rank.

    A record index in ``corrupt`` (or the first record decoded after ``poison_next`` is set)
    fails its integrity check in ``decode``, as a truncated or bit-rotted shard would."""

    def __init__(self, n: int, features: int = 32, classes: int = 8, corrupt=frozenset(),
                 rank: int = 0):
        import torch

        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, features, generator=g)
        teacher = torch.randn(features, classes, generator=g)
        self.y = (self.x @ teacher).argmax(dim=1)
        self.corrupt = set(corrupt)
        self.poison_next = False
        self.rank = rank
        self.step = 0  # the training step being fed, for the truth record

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.decode(index)

    def decode(self, index: int):
        if index in self.corrupt or self.poison_next:
            self.poison_next = False
            _truth("data_error", self.rank, self.step, index=int(index))
            stored = hashlib.blake2b(str(index).encode(), digest_size=4).hexdigest()
            computed = hashlib.blake2b(str(-index).encode(), digest_size=4).hexdigest()
            raise ValueError(f"corrupt record {index} in shard train-{index // 1024:05d}: "
                             f"crc32 mismatch (stored 0x{stored}, computed 0x{computed})")
        return self.x[index], self.y[index]


class ReduceBug:
    """The custom all-reduce (a DDP comm hook) with a rare, data-dependent wrong sum."""

    def __init__(self, rank: int, seed: int, rate: float):
        self.rank = rank
        self.key = hashlib.blake2b(f"reduce-bug:{seed}".encode(), digest_size=16).digest()
        self.rate = rate
        self.step = -1  # set by the training loop before backward

    def decide(self, tensor) -> str | None:
        h = hashlib.blake2b(tensor.detach().numpy().tobytes(), key=self.key, digest_size=16).digest()
        u = int.from_bytes(h[:8], "little") / 2.0**64
        if u >= self.rate:
            return None
        return REDUCE_KINDS[h[8] % len(REDUCE_KINDS)]

    def _corrupt(self, out, kind: str) -> None:
        import torch

        _truth("reduce_bug", self.rank, self.step, kind=kind)
        flat = out.view(-1)
        i = int(flat.abs().argmax())  # the largest entry: a wrong sum that is not rounded away
        if kind == "bitflip":
            flat[i : i + 1].view(torch.int32).bitwise_xor_(1 << 12)
        elif kind == "nan":
            flat[i] = float("nan")
        elif kind == "huge":
            flat[i] = 1e12
        else:
            out.mul_(64.0)

    def all_reduce(self, tensor) -> None:
        """In-place sum over the default group, wrong now and then (manual gradient sync)."""
        import torch.distributed as dist

        kind = self.decide(tensor)
        dist.all_reduce(tensor)
        if kind is not None:
            self._corrupt(tensor, kind)

    def hook(self, process_group, bucket):
        """The same bug as a DDP comm hook (``--sync ddp``)."""
        import torch.distributed as dist

        tensor = bucket.buffer()
        kind = self.decide(tensor)
        group = process_group if process_group is not None else dist.group.WORLD
        tensor.div_(group.size())
        fut = dist.all_reduce(tensor, group=group, async_op=True).get_future()

        def finish(f):
            out = f.value()[0]
            if kind is not None:
                self._corrupt(out, kind)
            return out

        return fut.then(finish)


class ManualDataParallel:
    """Data parallelism by hand: broadcast rank 0's parameters once, then average gradients
    with one all-reduce of a flat buffer per step (``reduce`` is ``dist.all_reduce`` or the
    buggy custom all-reduce). Used by default because constructing DDP imports torch._dynamo,
    which costs several seconds per rank on a small CPU machine; ``--sync ddp`` uses real DDP."""

    def __init__(self, module, reduce=None):
        import torch.distributed as dist

        self.module = module
        self.reduce = reduce or dist.all_reduce
        self.world = dist.get_world_size()
        for p in module.parameters():
            dist.broadcast(p.data, src=0)

    def __call__(self, x):
        return self.module(x)

    def parameters(self):
        return self.module.parameters()

    def sync_gradients(self) -> None:
        import torch

        params = [p for p in self.module.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        flat.div_(self.world)
        self.reduce(flat)
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


class MomentumSGD:
    """SGD with momentum (the update of torch.optim.SGD with dampening 0, no nesterov).

    Written out because constructing any torch.optim optimizer imports torch._dynamo, several
    seconds per rank on a small CPU machine; ``--optim torch`` uses torch.optim.SGD instead."""

    def __init__(self, params, lr: float, momentum: float):
        self.params = list(params)
        self.lr, self.momentum = lr, momentum
        self.buffers: list = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = p.grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(p.grad)
                p.add_(buf, alpha=-self.lr)


def build(args, rank: int):
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    return model


def fault_here(args, kind: str, rank: int, step: int) -> bool:
    return kind in args.faults and rank == args.fault_rank and step == args.fault_step


def train(args) -> None:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.pg_timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    host = socket.gethostname()
    log.info("rank %d/%d on %s (pid %d): backend gloo, master %s:%s, timeout %.0fs",
             rank, world, host, os.getpid(), os.environ.get("MASTER_ADDR"),
             os.environ.get("MASTER_PORT"), args.pg_timeout)

    corrupt: set[int] = set()
    if "data_error" in args.faults and args.fault_step is None:
        corrupt.add(args.corrupt_index)
    data = SyntheticRecords(args.samples, corrupt=corrupt, rank=rank)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, num_workers=0,
                        drop_last=True)
    bug = ReduceBug(rank, args.seed, args.reduce_bug_rate) if "reduce_bug" in args.faults else None
    if args.sync == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(build(args, rank))
        if bug is not None:
            model.register_comm_hook(None, bug.hook)
    else:
        model = ManualDataParallel(build(args, rank), reduce=bug.all_reduce if bug else None)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("gradient sync: %s, %s all-reduce", "DDP" if args.sync == "ddp" else "flat buffer",
             "custom" if bug is not None else "stock")
    if args.optim == "torch":
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    else:
        optimizer = MomentumSGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    probe = None
    if args.probe:
        from triage.probe import Probe

        probe = Probe(args.probe, every=args.probe_every, check_every=args.probe_check,
                      on_divergence=args.probe_on_divergence, rank=rank, world_size=world, host=host)
    log.info("model: MLP 32-64-64-8, %d parameters; data: %d samples, batch %d per rank, seed %d",
             n_params, len(data), args.batch_size, args.seed)
    if rank == 0:
        log.info("training for %d steps on %d ranks", args.steps, world)

    t0 = time.monotonic()
    step, epoch, ema = 0, 0, None
    batches = iter(())
    while step < args.steps:
        data.step = step
        if fault_here(args, "data_error", rank, step):
            data.poison_next = True
        try:
            x, y = next(batches)
        except StopIteration:
            sampler.set_epoch(epoch)
            epoch += 1
            batches = iter(loader)
            continue
        if fault_here(args, "exception", rank, step):
            _truth("exception", rank, step)
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(f"expected a 2-D batch of features, got shape {tuple(x.shape)}")
        if fault_here(args, "sigkill", rank, step):
            _truth("sigkill", rank, step)
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        loss = loss_fn(model(x), y)
        if fault_here(args, "nan", rank, step):
            _truth("nan", rank, step)
            loss = loss * float("nan")
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step} (rank {rank})")
        if fault_here(args, "hang", rank, step):
            _truth("hang", rank, step)
            while True:
                time.sleep(3600)

        optimizer.zero_grad(set_to_none=True)
        if bug is not None:
            bug.step = step
        loss.backward()
        if args.sync == "manual":
            model.sync_gradients()
        grad_norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
        if grad_norm > args.grad_limit:
            raise RuntimeError(f"gradient norm {grad_norm:.4g} exceeds limit {args.grad_limit:g} "
                               f"at step {step}: refusing to apply the update")
        if ema is not None and step >= 5 and grad_norm > args.spike_factor * ema:
            log.warning("grad-norm spike %.4g (ema %.4g) at step %d: skipping this update",
                        grad_norm, ema, step)
            step += 1
            continue
        ema = grad_norm if ema is None else 0.9 * ema + 0.1 * grad_norm
        optimizer.step()
        if probe is not None:
            probe.step(step, loss=loss, model=model)

        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world
        if step % args.log_every == 0 or step == args.steps - 1:
            log.info("step %d | loss %.4f | mean_loss %.4f | grad_norm %.4f | lr %.0e",
                     step, loss.item(), mean_loss.item(), grad_norm, args.lr)
        step += 1

    dist.barrier()
    if probe is not None:
        probe.close()
    log.info("training finished: %d steps in %.1fs", args.steps, time.monotonic() - t0)
    dist.destroy_process_group()



def main(argv: list[str] | None = None) -> None:
    import multiprocessing

    from torch.distributed.elastic.multiprocessing.errors import record

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    forked = multiprocessing.parent_process() is not None
    if forked:
        # A forked worker inherits the agent's signal handlers (elastic's SIGTERM handler
        # raises in Python, which waits until a blocking collective returns); a worker started
        # on its own has the defaults and dies at once when the agent stops it. Restore them.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        record(train)(args)
    except Exception:
        if forked:
            # A worker forked by torchrun (--run-path --start-method fork): elastic's wrapper
            # sends the traceback to the agent through a pipe and never prints it. Print it as
            # the interpreter of a worker started on its own would (sys.excepthook, which
            # init_process_group made prefix every line with "[rank<R>]:").
            sys.excepthook(*sys.exc_info())
            sys.stderr.flush()
        raise
    logging.shutdown()
    if forked:
        # elastic's wrapper reports the result and leaves with os._exit itself
        return
    # Training finished cleanly. Leave without running C++ static destructors: with DDP on gloo,
    # torch 2.13 now and then aborts at interpreter exit ("terminate called without an active
    # exception", SIGABRT) after everything is done, which would turn a clean run into a crash.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
