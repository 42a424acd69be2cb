"""Structural parsing of collective descriptors in log lines.

One log line (its `[rankN]:`-style prefix already stripped) -> what that rank said about one
collective, as `triage.analyze.hang.CollectiveObs`. These are structural parsers of formats
that torch and gloo print, like the prefix and timestamp parsers; failure *classification*
stays in the playbooks. Recognised (wording checked against real reports):

- NCCL watchdog: `[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=808,
  OpType=ALLREDUCE, NumelIn=9801523, NumelOut=9801523, Timeout(ms)=600000) ran for ...`
  (older torch prints no Numel fields) -> state `timed_out`, seq, op, shape `numel=IN->OUT`.
- NCCL watchdog summaries carrying the process group: `[PG ID 0 PG GUID 0(default_pg) Rank 1]
  Exception (either an error or timeout) detected by watchdog at work: 808, last enqueued NCCL
  work: 811, last completed NCCL work: 807.`, `[PG 1 Rank 0] Timeout at NCCL work: 7753, ...`,
  and `... failure detected by watchdog at work sequence id: N PG status: ...` -> `timed_out`.
- TORCH_DISTRIBUTED_DEBUG=DETAIL desync reports: `Detected mismatch between collectives on
  ranks. Rank 0 is running collective: CollectiveFingerPrint(SequenceNumber=3,
  OpType=ALLREDUCE, TensorShape=[16], ...), but Rank 1 is running collective: ...` -> one
  `mismatch` observation per rank named (the reporter's own first, see `observe_line_all`).
- gloo transport timeouts: `Timed out waiting 3000ms for recv operation to complete` (also
  `send`) -> `timed_out` with no seq and no op: gloo does not say which collective.
- gloo peer failures: `[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer ...`
  (also `reset by peer`) -> `failed`: this rank's collective died because a peer went away.
- py-spy dump frames inside torch.distributed: `    all_reduce (torch/distributed/
  distributed_c10d.py:2050)` -> `waiting` in that op.

Invariants: a parser never raises on any input text (property-tested); a line that does not
describe a collective gives None. Seq numbers of DETAIL reports count the wrapper's own way and
are not comparable to flight-recorder seq numbers, so they get their own process-group key
(`detail:<pg>`), never merged with dump entries. The global rank comes from the caller (the line
prefix or file); `[Rank N]` inside NCCL messages is the process-group-local rank and is used
only when the caller knows none.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from triage.records import SourceRef

if TYPE_CHECKING:  # pragma: no cover
    from triage.analyze.hang import CollectiveObs

_WATCHDOG = re.compile(
    r"(?:\[Rank (?P<lrank>\d+)\]\s*)?Watchdog caught collective operation timeout: "
    r"Work\w*\(SeqNum=(?P<seq>\d+),\s*OpType=(?P<op>[A-Za-z_]+)"
    r"(?:,\s*NumelIn=(?P<nin>-?\d+),\s*NumelOut=(?P<nout>-?\d+))?"
)
_PG_PREFIX = re.compile(
    r"\[PG (?:ID )?(?P<pg>\d+)(?: PG GUID \w+)?(?:\s*\(?(?P<desc>[\w:.-]*)\)?)? Rank (?P<lrank>\d+)\]"
)
_WD_SUMMARY = re.compile(
    r"(?:detected by watchdog at work|Timeout at NCCL work|detected by watchdog at work sequence id)"
    r":?\s*(?P<seq>-?\d+)"
)
_DETAIL = re.compile(
    r"Rank (?P<rank>\d+) is running collective: CollectiveFingerPrint\("
    r"(?:SequenceNumber=(?P<seq>\d+),\s*)?OpType=(?P<op>[A-Za-z_]+)"
    r"(?:,\s*TensorShape=(?P<shape>\[[^\]]*\](?:,\s*\[[^\]]*\])*))?"
)
_GLOO_TIMEOUT = re.compile(r"Timed out waiting (?P<ms>\d+)ms for (?P<dir>recv|send) operation")
_PEER_GONE = re.compile(r"Connection (?:closed|reset) by peer")
_PYSPY_FRAME = re.compile(
    r"^\s+(?P<fn>[A-Za-z_][\w.]*) \((?P<file>[^()]*distributed_c10d\.py):\d+\)\s*$"
)
_PYSPY_OPS = {
    "all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "broadcast", "barrier", "all_to_all", "all_to_all_single",
    "reduce", "gather", "scatter", "monitored_barrier", "all_gather_object",
    "broadcast_object_list", "send", "recv", "wait",
}

# Canonical op names: NCCL/DETAIL print ALLREDUCE, _ALLGATHER_BASE; dumps print all_reduce.
_OP_CANON = {
    "allreduce": "all_reduce", "allgather": "all_gather", "allgatherbase": "all_gather",
    "allgatherintotensor": "all_gather", "reducescatter": "reduce_scatter",
    "reducescatterbase": "reduce_scatter", "reducescattertensor": "reduce_scatter",
    "broadcast": "broadcast", "barrier": "barrier", "alltoall": "all_to_all",
    "alltoallbase": "all_to_all", "alltoallsingle": "all_to_all", "reduce": "reduce",
    "gather": "gather", "scatter": "scatter", "send": "send", "recv": "recv",
    "allreducecoalesced": "all_reduce_coalesced", "coalesced": "coalesced",
}


@functools.lru_cache(maxsize=1024)
def canonical_op(op: str | None) -> str | None:
    """`ALLREDUCE`, `nccl:all_reduce`, `_ALLGATHER_BASE` -> `all_reduce`, `all_gather`."""
    if not op:
        return None
    name = op.split(":", 1)[-1].strip()
    key = name.lower().replace("_", "")
    return _OP_CANON.get(key, name.lower())


def _detail_shape(text: str | None) -> str | None:
    if text is None:
        return None
    dims = re.findall(r"\[([^\]]*)\]", text)
    return " ".join("[" + ", ".join(d.strip() for d in dim.split(",") if d.strip()) + "]"
                    for dim in dims) or "[]"


def observe_line_all(text: str, *, rank: int | None, source: SourceRef | None,
                     host: str | None = None) -> list["CollectiveObs"]:
    """Every observation one line carries (a DETAIL report names two ranks)."""
    from triage.analyze.hang import CollectiveObs

    if len(text) > 100_000:
        text = text[:100_000]
    if "CollectiveFingerPrint" in text and "is running collective" in text:
        found = []
        for m in _DETAIL.finditer(text):
            seq = int(m.group("seq")) if m.group("seq") else None
            found.append(CollectiveObs(
                rank=int(m.group("rank")), pg="detail:0", seq=seq,
                op=canonical_op(m.group("op")), shape=_detail_shape(m.group("shape")),
                state="mismatch", source=source, host=host if int(m.group("rank")) == rank else None,
                reported_by=rank,
            ))
        # the reporter's own statement first, then what it says about the others
        found.sort(key=lambda o: (o.rank != rank,))
        return found
    if "Watchdog caught collective operation timeout" in text:
        m = _WATCHDOG.search(text)
        if m:
            r = rank if rank is not None else (int(m.group("lrank")) if m.group("lrank") else None)
            if r is None:
                return []
            shape = f"numel={m.group('nin')}->{m.group('nout')}" if m.group("nin") else None
            pgm = _PG_PREFIX.search(text)
            return [CollectiveObs(rank=r, pg=pgm.group("pg") if pgm else None,
                                  seq=int(m.group("seq")), op=canonical_op(m.group("op")),
                                  shape=shape, state="timed_out", source=source, host=host)]
    if "NCCL work" in text or "detected by watchdog at work" in text:
        pgm = _PG_PREFIX.search(text)
        m = _WD_SUMMARY.search(text)
        if m and pgm:
            r = rank if rank is not None else int(pgm.group("lrank"))
            return [CollectiveObs(rank=r, pg=pgm.group("pg"), seq=int(m.group("seq")), op=None,
                                  shape=None, state="timed_out", source=source, host=host)]
    if "Timed out waiting" in text:
        m = _GLOO_TIMEOUT.search(text)
        if m and rank is not None:
            return [CollectiveObs(rank=rank, pg=None, seq=None, op=None, shape=None,
                                  state="timed_out", source=source, host=host)]
    if "by peer" in text and ("pair.cc" in text or "gloo" in text.lower()):
        if rank is not None and _PEER_GONE.search(text):
            return [CollectiveObs(rank=rank, pg=None, seq=None, op=None, shape=None,
                                  state="failed", source=source, host=host)]
    if "distributed_c10d.py" in text:
        m = _PYSPY_FRAME.match(text)
        if m and rank is not None and m.group("fn") in _PYSPY_OPS:
            return [CollectiveObs(rank=rank, pg=None, seq=None, op=canonical_op(m.group("fn")),
                                  shape=None, state="waiting", source=source, host=host)]
    return []


_PYSPY_THREAD = re.compile(r'^Thread 0x[0-9A-Fa-f]+ \((?:active|idle)[^)]*\): "(?P<name>[^"]*)"')
_PYSPY_ANY_FRAME = re.compile(r"^\s+(?P<fn>\S+) \((?P<file>[^()]+):(?P<line>\d+)\)\s*$")


class PySpyTracker:
    """Follows a py-spy dump line by line and remembers where each rank's main thread is.

    `feed(text, rank)` for every (prefix-stripped) line; `where[rank]` is then the innermost
    frame of the first "MainThread" stack seen for that rank, e.g. `_next_batch
    (data/loader.py:88)`: what a rank that never reached a collective was doing.
    """

    def __init__(self) -> None:
        self.where: dict[int, str] = {}
        self._armed: set[int] = set()

    def feed(self, text: str, rank: int | None) -> None:
        if rank is None:
            return
        if text.startswith("Thread 0x"):
            m = _PYSPY_THREAD.match(text)
            if m and m.group("name") == "MainThread" and rank not in self.where:
                self._armed.add(rank)
            else:
                self._armed.discard(rank)
            return
        if rank in self._armed:
            m = _PYSPY_ANY_FRAME.match(text)
            if m:
                self.where[rank] = f"{m.group('fn')} ({m.group('file')}:{m.group('line')})"
            self._armed.discard(rank)


def observe_line(text: str, *, rank: int | None, source: SourceRef | None,
                 host: str | None = None) -> "CollectiveObs | None":
    """Structural parse of one (prefix-stripped) log line; None when it names no collective."""
    found = observe_line_all(text, rank=rank, source=source, host=host)
    return found[0] if found else None
