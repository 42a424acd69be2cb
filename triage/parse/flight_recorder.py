"""Flight-recorder dumps: read them safely, turn their entries into collective observations.

PyTorch's flight recorder (`TORCH_FR_BUFFER_SIZE`; older names `TORCH_NCCL_TRACE_BUFFER_SIZE`)
keeps a ring buffer of the last N collectives per process and writes it, per rank, to
`<TORCH_FR_DUMP_TEMP_FILE><rank>` (older: `TORCH_NCCL_DEBUG_INFO_TEMP_FILE`) as a pickle, or as
JSON from `_dump_fr_trace_json()`. A dump is a dict: `version`, `pg_config`, `pg_status`,
`entries` (one dict per collective: `record_id`, `pg_id`, `process_group` = (name, desc),
`collective_seq_id`, `p2p_seq_id`, `is_p2p`, `profiling_name` such as `gloo:all_reduce`,
`input_sizes`, `output_sizes`, `state`, `retired`, `time_created_ns`, `timeout_ms`, `frames`).

Safety (the invariant of this module): a dump comes from another machine, so it is never
unpickled with `pickle.load`. `_PlainUnpickler` refuses every global lookup (`find_class`),
every persistent id and every extension code, so the only objects it can build are the ones
the pickle opcodes build by themselves: dict, list, tuple, str, bytes, int, float, bool, None
(and set/frozenset, which are plain too). Protocol 2 spells bytes and sets as calls to
`_codecs.encode`/`bytes`/`set`: those names resolve to our own checking constructors (plain
argument in, plain value out), never to the real globals. A pickle that names any class or function (a
`__reduce__` calling `os.system`, say) is refused before anything is called. The result is
checked once more by `_check_plain`, and then read as data, never evaluated.

Quirks tolerated (measured on torch 2.13, CPU, gloo):
- the default process group is keyed `''` in `pg_config` but named `'0'` in entries; gloo
  `pg_config` lists no ranks. We never join entries to `pg_config`: the process group of an
  entry is its own name, or its `pg_id` when the name is empty (as under
  TORCH_DISTRIBUTED_DEBUG=DETAIL, where every group is named `''`).
- gloo entries always say `state: scheduled` and are `retired` even when the collective
  failed, so for gloo "the last entry of a rank" is all a dump says about where it stopped.
- the ring buffer wraps: a rank's window may start anywhere; analyses must treat a sequence
  number before a rank's first entry as unknown, not as missing.
- the rank of a dump is `dump["rank"]` when present, else the trailing digits of the file name
  (torch writes `<prefix><rank>`); a dump with neither is refused.
Point-to-point entries (`is_p2p`) are kept in the dump but not turned into observations: they
are pairwise, so majority reasoning does not apply to them.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping, Sequence

from triage.errors import InputError
from triage.records import SourceRef

# The largest JSON dump we read (a 20,000-entry buffer with frames is a few tens of MB);
# pickles are streamed.
MAX_DUMP_BYTES = 512 * 1024 * 1024
_PLAIN = (dict, list, tuple, str, bytes, int, float, bool, type(None), set, frozenset)
_RANK_IN_NAME = re.compile(r"(\d+)(?:\.(?:pkl|pickle|json))?$")


class UnsafeDumpError(InputError):
    """A dump that would need code (a class or function) to be unpickled. Nothing was run."""


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    """What protocol 2 pickles call (`_codecs.encode(str, 'latin1')`) to rebuild bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeDumpError("refused to load: unexpected bytes encoding in the dump")
    return text.encode("latin1")


def _plain_ctor(kind: type) -> Any:
    def build(arg: Any = ()) -> Any:
        if not isinstance(arg, (list, tuple, str, bytes)):
            raise UnsafeDumpError(f"refused to load: {kind.__name__} of a {type(arg).__name__}")
        return kind(arg)
    return build


# The only names a plain-data pickle may look up (protocol 2 spells bytes and sets this way),
# each mapped to our own checking constructor, never to the real global.
_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _plain_ctor(bytes), ("builtins", "bytes"): _plain_ctor(bytes),
    ("__builtin__", "set"): _plain_ctor(set), ("builtins", "set"): _plain_ctor(set),
    ("__builtin__", "frozenset"): _plain_ctor(frozenset),
    ("builtins", "frozenset"): _plain_ctor(frozenset),
}


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle opcodes build by themselves; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle protocol
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeDumpError(
            f"refused to load: the dump asks for {module}.{name}, and a flight-recorder dump "
            "holds only plain data",
            hint="this file is not a flight-recorder dump, or it was crafted to run code; "
            "it was not executed",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeDumpError("refused to load: the dump uses persistent ids",
                              hint="a flight-recorder dump holds only plain data")


@dataclass(frozen=True)
class FREntry:
    """One collective as one rank recorded it."""

    record_id: int | None
    pg: str  # process-group key: entry's name, or its pg_id when the name is empty
    pg_desc: str | None
    seq: int | None  # collective_seq_id (None for p2p)
    p2p_seq: int | None
    is_p2p: bool
    backend: str | None  # "gloo", "nccl", ... from profiling_name
    op: str | None  # profiling_name without the backend prefix: "all_reduce", "broadcast"
    input_sizes: tuple[tuple[int, ...], ...]
    output_sizes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    state: str | None
    retired: bool | None
    time_created_ns: int | None
    time_completed_ns: int | None
    timeout_ms: int | None
    where: str | None  # first frame outside torch: "train.py:42 (step)"

    @property
    def shape(self) -> str:
        return shape_text(self.input_sizes)


@dataclass(frozen=True)
class FlightRecorderDump:
    path: str
    rank: int
    version: str | None
    host: str | None
    entries: tuple[FREntry, ...]
    pg_status: Mapping[str, Mapping[str, Any]]


def shape_text(sizes: Sequence[Sequence[int]]) -> str:
    """`[[16], [2, 3]]` -> `"[16] [2, 3]"`; the text both dumps and log lines compare by."""
    if not sizes:
        return "[]"
    return " ".join("[" + ", ".join(str(int(d)) for d in s) + "]" for s in sizes)


def _check_plain(obj: Any, path: str, depth: int = 0) -> None:
    if depth > 64:
        raise InputError("dump nests deeper than 64 levels", where=path,
                         hint="not a flight-recorder dump")
    if not isinstance(obj, _PLAIN):
        raise UnsafeDumpError(f"refused: dump holds a {type(obj).__name__}", where=path)
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_plain(v, path, depth + 1)


def _unpickle_plain(stream: BinaryIO, where: str) -> Any:
    try:
        return _PlainUnpickler(stream).load()
    except UnsafeDumpError as exc:
        exc.where = where
        raise
    except Exception as exc:  # truncated or corrupt pickle: any unpickling error
        raise InputError(f"damaged flight-recorder dump ({type(exc).__name__}: {exc})",
                         where=where, hint="the dump may have been cut off while written") \
            from None


def _validated(obj: Any, where: str) -> dict[str, Any]:
    _check_plain(obj, where)
    if not isinstance(obj, dict) or not isinstance(obj.get("entries", []), list):
        raise InputError("not a flight-recorder dump: no 'entries' list", where=where,
                         hint="point at the files written to TORCH_FR_DUMP_TEMP_FILE<rank>")
    return obj


def _decode_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a valid JSON flight-recorder dump: {exc}", where=where,
                         hint="expected the output of _dump_fr_trace_json()") from None


def decode_dump_bytes(data: bytes, where: str) -> dict[str, Any]:
    """Bytes of a pickle or JSON dump -> plain dict. Executes nothing from the data."""
    if data.lstrip()[:1] == b"{":
        return _validated(_decode_json(data, where), where)
    if data[:1] == b"\x80":
        return _validated(_unpickle_plain(io.BytesIO(data), where), where)
    raise InputError("not a flight-recorder dump (neither a pickle nor JSON)", where=where,
                     hint="point at the files written to TORCH_FR_DUMP_TEMP_FILE<rank>")


def looks_like_dump(head: bytes) -> bool:
    """A cheap test on a file's first bytes: a pickle, or JSON that names `entries`."""
    if head[:1] == b"\x80":
        return True
    stripped = head.lstrip()
    return stripped[:1] == b"{" and b'"entries"' in head


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def _sizes(v: Any) -> tuple[tuple[int, ...], ...]:
    if not isinstance(v, (list, tuple)):
        return ()
    out = []
    for s in v:
        if isinstance(s, (list, tuple)) and all(isinstance(d, int) for d in s):
            out.append(tuple(int(d) for d in s))
    return tuple(out)


def _where(frames: Any) -> str | None:
    if not isinstance(frames, (list, tuple)):
        return None
    for fr in frames:
        if not isinstance(fr, dict):
            continue
        fname = str(fr.get("filename", ""))
        if "/torch/" in fname or "/multiprocessing/" in fname or fname.startswith("<"):
            continue
        return f"{Path(fname).name}:{fr.get('line')} ({fr.get('name')})"
    return None


def _entry(raw: Any) -> FREntry | None:
    if not isinstance(raw, dict):
        return None
    pg_name, pg_desc = None, None
    pgv = raw.get("process_group")
    if isinstance(pgv, (list, tuple)) and pgv:
        pg_name = str(pgv[0])
        pg_desc = str(pgv[1]) if len(pgv) > 1 else None
    elif isinstance(pgv, str):
        pg_name = pgv
    pg_id = _int(raw.get("pg_id"))
    pg = pg_name if pg_name else (str(pg_id) if pg_id is not None else "?")
    prof = raw.get("profiling_name")
    backend, op = None, None
    if isinstance(prof, str) and prof:
        backend, sep, rest = prof.partition(":")
        if not sep:
            backend, rest = None, prof
        op = rest or None
    is_p2p = bool(raw.get("is_p2p", False))
    seq = _int(raw.get("collective_seq_id"))
    completed = _int(raw.get("time_discovered_completed_ns")) or None
    dtypes = raw.get("input_dtypes")
    return FREntry(
        record_id=_int(raw.get("record_id")),
        pg=pg,
        pg_desc=pg_desc,
        seq=None if is_p2p else seq,
        p2p_seq=_int(raw.get("p2p_seq_id")) if is_p2p else None,
        is_p2p=is_p2p,
        backend=backend,
        op=op,
        input_sizes=_sizes(raw.get("input_sizes")),
        output_sizes=_sizes(raw.get("output_sizes")),
        dtypes=tuple(str(d) for d in dtypes) if isinstance(dtypes, (list, tuple)) else (),
        state=str(raw["state"]) if raw.get("state") is not None else None,
        retired=raw.get("retired") if isinstance(raw.get("retired"), bool) else None,
        time_created_ns=_int(raw.get("time_created_ns")),
        time_completed_ns=completed,
        timeout_ms=_int(raw.get("timeout_ms")),
        where=_where(raw.get("frames")),
    )


def rank_from_name(path: str | Path) -> int | None:
    m = _RANK_IN_NAME.search(Path(path).name)
    return int(m.group(1)) if m else None


def dump_from_obj(obj: Mapping[str, Any], path: str, rank: int | None = None) -> FlightRecorderDump:
    """A decoded dump dict -> `FlightRecorderDump` (rank from the dict, the argument or the name)."""
    r = _int(obj.get("rank"))
    if r is None:
        r = rank if rank is not None else rank_from_name(path)
    if r is None:
        raise InputError("cannot tell which rank wrote this dump", where=path,
                         hint="keep torch's file names (<prefix><rank>), e.g. trace_3")
    entries = tuple(e for e in (_entry(x) for x in obj.get("entries", [])) if e is not None)
    entries = tuple(sorted(entries, key=lambda e: (e.record_id is None, e.record_id or 0)))
    status = obj.get("pg_status")
    host = obj.get("hostname", obj.get("host"))
    return FlightRecorderDump(
        path=path,
        rank=r,
        version=str(obj["version"]) if obj.get("version") is not None else None,
        host=str(host) if isinstance(host, str) and host else None,
        entries=entries,
        pg_status={str(k): dict(v) for k, v in status.items() if isinstance(v, dict)}
        if isinstance(status, dict) else {},
    )


def load_dump(path: str | Path, *, rank: int | None = None) -> FlightRecorderDump:
    """Read one dump (pickle or JSON) without executing anything from it."""
    p = Path(path)
    where = str(p)
    try:
        with open(p, "rb") as fh:
            first = fh.read(1)
            if first == b"\x80":
                # streamed: a pickle that is not plain data (a checkpoint, say) is refused at
                # its first global, without reading the rest of a large file
                fh.seek(0)
                obj = _unpickle_plain(fh, where)
            else:
                size = p.stat().st_size
                if size > MAX_DUMP_BYTES:
                    raise InputError(f"file is {size} bytes, more than the {MAX_DUMP_BYTES} "
                                     "a JSON dump may have", where=where,
                                     hint="is this really a flight-recorder dump?")
                data = first + fh.read()
                if data.lstrip()[:1] != b"{":
                    raise InputError("not a flight-recorder dump (neither a pickle nor JSON)",
                                     where=where, hint="point at the files written to "
                                     "TORCH_FR_DUMP_TEMP_FILE<rank>")
                obj = _decode_json(data, where)
    except OSError as exc:
        raise InputError(f"cannot read dump: {exc.strerror or exc}", where=where,
                         hint="check the path and its permissions") from None
    return dump_from_obj(_validated(obj, where), where, rank)


def _obs_state(e: FREntry, is_last: bool) -> str:
    """A dump entry's state in the vocabulary of `CollectiveObs`.

    NCCL entries say scheduled/started/completed truthfully. Gloo entries always say
    `scheduled`, so an entry that some later entry of the same group follows must have
    finished ("completed"), and only the last one stays "scheduled" (not known to have ended).
    """
    if e.time_completed_ns or e.state == "completed":
        return "completed"
    if e.backend == "gloo" and not is_last:
        return "completed"
    return e.state or "scheduled"


def observations_from_dumps(dumps: Iterable[FlightRecorderDump], hosts: Mapping[int, str] | None = None):
    """Every collective entry of every dump as a `CollectiveObs`, sorted by (rank, pg, seq).

    The order of `dumps` does not matter: the result is sorted.
    """
    from triage.analyze.hang import CollectiveObs  # analyze depends on parse, not vice versa

    out: list[CollectiveObs] = []
    for d in dumps:
        host = d.host or (hosts or {}).get(d.rank)
        last_seq: dict[str, int] = {}
        for e in d.entries:
            if e.seq is not None:
                last_seq[e.pg] = max(last_seq.get(e.pg, e.seq), e.seq)
        for e in d.entries:
            if e.is_p2p or e.seq is None:
                continue
            out.append(CollectiveObs(
                rank=d.rank, pg=e.pg, seq=e.seq, op=e.op, shape=e.shape,
                state=_obs_state(e, e.seq == last_seq.get(e.pg)),
                source=SourceRef(d.path, 1), host=host, where=e.where,
                time_ns=e.time_created_ns,
            ))
    out.sort(key=lambda o: (o.rank, o.pg or "", o.seq if o.seq is not None else -1))
    return out
