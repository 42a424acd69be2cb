"""Ground-truth worlds for the hypothesis ledger: simulated clusters with known bugs.

Used by benchmarks/hypotheses_accuracy.py and tests/hypotheses. A world is a cluster (hosts of
8 GPUs, code versions, seeds, an optional mitigation) and a set of bugs. Each bug has a trigger
(the condition under which it fires: a version, a set of seeds, a host, late steps) and a
symptom mix (which signatures its incidents show). Runs are drawn one after another until the
requested number of incidents is reached; a run fails at the first event of the competing
Poisson processes of the bugs active in it, which is exactly the process the model assumes only
in its likelihood, not in its conditions: triggers are hard (zero rate outside), one bug may
hide behind several signatures, several bugs behind one.

The kinds of world (the issue's list):
    one_bug       one bug, 2-5 symptoms, one trigger; a mitigation removes it in some runs
    independent   2-5 bugs, one signature each, distinct triggers
    host_plus_sw  a bad host (Xid / illegal memory access) plus a software bug with 2 symptoms
    shared_sig    two bugs behind one signature: NaN from a data bug (some seeds, old
                  versions) and from a kernel bug (newest version) that also shows illegal
                  memory accesses
    shared_hosts  2-3 independent bugs with non-host triggers on a small cluster, so their
                  symptoms share hosts by chance
    mitigated     `triage demo`'s shape: a bug with 2-4 symptoms in every run that a
                  mitigation removes, plus a one-symptom bug (a seed set, a version or late
                  steps) the mitigation leaves alone

`World.truth()` is the true partition of incident ids; `World.evidence()` the model's input;
`write_run` writes one run as real log files (a console log and triage-run.yaml) for
`triage ingest`. Incident ids are `RUN:rRANK`, as `evidence_from_case` names them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pathlib import Path

from triage.analyze.hyp_evidence import Evidence, IncidentObs, RunObs

KINDS = ("one_bug", "independent", "host_plus_sw", "shared_sig", "shared_hosts", "mitigated")

# The symptom vocabulary: signature name -> family (the log writer renders each as real lines).
SYMPTOMS = ("nan_loss", "nccl_timeout", "illegal_access", "device_assert", "xid_79",
            "ecc_error", "dataloader_killed")

GPUS_PER_HOST = 8
STEPS = 1000


@dataclass(frozen=True)
class Trigger:
    kind: str  # "version" | "seeds" | "host" | "late" | "always"
    values: frozenset[str] = frozenset()
    from_step: int = 0

    def active(self, run: "SimRun") -> bool:
        if self.kind == "version":
            return run.version in self.values
        if self.kind == "seeds":
            return run.seed in self.values
        if self.kind == "host":
            return any(h in self.values for h in run.hosts)
        return True

    def describe(self) -> str:
        if self.kind in ("version", "seeds", "host"):
            return f"{self.kind} in {sorted(self.values)}"
        if self.kind == "late":
            return f"steps >= {self.from_step}"
        return "always"


@dataclass(frozen=True)
class Bug:
    name: str
    trigger: Trigger
    mix: dict  # symptom -> weight
    rate: float  # failures per GPU-step while active
    also: Trigger | None = None  # a second condition that must hold too (data bug: old versions)
    mitigated_by: str | None = None


@dataclass
class SimRun:
    name: str
    version: str
    seed: str
    hosts: tuple[str, ...]
    mitigation: str
    steps: int = STEPS
    failure: tuple[str, str, str, int, int] | None = None  # (bug, symptom, host, rank, step)


@dataclass
class World:
    kind: str
    bugs: list[Bug]
    runs: list[SimRun] = field(default_factory=list)
    hosts: tuple[str, ...] = ()

    @property
    def incidents(self) -> list[SimRun]:
        return [r for r in self.runs if r.failure]

    def truth(self) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for r in self.incidents:
            groups.setdefault(r.failure[0], set()).add(incident_id(r))
        return {frozenset(g) for g in groups.values()}

    @property
    def one_bug(self) -> bool:
        return len({r.failure[0] for r in self.incidents}) == 1

    def evidence(self) -> Evidence:
        runs, incs = [], []
        for r in self.runs:
            steps = r.failure[4] if r.failure else r.steps
            per_host = {h: float(GPUS_PER_HOST * (steps + 1)) for h in r.hosts}
            labels = {"version": r.version, "seed": r.seed, "mitigation": r.mitigation}
            runs.append(RunObs(r.name, float(sum(per_host.values())), labels, per_host, steps))
            if r.failure:
                _bug, symptom, host, rank, step = r.failure
                incs.append(IncidentObs(incident_id(r), r.name, symptom, (), host, rank, step))
        return Evidence(tuple(runs), tuple(incs))


def incident_id(r: SimRun) -> str:
    return f"{r.name}:r{r.failure[3]}"


def _mix(rng: random.Random, symptoms: list[str]) -> dict:
    # not too skewed: every symptom of a bug shows in at least ~1/(3k) of its incidents
    w = [0.5 + rng.random() for _ in symptoms]
    return dict(zip(symptoms, w))


def make_world(kind: str, rng: random.Random) -> World:
    """A random world of this kind: cluster, bugs, triggers (no runs yet)."""
    n_hosts = 4 if kind == "shared_hosts" else 16
    hosts = tuple(f"node-{i:02d}" for i in range(n_hosts))
    versions = ["v1", "v2", "v3", "v4"]
    seeds = [str(s) for s in range(1, 9)]
    base = 1.0 / (GPUS_PER_HOST * 4 * STEPS)  # about one failure per active run
    pool = list(SYMPTOMS)
    rng.shuffle(pool)
    bugs: list[Bug] = []

    def trig(kinds: list[str]) -> Trigger:
        k = rng.choice(kinds)
        if k == "version":
            return Trigger("version", frozenset([rng.choice(versions)]))
        if k == "seeds":
            return Trigger("seeds", frozenset(rng.sample(seeds, 2)))
        if k == "host":
            return Trigger("host", frozenset([rng.choice(hosts)]))
        return Trigger("late", frozenset(), from_step=rng.choice([500, 700]))

    if kind == "one_bug":
        k = rng.randint(2, 5)
        bugs.append(Bug("bug0", trig(["version", "seeds", "late"]), _mix(rng, pool[:k]),
                        base * rng.uniform(0.8, 2.0), mitigated_by="fix-a"))
    elif kind in ("independent", "shared_hosts"):
        k = rng.randint(2, 5) if kind == "independent" else rng.randint(2, 3)
        used: set[tuple] = set()
        kinds = ["version", "seeds", "host", "late"] if kind == "independent" else \
            ["version", "seeds", "late"]
        for i in range(k):
            while True:
                t = trig(kinds)
                key = (t.kind, t.values, t.from_step)
                clash = any(t.kind == u[0] and (t.values & u[1] or t.kind == "late")
                            for u in used)
                if not clash:
                    used.add(key)
                    break
            bugs.append(Bug(f"bug{i}", t, {pool[i]: 1.0}, base * rng.uniform(0.8, 2.0),
                            mitigated_by="fix-a" if i == 0 else None))
    elif kind == "host_plus_sw":
        bad = rng.choice(hosts)
        hw = rng.choice(["xid_79", "ecc_error", "illegal_access"])
        sw = [s for s in pool if s not in (hw,)][:2]
        bugs.append(Bug("host", Trigger("host", frozenset([bad])), {hw: 1.0},
                        base * rng.uniform(1.5, 3.0)))
        bugs.append(Bug("software", trig(["version", "seeds"]), _mix(rng, sw),
                        base * rng.uniform(0.8, 2.0), mitigated_by="fix-a"))
    elif kind == "shared_sig":
        new = versions[-1]
        bugs.append(Bug("kernel", Trigger("version", frozenset([new])),
                        _mix(rng, ["nan_loss", "illegal_access"]), base * rng.uniform(0.8, 2.0),
                        mitigated_by="fix-a"))
        bugs.append(Bug("data", Trigger("seeds", frozenset(rng.sample(seeds, 3))),
                        {"nan_loss": 1.0}, base * rng.uniform(0.8, 2.0),
                        also=Trigger("version", frozenset(versions[:-1]))))
    elif kind == "mitigated":
        k = rng.randint(2, 4)
        bugs.append(Bug("reduction", Trigger("always"), _mix(rng, pool[:k]),
                        base * rng.uniform(0.8, 2.0), mitigated_by="fix-a"))
        bugs.append(Bug("data", trig(["seeds", "version", "late"]), {pool[k]: 1.0},
                        base * rng.uniform(0.8, 2.0)))
    else:
        raise ValueError(kind)
    return World(kind, bugs, hosts=hosts)


def simulate(world: World, n_incidents: int, rng: random.Random, max_runs: int = 2000) -> World:
    """Draw runs until `n_incidents` incidents (or `max_runs` runs)."""
    versions = ["v1", "v2", "v3", "v4"]
    seeds = [str(s) for s in range(1, 9)]
    i = 0
    while len(world.incidents) < n_incidents and i < max_runs:
        hosts = tuple(sorted(rng.sample(world.hosts, 4)))
        run = SimRun(f"run-{i:04d}", rng.choice(versions), rng.choice(seeds), hosts,
                     "fix-a" if rng.random() < 0.25 else "none")
        i += 1
        gpus = GPUS_PER_HOST * len(hosts)
        first: tuple[float, Bug] | None = None
        for bug in world.bugs:
            if not bug.trigger.active(run) or (bug.also and not bug.also.active(run)):
                continue
            if bug.mitigated_by and run.mitigation == bug.mitigated_by:
                continue
            rate = bug.rate * gpus
            if bug.trigger.kind == "host":
                rate = bug.rate * GPUS_PER_HOST * 4  # the bad host alone carries the rate
            t = bug.trigger.from_step + rng.expovariate(rate)
            if t < STEPS and (first is None or t < first[0]):
                first = (t, bug)
        if first is not None:
            t, bug = first
            symptoms, weights = zip(*sorted(bug.mix.items()))
            symptom = rng.choices(symptoms, weights)[0]
            if bug.trigger.kind == "host":
                host = sorted(bug.trigger.values & set(hosts))[0]
            else:
                host = rng.choice(hosts)
            rank = hosts.index(host) * GPUS_PER_HOST + rng.randrange(GPUS_PER_HOST)
            run.failure = (bug.name, symptom, host, rank, int(t))
            run.steps = int(t)
        world.runs.append(run)
    return world


# -- real log files ----------------------------------------------------------------------------
# The error lines follow the wording of the real messages (NCCL watchdog, CUDA runtime errors,
# Megatron's NaN check, the NVIDIA kernel driver's Xid report, torch's DataLoader); none of them
# can be produced on this CPU-only machine, so they are written from those formats here.
_ERROR_LINES = {
    "nan_loss": ["RuntimeError: Rank {rank}, node {host}, device {local}, iteration {step}: "
                 "Unexpected result nan (message='found NaN in local grad norm in backward pass "
                 "before data-parallel communication collective')"],
    "nccl_timeout": ["[E{stamp} ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog caught collective "
                     "operation timeout: WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, NumelIn=1048576, "
                     "NumelOut=1048576, Timeout(ms)=600000) ran for 600043 milliseconds before "
                     "timing out."],
    "illegal_access": ["RuntimeError: CUDA error: an illegal memory access was encountered"],
    "device_assert": ["RuntimeError: CUDA error: device-side assert triggered"],
    "xid_79": ["NVRM: Xid (PCI:0000:{bus}:00): 79, pid={pid}, GPU has fallen off the bus.",
               "RuntimeError: CUDA error: unspecified launch failure"],
    "ecc_error": ["RuntimeError: CUDA error: uncorrectable ECC error encountered"],
    "dataloader_killed": ["RuntimeError: DataLoader worker (pid {pid}) is killed by signal: Killed."],
}


def write_run(run: SimRun, folder: Path) -> dict[str, str]:
    """Write one simulated run as a console log plus triage-run.yaml; return its labels.

    One interleaved console (`[rankN]: ` prefixes, as torch prints them) with a step line every
    100 steps and at the last step on every rank, and the failure's error lines on the failing
    rank. The rank -> host map goes into triage-run.yaml, as a launcher would record it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    world = GPUS_PER_HOST * len(run.hosts)
    last = run.failure[4] if run.failure else run.steps
    # torchrun-like launch line: it names the run, so two clean runs never have equal logs
    lines = [f"[rank0]: launching run {run.name}: world size {world}, hosts "
             f"{','.join(run.hosts)}, version {run.version}, seed {run.seed}"]
    marks = sorted(set(range(0, last + 1, 100)) | {last})
    for step in marks:
        for rank in range(world):
            lines.append(f"[rank{rank}]: step {step} | loss {2.5 - step / 1000:.4f} | lr 3.0e-04")
    if run.failure:
        _bug, symptom, host, rank, step = run.failure
        vals = {"rank": rank, "host": host, "local": rank % GPUS_PER_HOST, "step": step,
                "seq": 7 * step + 3, "bus": f"{0x10 * (1 + rank % GPUS_PER_HOST):02x}",
                "pid": 4000 + rank, "stamp": "1123 02:07:08.408271257"}
        for text in _ERROR_LINES[symptom]:
            lines.append(f"[rank{rank}]: " + text.format(**vals))
    (folder / "console.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hosts = {r: run.hosts[r // GPUS_PER_HOST] for r in range(world)}
    meta = ["world_size: %d" % world, "hosts:"] + [f"  {r}: {h}" for r, h in hosts.items()]
    (folder / "triage-run.yaml").write_text("\n".join(meta) + "\n", encoding="utf-8")
    return {"version": run.version, "seed": run.seed, "mitigation": run.mitigation}
