"""The case records: what the case store hands to analyses (rates, suspects, hypotheses, reports).

These are frozen dataclasses built by `triage.case.queries` from the SQLite case; analyses never
read SQL themselves (only the case store writes or reads SQL). They mirror the tables of
m001_core.sql, joined into the shape an analysis wants:

- `Run`: one launch attempt with its metadata and exposure; failed or not (clean runs are evidence).
- `RankInfo`: one rank of one run: its host and how many steps it completed (its exposure).
- `Occurrence`: one failure (one signature on one rank) in one run, with file:line of the line
  that states it, verbatim.
- `Incident`: one failed run: its root-cause occurrence and the symptoms it explains.
- `Signature`: one failure kind across the case, stable across runs ("sig1:...").

Invariants
- `Run.gpu_steps == sum(r.steps for r in Run.ranks)` when ranks are known, else
  `world_size * steps_completed` (the run-level fallback); never negative.
- `Run.labels` holds every label (from logs, triage-run.yaml and --label, later ones winning);
  `seed` and `version` are also copied out as fields because analyses condition on them.
- An `Incident` exists exactly for the runs with `failed == True`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from triage.records import Frame


@dataclass(frozen=True)
class RankInfo:
    rank: int
    host: str | None
    last_step: int | None
    exit_code: int | None
    steps: int  # exposure of this rank: steps completed

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "host": self.host, "last_step": self.last_step,
                "exit_code": self.exit_code, "steps": self.steps}


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    content_hash: str
    ingested_at: str
    labels: Mapping[str, str]
    world_size: int | None
    seed: str | None
    version: str | None
    steps_completed: int | None
    gpu_steps: int
    seconds: float | None
    failed: bool
    ranks: tuple[RankInfo, ...] = ()
    started: str | None = None
    ended: str | None = None

    @property
    def hosts(self) -> dict[int, str]:
        """rank -> host, for the ranks whose host is known."""
        return {r.rank: r.host for r in self.ranks if r.host is not None}

    @property
    def host_steps(self) -> dict[str, int]:
        """host -> GPU-steps completed on that host in this run (exposure per host)."""
        out: dict[str, int] = {}
        for r in self.ranks:
            if r.host is not None:
                out[r.host] = out.get(r.host, 0) + r.steps
        return out

    @property
    def gpu_hours(self) -> float | None:
        if self.seconds is None or not self.world_size:
            return None
        return self.world_size * self.seconds / 3600.0

    def to_json(self, *, with_ranks: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "name": self.name, "content_hash": self.content_hash,
            "ingested_at": self.ingested_at, "labels": dict(sorted(self.labels.items())),
            "world_size": self.world_size, "seed": self.seed, "version": self.version,
            "steps_completed": self.steps_completed, "gpu_steps": self.gpu_steps,
            "seconds": self.seconds, "started": self.started, "ended": self.ended,
            "failed": self.failed,
            "hosts": {str(k): v for k, v in sorted(self.hosts.items())},
        }
        if with_ranks:
            out["ranks"] = [r.to_json() for r in self.ranks]
        return out


@dataclass(frozen=True)
class Occurrence:
    id: int
    run_id: int
    run: str  # run name
    signature: str
    family: str
    role: str  # "root" | "symptom" | "independent"
    rank: int | None
    host: str | None
    step: int | None
    time: str | None
    message: str
    path: str
    line: int
    why: str
    playbook: str | None
    frames: tuple[Frame, ...] = ()  # the traceback that ended in this line, innermost last

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "signature": self.signature, "family": self.family,
                "role": self.role, "rank": self.rank, "host": self.host, "step": self.step,
                "time": self.time, "message": self.message,
                "source": {"path": self.path, "line": self.line}, "why": self.why,
                "playbook": self.playbook,
                "frames": [{"file": f.file, "function": f.function, "line": f.line}
                           for f in self.frames]}


def frames_to_json(frames) -> str | None:
    """An occurrence's frames as the case stores them (`occurrences.frames`, m004): a JSON
    array of [file, function, line]; NULL for none."""
    return json.dumps([[f.file, f.function, f.line] for f in frames]) if frames else None


def frames_from_json(text: str | None) -> tuple[Frame, ...]:
    """The `frames` column read back; anything else (NULL, or a value this version cannot
    read) is no frames rather than an error."""
    if not text:
        return ()
    try:
        rows = json.loads(text)
        return tuple(Frame(str(f), str(fn), ln if isinstance(ln, int) else None)
                     for f, fn, ln in rows)
    except (ValueError, TypeError):
        return ()


@dataclass(frozen=True)
class Incident:
    run_id: int
    run: str
    root: Occurrence
    symptoms: tuple[Occurrence, ...] = ()
    independent: tuple[Occurrence, ...] = ()

    @property
    def signatures(self) -> tuple[str, ...]:
        """Distinct signatures of this incident, the root cause's first."""
        seen: dict[str, None] = {self.root.signature: None}
        for o in self.symptoms + self.independent:
            seen.setdefault(o.signature, None)
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "root": self.root.to_json(),
                "symptoms": [o.to_json() for o in self.symptoms],
                "independent": [o.to_json() for o in self.independent]}


@dataclass(frozen=True)
class Signature:
    id: str
    family: str
    template: str
    playbook: str | None
    occurrences: int = 0  # rows (one per rank per run)
    runs: int = 0  # distinct runs it appears in, any role
    root_runs: int = 0  # runs in which it is the root cause
    first_run: str | None = None
    last_run: str | None = None
    ranks: tuple[int, ...] = field(default=())
    hosts: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "family": self.family, "template": self.template,
                "playbook": self.playbook, "occurrences": self.occurrences, "runs": self.runs,
                "root_runs": self.root_runs, "first_run": self.first_run,
                "last_run": self.last_run, "ranks": list(self.ranks), "hosts": list(self.hosts)}
