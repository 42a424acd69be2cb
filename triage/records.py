"""The nouns of triage: frozen records handed from one pipeline stage to the next.

Data flows one way: ingest -> parse -> classify -> (case store) -> analyze -> cli/report.
Every stage takes and returns these records; none of them knows about the terminal.

Invariants
- Records are frozen. A stage that refines a record builds a new one (`dataclasses.replace`).
- `to_json()` emits exactly the public contract of ../shared/DESIGN.md (`triage.scan/1`):
  no more keys, no fewer. Extra in-process detail (`fields`, `frames`) stays out of it.
- `rank` is the global rank wherever the text allows; `None` when it cannot be known.
- `source.line` is 1-based and always names a line that exists in that input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

SCAN_SCHEMA = "triage.scan/1"


class LazyTuple(Sequence):
    """A tuple built on first use. A scan of 100,000 ranks has 100,000 occurrences and rank
    states that `triage scan --json` never prints: building them only when a reader asks (the
    case store, the report) saves the scan a third of a second and ~40 MB at its peak. Compares
    equal to the tuple it stands for."""

    __slots__ = ("_build", "_items")

    def __init__(self, build: Callable[[], Iterable[Any]]):
        self._build: Callable[[], Iterable[Any]] | None = build
        self._items: tuple | None = None

    def _get(self) -> tuple:
        if self._items is None:
            assert self._build is not None
            self._items = tuple(self._build())
            self._build = None  # what it closed over can go
        return self._items

    def __getitem__(self, i):  # type: ignore[override]
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyTuple):
            other = other._get()
        return self._get() == other

    def __hash__(self) -> int:
        return hash(self._get())

    def __bool__(self) -> bool:
        return bool(self._get())

    def __repr__(self) -> str:
        return repr(self._get())

    def __reduce__(self):
        return (tuple, (self._get(),))  # pickles (Dask, multiprocessing) as the plain tuple


class Family(str, Enum):
    """The failure-family taxonomy (public contract). Exactly one per classified failure."""

    COLLECTIVE_TIMEOUT = "collective_timeout"
    COLLECTIVE_MISMATCH = "collective_mismatch"
    COMM_ERROR = "comm_error"
    RENDEZVOUS = "rendezvous"
    CUDA_OOM = "cuda_oom"
    HOST_OOM = "host_oom"
    CUDA_ILLEGAL_ACCESS = "cuda_illegal_access"
    CUDA_DEVICE_ASSERT = "cuda_device_assert"
    CUDA_OTHER = "cuda_other"
    GPU_HARDWARE = "gpu_hardware"
    NONFINITE = "nonfinite"
    LOSS_SCALE = "loss_scale"
    DATALOADER = "dataloader"
    SIGNAL = "signal"
    CHECKPOINT_IO = "checkpoint_io"
    PYTHON_EXCEPTION = "python_exception"
    HANG = "hang"
    OTHER = "other"


FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)


class Role(str, Enum):
    """The role of one failure within one failed attempt."""

    ROOT = "root"  # the first failure: what to fix
    SYMPTOM = "symptom"  # a consequence of the root cause (another rank's timeout, reset peer)
    INDEPENDENT = "independent"  # a failure of its own, not explained by the root cause


@dataclass(frozen=True)
class SourceRef:
    path: str
    line: int  # 1-based

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line}


@dataclass(frozen=True)
class InputInfo:
    path: str
    bytes: int
    lines: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "lines": self.lines}


@dataclass(frozen=True)
class Frame:
    """One stack frame of a Python traceback or a C++ 'frame #N' trace."""

    file: str
    function: str
    line: int | None = None


@dataclass(frozen=True)
class Failure:
    """One classified failure occurrence: the first line of one signature on one rank."""

    family: str
    rank: int | None
    host: str | None
    step: int | None
    time: str | None  # ISO 8601 when the log has a timestamp
    message: str  # the log line that states the error, verbatim (prefix included)
    source: SourceRef
    role: str  # Role value
    signature: str  # "sig1:..."
    playbook: str | None  # rule id
    why: str
    # Not part of the JSON contract: named groups the rule extracted (seq, op, pg, timeout,
    # bytes, xid, exit_code, signal, ...), and the traceback frames (innermost last).
    fields: Mapping[str, str] = field(default_factory=dict)
    frames: tuple[Frame, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "rank": self.rank,
            "host": self.host,
            "step": self.step,
            "time": self.time,
            "message": self.message,
            "source": self.source.to_json(),
            "role": self.role,
            "signature": self.signature,
            "playbook": self.playbook,
            "why": self.why,
        }


@dataclass(frozen=True)
class SignatureSummary:
    """One signature across a scan: how often, where, first seen at which step."""

    id: str
    family: str
    template: str
    count: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    first_step: int | None
    playbook: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "template": self.template,
            "count": self.count,
            "ranks": list(self.ranks),
            "hosts": list(self.hosts),
            "first_step": self.first_step,
            "playbook": self.playbook,
        }


@dataclass(frozen=True)
class Occurrence:
    """The first occurrence of one signature on one rank (or in one rank-less input).

    Scans aggregate: a signature seen on 100,000 ranks is one `SignatureSummary` plus one
    compact `Occurrence` per rank, never 100,000 `Failure` objects.
    """

    signature: str
    rank: int | None
    host: str | None
    step: int | None
    time: str | None
    source: SourceRef
    message: str
    count: int = 1  # lines of this signature on this rank
    frames: tuple[Frame, ...] = ()  # the traceback that ended in the line, innermost last


@dataclass(frozen=True)
class RankState:
    """What a scan learnt about one rank: where it lives and how far it got (exposure)."""

    rank: int
    host: str | None = None
    last_step: int | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class ScanStats:
    lines: int
    bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "bytes": self.bytes, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ScanResult:
    inputs: tuple[InputInfo, ...]
    root_cause: Failure | None
    failures: tuple[Failure, ...]  # first-occurrence order; includes the root cause
    signatures: tuple[SignatureSummary, ...]
    stats: ScanStats
    ranks: tuple[RankState, ...] = ()  # every rank seen, sorted by rank
    world_size: int | None = None
    max_step: int | None = None  # the highest step any rank reported
    warnings: tuple[str, ...] = ()  # damaged or skipped inputs, each naming its path
    hang: Any = None  # triage.analyze.hang verdict when the failure is a hang/timeout
    occurrences: tuple[Occurrence, ...] = ()  # first occurrence per (signature, rank)
    start_time: str | None = None  # the earliest timestamp the inputs show (ISO 8601)
    end_time: str | None = None  # the latest one: with start_time, the run's wall time

    @property
    def seconds_spanned(self) -> float | None:
        """Wall time from the first to the last timestamp in the logs, when both exist."""
        from datetime import datetime

        if not (self.start_time and self.end_time):
            return None
        try:
            a = datetime.fromisoformat(self.start_time.replace("Z", "+00:00"))
            b = datetime.fromisoformat(self.end_time.replace("Z", "+00:00"))
            if (a.tzinfo is None) != (b.tzinfo is None):
                a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
            return max(0.0, (b - a).total_seconds())
        except ValueError:
            return None

    def to_json(self, rows: bool = False) -> dict[str, Any]:
        """The triage.scan/1 object. With `rows`, "inputs" is a `triage.jsonout.Rows` (the
        same records, encoded by `write_json` without a dict per input)."""
        if rows:
            from triage.jsonout import Rows

            inputs: Any = Rows(("path", "bytes", "lines"),
                               [(i.path, i.bytes, i.lines) for i in self.inputs])
        else:
            inputs = [i.to_json() for i in self.inputs]
        return {
            "schema": SCAN_SCHEMA,
            "inputs": inputs,
            "root_cause": self.root_cause.to_json() if self.root_cause else None,
            "failures": [f.to_json() for f in self.failures],
            "signatures": [s.to_json() for s in self.signatures],
            "stats": self.stats.to_json(),
        }
