"""Scan one piece of input: a whole file, a stream, or a byte range of a large plain file.

A worker reads its piece in big chunks into one reused buffer, asks the engine for prefilter
hits, and turns only the hit lines into observations:

- steps are read lazily: backwards from a failure's line (the rank's own last step line, else
  any rank's) within the lookback window, and from the end of each input (every rank's last step:
  the exposure), never line by line, because in per-rank logs nearly every line is a step line;
- elastic exit records give rank, host and exit code;
- lines a playbook rule classifies become occurrences, aggregated by (signature, rank): the first
  one keeps its message, source line, time, step and traceback; later ones only count.

Determinism: everything a hit needs from earlier text (its traceback, a timestamp of an earlier
line of the same rank, the fields of an elastic block) is read from a fixed window of HISTORY bytes
before the hit line, taken from the file itself when the window reaches before the piece. So a
file split into pieces gives the same answers as one piece. What a piece cannot know (the last
step a rank printed before the window) is left to the merge, which uses the rank's last step in
its input.

Bounds: memory is the chunk buffer, the history window and the aggregated occurrences; a line
longer than LONG_LINE is cut to a WINDOW around the hit (the message says so with "…").
"""

from __future__ import annotations

import calendar
import gzip
import itertools
import os
import re

import re2
import sys
import time as _time
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, NamedTuple

from triage.classify.fastre import FastRegex
from triage.classify.signature import signature_id, template
from triage.ingest.discover import KIND_ERROR_JSON, KIND_GZ, KIND_LOG, KIND_STDIN, InputSpec
from triage.parse.elastic import parse_block, parse_error_file
from triage.parse.blind import MASK
from triage.parse.prefix import find_record_starts, prefix_spans, split_prefix, strip_ansi
from triage.parse.runinfo import parse_world_size
from triage.parse.steps import STEP_BYTES_RE, parse_step, step_span
from triage.parse.timestamps import parse_timestamp
from triage.parse.traceback import chained_before, frames_backward, frames_from_callstack
from triage.scan.engine import (KIND_EXIT, KIND_RULE, KIND_WORLD, SMALL_CHUNK, STEP_KEYS, Engine,
                                looks_like_exception)

try:
    from isal import igzip as _fast_gzip  # type: ignore
except Exception:  # pragma: no cover - optional
    _fast_gzip = None
_NP: list = []  # numpy, imported on first use (a scan of small files never needs it: 0.1 s)


def _numpy():
    """numpy (counts newlines ~4x faster than bytearray.count), or None where it is missing."""
    if not _NP:
        try:
            import numpy
        except Exception:  # pragma: no cover - optional
            numpy = None
        _NP.append(numpy)
    return _NP[0]


def count_newlines(buf, n: int) -> int:
    if n > 65536 and (np := _numpy()) is not None:
        return int(np.count_nonzero(np.frombuffer(buf, np.uint8, n) == 10))
    return buf.count(b"\n", 0, n)


class _LineIndex:
    """Line numbers of offsets in one chunk, computed once, only when a hit needs one."""

    def __init__(self, buf, n: int):
        self.buf, self.n = buf, n
        self._nl = None
        self._counted_to = 0
        self._count = 0

    def line_of(self, offset: int) -> int:
        """0-based line index (within the chunk) of the line containing `offset`."""
        if self.n > 65536 and (np := _numpy()) is not None:
            if self._nl is None:
                self._nl = np.flatnonzero(np.frombuffer(self.buf, np.uint8, self.n) == 10)
            return int(np.searchsorted(self._nl, offset))
        if offset < self._counted_to:  # callers ask in increasing order; restart if not
            self._counted_to, self._count = 0, 0
        self._count += self.buf.count(b"\n", self._counted_to, offset)
        self._counted_to = offset
        return self._count

    def total(self, n: int) -> int:
        """Newlines in buf[:n] (n >= every offset asked so far), counting only what is left."""
        if self._nl is not None and n == self.n:
            return len(self._nl)
        if self._nl is None and self._counted_to <= n:
            return self._count + self.buf.count(b"\n", self._counted_to, n)
        return count_newlines(self.buf, n)

# Shortcuts that give the same answers as the general paths, only faster (per-rank files: the
# step line just above a failure, and that line as the file's last step). Off only in tests,
# which check the claim.
SHORTCUTS = True
CHUNK_SIZE = 8 << 20
HISTORY = 256 << 10
LONG_LINE = 64 << 10
WINDOW = 4096
BACK_LINES = 60  # same-rank lines looked at for a timestamp / elastic fields
TAIL_BYTES = 4 << 20  # the end of an input read for every rank's last step
ERROR_FILE_MAX = 16 << 20
_NO_PLAN = object()
# Line plans are kept for lines up to PLAN_LINE bytes, PLANS_MAX of each kind per process: a log
# of endless distinct shapes costs at most a few MB, and then the general path's time.
PLAN_LINE = 2048
PLANS_MAX = 2048
_STEP_PLANS: dict = {}  # digit-masked step-line candidate -> (rank span, step span, plain)
_DATED_RE = re.compile(rb"\b(\d{4})-[01]\d-[0-3]\d[T _][0-2]\d:[0-5]\d")  # a stamp with a year
_BLOCK_LINE_RE = re.compile(r"^\s*(?:exitcode|traceback|error_file)\s*:")


@dataclass(slots=True)
class Occ:
    """The first occurrence of one (signature, rank) in one piece, plus a count."""

    sig: str
    family: str
    rule: str | None
    rule_role: str
    template: str
    rank: int | None
    host: str | None
    step: int | None  # stated by the line, or the rank's last step within this piece
    step_from_line: bool
    time: str | None
    time_key: float | None
    input_index: int
    offset: int  # byte offset of the line in the (decompressed) input
    line_rel: int  # 1-based line number within the piece
    message: str
    fields: dict
    frames: tuple
    chained: bool
    exit_code: int | None = None
    elastic_root: bool = False
    count: int = 1

    def astuple(self) -> tuple:
        """The constructor's arguments, in order: `Occ(*occ.astuple())` is a copy."""
        return (self.sig, self.family, self.rule, self.rule_role, self.template, self.rank,
                self.host, self.step, self.step_from_line, self.time, self.time_key,
                self.input_index, self.offset, self.line_rel, self.message, self.fields,
                self.frames, self.chained, self.exit_code, self.elastic_root, self.count)

    def __reduce__(self):
        return (Occ, self.astuple())


@dataclass
class PieceResult:
    input_index: int
    start: int
    lines: int = 0
    bytes: int = 0
    occs: dict = field(default_factory=dict)  # key -> Occ
    rank_steps: dict = field(default_factory=dict)  # rank -> last step (only from an input's tail)
    max_step: int | None = None
    hosts: dict = field(default_factory=dict)  # rank -> host
    exits: dict = field(default_factory=dict)  # rank -> (exit_code, elastic_root)
    ranks: set = field(default_factory=set)
    world_size: int | None = None
    warnings: list = field(default_factory=list)
    candidates: int = 0
    first_stamp: tuple | None = None  # (key, iso) of the first timestamp in the piece
    last_stamp: tuple | None = None  # (key, iso) of the last one
    # A result folded from several whole files (scan_unit): input_index, lines, bytes of each, flat
    # in one array of ints (24 bytes a file, not a tuple's 120). Empty for the result of one piece.
    parts: array = field(default_factory=lambda: array("q"))

    # Results travel from worker processes pickled. Occurrences go as plain tuples (pickle loads
    # those in C) and are rebuilt with one constructor call each: loading 100,000 occurrences
    # this way costs the parent a fifth of what pickling the objects themselves does.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        occs = state.pop("occs")
        state["_occ_keys"] = list(occs)
        state["_occ_rows"] = [o.astuple() for o in occs.values()]
        return state

    def __setstate__(self, state: dict) -> None:
        keys = state.pop("_occ_keys")
        rows = state.pop("_occ_rows")
        self.__dict__.update(state)
        self.occs = dict(zip(keys, itertools.starmap(Occ, rows)))


class Piece(NamedTuple):
    spec: InputSpec
    start: int = 0
    end: int | None = None  # None: to the end of the input


def _open(spec: InputSpec) -> BinaryIO:
    if spec.kind == KIND_STDIN:
        return sys.stdin.buffer
    if spec.kind == KIND_GZ:
        raw = open(spec.real, "rb")
        if _fast_gzip is not None:
            return _fast_gzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return _RawFile(spec.real)


_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t"
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class _RawFile:
    """A plain file read through its descriptor: what a scan calls of a file object, without
    building one (2 us a file, out of ~60, on 100,000 per-rank logs)."""

    __slots__ = ("fd",)

    def __init__(self, path: str):
        self.fd = os.open(path, _OPEN_FLAGS)

    if hasattr(os, "readv"):
        def readinto(self, mv) -> int:
            return os.readv(self.fd, [mv])
    else:  # pragma: no cover - Windows
        def readinto(self, mv) -> int:
            data = os.read(self.fd, len(mv))
            mv[:len(data)] = data
            return len(data)

    def read(self, n: int) -> bytes:
        return os.read(self.fd, n)

    def seek(self, pos: int) -> int:
        return os.lseek(self.fd, pos, os.SEEK_SET)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_YEAR_SPAN: list = [0.0, -1.0, 1970]  # [start, end) in epoch seconds of the last year looked up


def _year_of(spec: InputSpec) -> int:
    """The year of the input's modification time (UTC): the year of stamps that have none."""
    t = spec.mtime if spec.mtime else _time.time()
    lo, hi, year = _YEAR_SPAN
    if lo <= t < hi:  # 100,000 files written in the same year: one gmtime
        return year
    year = _time.gmtime(t).tm_year
    _YEAR_SPAN[:] = [float(calendar.timegm((year, 1, 1, 0, 0, 0))),
                     float(calendar.timegm((year + 1, 1, 1, 0, 0, 0))), year]
    return year


_STEP_KEYS_RE = FastRegex(re2.compile(b"|".join(STEP_KEYS)))  # is there any step keyword?
_STEP_KEY_MAX = max(map(len, STEP_KEYS))
_STEP_WINDOWS = (1 << 10, 8 << 10, 64 << 10, 512 << 10)  # then the rest of the data in one go


def _has_step_key(data, lo: int, hi: int) -> bool:
    """Whether data[lo:hi] holds a step keyword (STEP_KEYS, unrolled), for a line or two:
    C-speed finds that stop at the first one (a step line's "tep" is a few bytes in)."""
    return (data.find(b"tep", lo, hi) >= 0 or data.find(b"iter", lo, hi) >= 0
            or data.find(b"Iter", lo, hi) >= 0 or data.find(b"it/s", lo, hi) >= 0)


def _step_candidates(data: bytes, floor: int, pos: int):
    """Offsets of step keywords in data[floor:pos], last first.

    Searched backwards in growing windows (1 KB, 8 KB, 64 KB, 512 KB, then all that is left), so the
    common case, a step line a few lines above, costs a few short searches however long the
    data is; every byte is still searched at most once per keyword, so a whole window costs
    O(len). Before a large window, one RE2 pass tells whether it holds any keyword at all (most
    per-rank files but rank 0's have none)."""
    hi = pos
    k = 0
    while hi > floor:
        width = _STEP_WINDOWS[k] if k < len(_STEP_WINDOWS) else hi - floor
        k += 1
        lo = max(floor, hi - width)
        # A keyword that starts in this window may end in the one above: search a few bytes
        # past `lo`'s upper neighbour, but yield only keywords that start below it.
        end = min(pos, hi + _STEP_KEY_MAX - 1)
        if end - lo > _STEP_WINDOWS[0] and not _STEP_KEYS_RE.matches(data, lo, end):
            hi = lo
            continue
        last = {key: data.rfind(key, lo, end) for key in STEP_KEYS}
        for key, at in last.items():
            while at >= hi:
                at = data.rfind(key, lo, at)
            last[key] = at
        while True:
            key, cand = max(last.items(), key=lambda kv: kv[1])
            if cand < 0:
                break
            yield cand
            for other, at in last.items():
                if at >= cand:
                    last[other] = data.rfind(other, lo, cand)
        hi = lo


_BUF: bytearray | None = None


def _buffer() -> bytearray:
    """One chunk buffer per process, reused by every piece (allocating 8 MiB per small file
    would cost more than reading it)."""
    global _BUF
    if _BUF is None or len(_BUF) != CHUNK_SIZE:
        _BUF = bytearray(CHUNK_SIZE)
    return _BUF


class _Scanner:
    """State of one piece while it is read."""

    def __init__(self, engine: Engine, piece: Piece, progress: Callable[[int], None] | None,
                 into: PieceResult | None = None):
        self.engine = engine
        self.piece = piece
        self.spec = piece.spec
        self.res = PieceResult(piece.spec.index, piece.start) if into is None else \
            _Into(piece.spec.index, into)
        self._step_cache: dict = {}  # tag -> (absolute line start, step) of the last lookup
        self.default_year = _year_of(piece.spec)
        self.progress = progress
        self.rules = engine.playbook.rules
        self._year_checked = False
        self.last_own_stamp = None  # the latest timestamp a classified line of this piece stated
        if self.spec.rank_hint is not None:
            self.res.ranks.add(self.spec.rank_hint)

    # ----------------------------------------------------------------------------------------
    def run(self) -> PieceResult:
        spec = self.spec
        if spec.kind == KIND_ERROR_JSON and self._error_file():
            return self.res
        try:
            f = _open(spec)
        except OSError as exc:
            self.res.warnings.append(f"{spec.path}: cannot open ({exc.strerror or exc}); skipped")
            return self.res
        try:
            self._read(f)
        except (OSError, EOFError, gzip.BadGzipFile, ValueError) as exc:
            what = "truncated or corrupt compressed data" if spec.kind == KIND_GZ else str(exc)
            self.res.warnings.append(
                f"{spec.path}: {what}; scanned the {self.res.bytes:,} bytes before it")
        except Exception as exc:  # zlib.error and friends from the gzip readers
            self.res.warnings.append(
                f"{spec.path}: read failed ({type(exc).__name__}: {exc}); scanned the "
                f"{self.res.bytes:,} bytes before it")
        finally:
            if f is not sys.stdin.buffer:
                f.close()
        return self.res

    def _read(self, f: BinaryIO) -> None:
        piece = self.piece
        buf = _buffer()
        mv = memoryview(buf)
        history = b""
        pos = piece.start  # absolute offset of buf[0]
        if piece.start > 0:
            # This piece owns the lines that *begin* in [start, end): skip the rest of a line
            # that began before `start`, and keep the bytes before it as lookback history.
            hs = max(0, piece.start - HISTORY)
            f.seek(hs)
            history = f.read(piece.start - hs)
            if not history.endswith(b"\n"):
                skipped = 0
                while True:
                    part = f.read(65536)
                    if not part:
                        break
                    nl = part.find(b"\n")
                    if nl >= 0:
                        skipped += nl + 1
                        history = (history + part[: nl + 1])[-HISTORY:]
                        break
                    skipped += len(part)
                    history = (history + part)[-HISTORY:]
                pos = piece.start + skipped
            f.seek(pos)
        limit = piece.end
        raw = isinstance(f, _RawFile)
        size = self.spec.size if self.spec.size else 1 << 62
        keep = 0  # bytes of an unfinished line carried at the front of buf
        line_no = 0
        ends_with_nl = True
        while True:
            if limit is not None and pos >= limit:
                break
            n_new = f.readinto(mv[keep:]) or 0
            n = keep + n_new
            if n == 0:
                break
            # A plain file read up to the size it had when it was listed, with room to spare in
            # the buffer, is at its end: no second read (and no history copy) for each of
            # 100,000 small files. A short read before that size (FUSE, NFS) reads on; so do
            # pipes and gzip streams.
            eof = n_new == 0 or (raw and n < CHUNK_SIZE and pos + n >= size)
            done = False
            n_proc = -1
            if limit is not None and pos + n > limit:
                nl = buf.find(b"\n", max(limit - 1 - pos, 0), n)
                if nl >= 0:
                    n_proc, done = nl + 1, True
            if n_proc < 0:
                if eof:
                    n_proc = n
                else:
                    last_nl = buf.rfind(b"\n", 0, n)
                    if last_nl >= 0:
                        n_proc = last_nl + 1
                    elif n == CHUNK_SIZE:
                        n_proc = n  # one enormous line: scanned a chunk at a time
                    else:
                        keep = n  # a short read (pipe): wait for the rest of the line
                        continue
            index = self._chunk(buf, n_proc, pos, history, line_no)
            line_no += index.total(n_proc) if index is not None else count_newlines(buf, n_proc)
            ends_with_nl = buf[n_proc - 1] == 0x0A
            self._end_abs = pos + n_proc
            self.res.bytes += n_proc
            self._tick(n_proc)
            if not done and not eof:
                history = (history + bytes(mv[max(0, n_proc - HISTORY):n_proc]))[-HISTORY:]
                rest = n - n_proc
                if rest:
                    buf[0:rest] = buf[n_proc:n]
                keep = rest
                pos += n_proc
            else:
                break
        self.res.lines = line_no + (0 if ends_with_nl or self.res.bytes == 0 else 1)
        if self.piece.end is None:
            tail = self._input_tail()
            if tail:
                self.res.last_stamp = self._edge_stamp(tail, False, max(0, len(tail) - (1 << 16)),
                                                       abs0=self._end_abs - len(tail))
                if not self._no_step_anywhere():
                    self.tail_steps(tail)

    def _input_tail(self) -> bytes:
        """The last TAIL_BYTES of the input, the same bytes however the input was split."""
        if self.spec.kind == "log" and self.spec.real and self.piece.start > 0:
            try:
                with open(self.spec.real, "rb") as fh:
                    fh.seek(max(0, self._end_abs - TAIL_BYTES))
                    return fh.read(min(TAIL_BYTES, self._end_abs))
            except OSError:
                return self._tail
        return self._tail

    _tail = b""
    _end_abs = 0
    # (input offset, default year used, stamp) of the last classified line whose stamp the edge
    # walk would read the same way (one record, no CR, no escape, short): the last stamp of a
    # per-rank file is usually its failure's, already parsed.
    _line_stamp = None
    _plain_line = False
    # (line start it was looked up for, step, prefix rank, whether tail_steps' raw-bytes test
    # accepts the line: True, or the raw line to test)
    _last_any = None
    _step_keys_seen = False  # a step keyword was seen in this piece
    _unchecked = False  # a chunk before the current one was never looked at for keywords
    _cur = None  # (buf, n) of the chunk being read (after the read: the last one)
    _cur_checked = True

    def _no_step_anywhere(self) -> bool:
        """True when this input has no step keyword in what was read so far, so no step lookup
        can find anything. Only for a piece that starts the input (nothing before it unread);
        asked lazily, one look per chunk at most (`Engine.has_step_key`). An optimisation
        only: False whenever it is not sure."""
        if self._step_keys_seen or self.piece.start != 0 or not SHORTCUTS:
            return False
        if not self._cur_checked:
            self._cur_checked = True
            found = self.engine.has_step_key(*self._cur)
            if found is None:
                self._unchecked = True  # cannot tell: assume there may be steps
            elif found:
                self._step_keys_seen = True
                return False
        return not self._unchecked

    def _edge_stamp(self, data, first: bool, start: int = 0, end: int | None = None,
                    abs0: int | None = None):
        """(key, iso) of the first (or last) timestamped line among the 16 edge lines of
        data[start:end]. Walks line by line with find/rfind: no copy of the data. `abs0`: the
        input offset of data[0], to reuse the stamp of a classified last line (`_line_stamp`)."""
        end = len(data) if end is None else end
        known = self._line_stamp if (SHORTCUTS and abs0 is not None and not first) else None
        for _ in range(16):
            if start >= end:
                return None
            if first:
                nl = data.find(b"\n", start, end)
                ls, le = start, (end if nl < 0 else nl)
                start = le + 1
            else:
                nl = data.rfind(b"\n", start, end - 1 if data[end - 1:end] == b"\n" else end)
                if nl < 0 and start > 0 and data[start - 1:start] != b"\n":
                    return None  # the window's first line is cut
                ls, le = (nl + 1 if nl >= 0 else start), end
                end = ls
                if known is not None:  # a per-rank file's last line is often its failure
                    if known[0] == abs0 + ls and known[1] in (None, self.default_year):
                        return (known[2].key, known[2].iso)
                    known = None
            raw = bytes(data[ls:min(le, ls + 4096)])
            text = strip_ansi(raw.decode("utf-8", "replace")).rstrip("\r\n")
            if "\r" in text:
                text = text.rsplit("\r", 1)[-1]
            st = parse_timestamp(text[split_prefix(text).offset:], self.default_year)
            if st is not None:
                return (st.key, st.iso)
        return None

    def _tick(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)

    # ----------------------------------------------------------------------------------------
    def _chunk(self, buf: bytearray, n: int, base: int, history: bytes, line_base: int) -> None:
        if not self._year_checked:
            self._year_checked = True
            m = _DATED_RE.search(buf, 0, min(n, 1 << 16))
            if m is not None and 1970 <= int(m.group(1)) <= 2999:
                self.default_year = int(m.group(1))
            self.res.first_stamp = self._edge_stamp(buf, True, 0, min(n, 1 << 16))
        if self._tail:
            self._tail = (self._tail + bytes(buf[max(0, n - TAIL_BYTES):n]))[-TAIL_BYTES:]
        else:
            self._tail = bytes(buf[max(0, n - TAIL_BYTES):n])
        if not self._cur_checked and not self._step_keys_seen:
            self._unchecked = True
        self._cur, self._cur_checked = (buf, n), False
        hits = self.engine.hits(buf, n)
        step_pid = self.engine.step_pid
        if step_pid is not None and n > SMALL_CHUNK:  # the pass looked for step keywords too
            self._cur_checked = True
            if any(pid == step_pid for _, pid in hits):
                self._step_keys_seen = True
                hits = [h for h in hits if h[1] != step_pid]
        if not hits:
            return None
        kinds = self.engine.pattern_kind
        owners = self.engine.pattern_owner
        index = _LineIndex(buf, n)
        i = 0
        nh = len(hits)
        while i < nh:
            end, pid = hits[i]
            p = max(end - 1, 0)
            if p < n and buf[p] == 0x0A and p > 0:
                p -= 1
            ls = buf.rfind(b"\n", 0, p + 1) + 1
            le = buf.find(b"\n", p + 1, n)
            if le < 0:
                le = n
            i += 1
            if i < nh and hits[i][0] <= le + 1:  # several patterns hit this line
                ids = {pid}
                while i < nh and hits[i][0] <= le + 1:
                    ids.add(hits[i][1])
                    i += 1
                want = {kinds[x] for x in ids}
                rule_idx = sorted({owners[x] for x in ids if kinds[x] == KIND_RULE},
                                  key=lambda r: (-self.rules[r].priority, r))
            else:
                want = (kinds[pid],)
                rule_idx = (owners[pid],) if kinds[pid] == KIND_RULE else ()
            if ls == le:
                continue
            self.res.candidates += 1
            self._line(buf, ls, le, p, base, history, line_base + index.line_of(ls) + 1,
                       rule_idx, want)
        return index

    def _line(self, buf, ls, le, hit_pos, base, history, line_no, rule_idx, want) -> None:
        if SHORTCUTS and le - ls <= PLAN_LINE and type(rule_idx) is tuple and len(rule_idx) == 1:
            raw = bytes(buf[ls:le])
            if raw.isascii() and b"\x1b" not in raw and b"\r" not in raw:
                plans = self.engine.plans
                key = (raw.translate(MASK), rule_idx[0])
                plan = plans.get(key, _NO_PLAN)
                text = raw.decode("ascii")
                if plan is _NO_PLAN:
                    plan = self._plan(text, rule_idx[0])
                    if len(plans) >= PLANS_MAX:
                        plans.clear()
                    plans[key] = plan
                if plan is not None:
                    self._planned(plan, text, buf, ls, base, history, line_no)
                    return
        cut = False
        if le - ls > LONG_LINE:
            a = max(ls, hit_pos - WINDOW)
            b = min(le, hit_pos + WINDOW)
            while a < hit_pos and 0x80 <= buf[a] <= 0xBF:  # not inside a UTF-8 sequence
                a += 1
            while b > hit_pos + 1 and b < le and 0x80 <= buf[b] <= 0xBF:
                b -= 1
            head = bytes(buf[ls:min(le, ls + 256)])
            raw = bytes(buf[a:b])
            cut = True
        else:
            head = None
            raw = bytes(buf[ls:le])
        text = raw.decode("utf-8", "replace")
        plain = not cut and "\x1b" not in text and "\r" not in text and le - ls <= 4096
        text = strip_ansi(text)
        if cut:
            text = "…" + text + "…"
        records: list[tuple] = []  # (record, its prefix when already split)
        for seg in (text.split("\r") if "\r" in text else (text,)):
            if not seg or seg.isspace():
                continue
            lead = split_prefix(seg)  # "[default2]:[rank2]:" is one prefix, not two records
            inner = find_record_starts(seg, max(lead.offset, 1))
            if not inner:
                records.append((seg, lead))
                continue
            starts = [0] + inner
            for j, s in enumerate(starts):
                e = starts[j + 1] if j + 1 < len(starts) else len(seg)
                records.append((seg[s:e], None))
        self._plain_line = plain and len(records) == 1
        if cut and head is not None:
            pfx_head = split_prefix(strip_ansi(head.decode("utf-8", "replace")))
        else:
            pfx_head = None
        for rec, pfx in records:
            if pfx is None:
                pfx = split_prefix(rec)
            if pfx.rank is None and pfx_head is not None and pfx_head.rank is not None:
                pfx = pfx_head.__class__(pfx_head.rank, pfx_head.host, pfx.offset, pfx_head.tag)
            msg = rec[pfx.offset:]
            rank = pfx.rank if pfx.rank is not None else self.spec.rank_hint
            if rank is not None:
                self.res.ranks.add(rank)
            if pfx.host and rank is not None:
                self.res.hosts.setdefault(rank, pfx.host)
            if KIND_WORLD in want:
                ws = parse_world_size(msg)
                if ws is not None and (self.res.world_size is None or ws > self.res.world_size):
                    self.res.world_size = ws
            exit_rec = None
            if KIND_EXIT in want or (rule_idx and _BLOCK_LINE_RE.match(msg)):
                exit_rec = self._exit_block(msg, buf, ls, history, pfx.tag)
                if exit_rec is not None and exit_rec.rank is not None:
                    self.res.ranks.add(exit_rec.rank)
                    self.res.exits.setdefault(exit_rec.rank, (exit_rec.exit_code, exit_rec.root_cause))
                    if exit_rec.host:
                        self.res.hosts.setdefault(exit_rec.rank, exit_rec.host)
            if rule_idx:
                self._classify(msg, rec, rank, pfx.host, pfx.tag, rule_idx, exit_rec, buf, ls,
                               base, history, line_no)

    # Line plans. A plain ASCII hit line of one rule's pattern is parsed once per shape: what
    # _line and _classify derive from its structure (prefix spans, no inner records, no elastic
    # block, the rule's match and group spans, where a stated step is, whether it is an
    # exception line) depends only on the line with its digits masked, because every pattern
    # involved is digit-blind (triage.parse.blind; the rule's own patterns are checked when the
    # plan is made, the scanner's are checked by a test). Values (rank, fields, the step, the
    # timestamp) are read from the line itself at those spans. A plan is None where the line
    # needs the general path (then every line of that shape takes it).
    def _plan(self, text: str, r: int):
        rank_sp, host_sp, off, ts, te = prefix_spans(text)
        if not text or text.isspace() or find_record_starts(text, max(off, 1)):
            return None
        msg = text[off:]
        rule = self.rules[r]
        if _BLOCK_LINE_RE.match(msg) or not rule.digit_blind:
            return None
        found = rule.search_spans(msg.encode("ascii"))
        return (rank_sp, host_sp, off, ts, te, r, found,
                step_span(msg) if found is not None else None,
                looks_like_exception(msg) if found is not None else False)

    def _planned(self, plan, text: str, buf, ls, base, history, line_no) -> None:
        rank_sp, host_sp, off, ts, te, r, found, step_sp, exc = plan
        self._plain_line = True
        rank = int(text[rank_sp[0]:rank_sp[1]]) if rank_sp is not None else self.spec.rank_hint
        host = text[host_sp[0]:host_sp[1]] if host_sp is not None else None
        if rank is not None:
            self.res.ranks.add(rank)
            if host:
                self.res.hosts.setdefault(rank, host)
        if found is None:
            return
        msg = text[off:]
        self._classify(msg, text, rank, host, text[ts:te], (r,), None, buf, ls, base, history,
                       line_no, found=(self.rules[r], {k: msg[a:b] for k, a, b in found}),
                       step_sp=step_sp, exc=exc)

    def _classify(self, msg, rec, rank, host, tag, rule_idx, exit_rec, buf, ls, base, history,
                  line_no, found=None, step_sp=False, exc=None):
        """An occurrence from a hit record. `found`, `step_sp` and `exc`, from a line plan, stand
        for the rule search, step_span(msg) and looks_like_exception(msg)."""
        if found is not None:
            rule, fields = found
        else:
            rule = fields = None
            for r in rule_idx:
                got = self.rules[r].search(msg)
                if got is not None:
                    rule, fields = self.rules[r], got
                    break
            if rule is None:
                return
        stamp = parse_timestamp(msg, self.default_year)
        if stamp is not None and self._plain_line:
            self._line_stamp = (base + ls, None if stamp.has_year else self.default_year, stamp)
        if stamp is not None and stamp.has_year:
            self.default_year = int(stamp.iso[:4])
        exit_code = None
        elastic_root = False
        if exit_rec is not None:
            if exit_rec.rank is not None:
                rank = exit_rec.rank
            host = exit_rec.host or host
            exit_code = exit_rec.exit_code
            elastic_root = exit_rec.root_cause
            if exit_rec.time and stamp is None:
                stamp = parse_timestamp(exit_rec.time, self.default_year)
        if rank is None and "rank" in fields and fields["rank"].isdigit():
            rank = int(fields["rank"])
        if fields.get("culprit", "").isdigit():  # another rank reports this rank's failure
            rank, tag = int(fields["culprit"]), ""
        host = fields.get("host") or host
        if rank is not None and fields.get("host"):
            self.res.hosts.setdefault(rank, fields["host"])  # "srun: error: node-7: task 3: ..."
        own_stamp = stamp is not None
        if own_stamp and (self.last_own_stamp is None or stamp.key > self.last_own_stamp.key):
            self.last_own_stamp = stamp
        tmpl = template(msg)
        sig = signature_id(rule.family, rule.id, tmpl)
        key = (sig, rank) if rank is not None else (sig, None, self.spec.index)
        occ = self.res.occs.get(key)
        if occ is not None:
            occ.count += 1
            return
        step_from_line = False
        step = None
        if step_sp is False:
            step_sp = step_span(msg)
        if exc is None:
            exc = looks_like_exception(msg)
        if "step" in fields and fields["step"].isdigit():
            step, step_from_line = int(fields["step"]), True
        elif step_sp is not None:  # "loss is nan at step 12": the error states it
            step, step_from_line = int(msg[step_sp[0]:step_sp[1]]), True
        else:
            step = self._step_before(buf, ls, base, history, tag)
        frames: tuple = ()
        chained = False
        need_back = not own_stamp or exc
        if need_back:
            back = list(self._back_lines(buf, ls, history, tag, BACK_LINES * 4))
            if exc:
                info = frames_backward(back)
                frames = info.frames
                chained = chained_before(back) if info.found else info.chained
            if stamp is None:
                for line in back[:BACK_LINES]:
                    stamp = parse_timestamp(line, self.default_year)
                    if stamp is not None:
                        break
                # A borrowed stamp is only a lower bound; so is the last stamp a classified line
                # of this input stated before this line (any rank): take the later of the two.
                if stamp is not None and self.last_own_stamp is not None and \
                        self.last_own_stamp.key > stamp.key:
                    stamp = self.last_own_stamp
        # positional (Occ's field order): a third cheaper than 21 keywords, once per rank
        self.res.occs[key] = Occ(
            sig, rule.family, rule.id, rule.role, tmpl, rank, host, step, step_from_line,
            stamp.iso if stamp else None, stamp.key if stamp else None, self.spec.index,
            base + ls, line_no, rec.rstrip("\n")[:WINDOW * 2], _shared_fields(fields), frames,
            chained, exit_code, elastic_root)

    def _step_before(self, buf, ls, base, history, tag):
        """The step this rank last reported before the line at `ls` (else any rank's), from the
        lookback window (HISTORY bytes). A walk stops at the previous lookup's line for the same
        tag and reuses its answer when that answer lies inside this window too, so a wall of
        4,000 timeouts costs one walk, and the answer is the same however the file was split."""
        here = base + ls
        window_start = here - HISTORY
        if self._no_step_anywhere():
            return None
        keys = (tag, None) if tag else (None,)
        for key in keys:
            cached = self._step_cache.get(key)
            if key is None:
                found = self._last_step_any(buf, ls, base, history, cached, window_start)
            else:
                found = None
                for line, start in self._back_lines(buf, ls, history, key, 1 << 30,
                                                    with_offsets=True, base=base):
                    if cached is not None and start <= cached[0]:
                        if cached[1] is not None and cached[2] >= window_start:
                            found = (cached[1], cached[2])
                        break
                    st = parse_step(line)
                    if st is not None:
                        found = (st, start)
                        break
            if found is not None:
                self._step_cache[key] = (here, found[0], found[1])
                return found[0]
            self._step_cache[key] = (here, None, None)
        return None

    def _last_step_any(self, buf, ls, base, history, cached, window_start):
        """The last step line of any rank in the window, found from the end with C-speed
        searches for the step keywords, so a window with no step line costs four scans.

        The window is data[d0:ls_d]: the chunk buffer itself when the window lies inside it (no
        copy), else the history's tail joined to the chunk's head."""
        lo = max(0, ls - HISTORY)
        if lo > 0 or not history:
            data, d0, pos = buf, lo, ls
            wstart = base + lo
        else:
            data = bytes(buf[lo:ls])
            data = history[-(HISTORY - len(data)):] + data
            d0, pos = 0, len(data)
            wstart = base + ls - len(data)
        floor = d0
        if cached is not None and cached[0] > wstart:
            floor = d0 + cached[0] - wstart  # nothing new below the previous lookup's line
        # The common case first: the line just before is a step line (a trainer logs one per
        # step, the failure comes right after). It is the nearest candidate if it has a keyword.
        if SHORTCUTS and pos > d0 and data[pos - 1] == 0x0A:
            nl = data.rfind(b"\n", d0, pos - 1)
            if nl >= 0 and nl + 1 >= floor:
                if _has_step_key(data, nl + 1, pos - 1):
                    found = self._step_line(data, nl + 1, pos - 1, base + ls)
                    if found is not None:
                        return (found, wstart + nl + 1 - d0)
        for cand in _step_candidates(data, floor, pos):
            if cand >= pos:
                continue
            r = data.rfind(b"\n", d0, cand)
            if r < 0 and wstart != 0:
                break  # a cut first line
            start = r + 1 if r >= 0 else d0
            end = data.find(b"\n", cand, pos)
            end = pos if end < 0 else end
            found = self._step_line(data, start, end, base + ls)
            if found is not None:
                return (found, wstart + start - d0)
            pos = start
        if cached is not None and cached[1] is not None and cached[2] >= window_start:
            return (cached[1], cached[2])
        return None

    def _step_line(self, data, start: int, end: int, here: int) -> int | None:
        """The step the line data[start:end] reports (launcher prefix and ANSI codes removed),
        or None. A hit is remembered for tail_steps: the nearest step line before `here`, and
        what tail_steps needs to take it as the input's last step line without reading it."""
        raw = bytes(data[start:min(end, start + 4096)])
        if SHORTCUTS and len(raw) <= PLAN_LINE and raw.isascii() and b"\x1b" not in raw and \
                b"\r" not in raw:
            # A plan per shape, as for hit lines: the prefix and step spans are digit-blind.
            key = raw.translate(MASK)
            plan = _STEP_PLANS.get(key)
            if plan is None:
                text = raw.decode("ascii")
                rank_sp, _h, off, _ts, _te = prefix_spans(text)
                sp = step_span(text[off:])
                plan = (rank_sp, None if sp is None else (off + sp[0], off + sp[1]),
                        off == 0 and not raw.translate(None, _PLAIN_ASCII))
                if len(_STEP_PLANS) >= PLANS_MAX:
                    _STEP_PLANS.clear()
                _STEP_PLANS[key] = plan
            rank_sp, sp, plain = plan
            if sp is None:
                return None
            st = int(raw[sp[0]:sp[1]])
            rank = int(raw[rank_sp[0]:rank_sp[1]]) if rank_sp is not None else None
            self._last_any = (here, st, rank, True if plain else raw)
            return st
        text = strip_ansi(raw.decode("utf-8", "replace")).rstrip("\r")
        if "\r" in text:
            text = text.rsplit("\r", 1)[-1]
        pfx = split_prefix(text)
        st = parse_step(text[pfx.offset:])
        if st is not None:
            # tail_steps takes a line whose raw bytes STEP_BYTES_RE matches. parse_step found
            # one of the same shapes in the text, so a line of printable ASCII and tabs read as
            # it is (no prefix) matches: str and bytes patterns agree on it (not on other
            # control characters, \x1c is str whitespace). Any other line is tested there.
            plain = pfx.offset == 0 and not raw.translate(None, _PLAIN_ASCII)
            self._last_any = (here, st, pfx.rank, True if plain else raw)
        return st

    def tail_steps(self, tail: bytes) -> None:
        """Every rank's last step, from the last TAIL_BYTES of an input (its exposure). Jumps
        from one step keyword to the previous with C-speed searches: lines that cannot be step
        lines are never decoded."""
        steps = self.res.rank_steps
        single = self.spec.rank_hint is not None
        floor = tail.find(b"\n") + 1 if len(tail) >= TAIL_BYTES else 0  # a cut first line
        pos = len(tail)
        # A per-rank file read whole: a failure's step lookup already found the nearest step
        # line before that failure (`_last_any`); only the bytes after it need a search.
        known = self._last_any if SHORTCUTS else None
        stop = floor
        if known is not None and single and self.piece.start == 0 and \
                len(tail) == self._end_abs and len(tail) < TAIL_BYTES and \
                (known[3] is True or STEP_BYTES_RE.search(known[3], 0, 4096) is not None):
            stop = known[0]
            if not _has_step_key(tail, stop, pos):
                pos = stop  # nothing after the failure's lookup can be a step line
        else:
            known = None
        for cand in _step_candidates(tail, stop, pos):
            if cand >= pos:
                continue  # another keyword on a line already read
            start = tail.rfind(b"\n", floor, cand) + 1 or floor
            end = tail.find(b"\n", cand)
            end = len(tail) if end < 0 else end
            pos = start
            raw = tail[start:end]
            if STEP_BYTES_RE.search(raw, 0, 4096) is None:
                continue
            text = strip_ansi(raw[:4096].decode("utf-8", "replace")).rstrip("\r").rsplit("\r", 1)[-1]
            p = split_prefix(text)
            st = parse_step(text[p.offset:])
            if st is None:
                continue
            rank = p.rank if p.rank is not None else self.spec.rank_hint
            if self.res.max_step is None or st > self.res.max_step:
                self.res.max_step = st
            if rank is not None and rank not in steps:
                steps[rank] = st
                self.res.ranks.add(rank)
            if single:
                return  # a per-rank file: its last step line is all it has to say
        if known is not None:  # nothing after the failure's lookup: its step line is the last
            st, rank = known[1], (known[2] if known[2] is not None else self.spec.rank_hint)
            if self.res.max_step is None or st > self.res.max_step:
                self.res.max_step = st
            if rank is not None and rank not in steps:
                steps[rank] = st
                self.res.ranks.add(rank)

    def _exit_block(self, msg, buf, ls, history, tag):
        if not _BLOCK_LINE_RE.match(msg):
            return None
        back = list(self._back_lines(buf, ls, history, None, 14))
        return parse_block(msg.strip(), back)

    def _back_lines(self, buf, ls, history, tag: str, limit: int, with_offsets: bool = False,
                    base: int = 0):
        """Decoded lines before the hit line, newest first; only `tag`'s lines when tagged.
        With `with_offsets`, (line, absolute offset of its start) pairs."""
        lo = max(0, ls - HISTORY)
        window = bytes(buf[lo:ls])
        if len(window) < HISTORY and history:
            window = history[-(HISTORY - len(window)):] + window
        wstart = base + ls - len(window)  # absolute offset of window[0]
        tagb = _tag_key(tag)
        pos = len(window)
        count = 0
        while count < limit and pos > 0:
            if tagb is not None:
                j = window.rfind(tagb, 0, pos)
                if j < 0:
                    break
                start = window.rfind(b"\n", 0, j) + 1
                if window[start:j].strip(b" \t>"):
                    pos = j  # the tag inside a line, not its prefix: keep looking
                    continue
            else:
                j = window.rfind(b"\n", 0, pos - 1)
                if j < 0:
                    if wstart != 0 or pos <= 0:
                        break  # the window's first line may be cut: only whole lines count
                    start = 0  # the input's very first line
                else:
                    start = j + 1
            e = window.find(b"\n", start, pos)
            e = pos if e < 0 else e
            line = strip_ansi(window[start:e][:LONG_LINE].decode("utf-8", "replace")).rstrip("\r")
            if "\r" in line:
                line = line.rsplit("\r", 1)[-1]
            p = split_prefix(line)
            yield (line[p.offset:], wstart + start) if with_offsets else line[p.offset:]
            pos = start
            count += 1

    # ----------------------------------------------------------------------------------------
    def _error_file(self) -> bool:
        spec = self.spec
        try:
            with open(spec.real, "rb") as fh:
                data = fh.read(ERROR_FILE_MAX + 1)
        except OSError as exc:
            self.res.warnings.append(f"{spec.path}: cannot open ({exc.strerror or exc}); skipped")
            return True
        if len(data) > ERROR_FILE_MAX:
            return False
        text = data.decode("utf-8", "replace")
        ef = parse_error_file(text)
        if ef is None:
            return False  # not an error file after all: scan it as text
        self.res.bytes = len(data)
        self.res.lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        first = ef.message.strip().splitlines()
        line = first[-1] if first else ef.message
        # the exception line is the last line of a Python message ("...\nValueError: x")
        for cand in reversed(first):
            if looks_like_exception(cand):
                line = cand
                break
        idx = sorted(range(len(self.rules)), key=lambda r: (-self.rules[r].priority, r))
        cands = [r for r in idx if self.rules[r].search(line) is not None][:1]
        if not cands:
            return True
        rule = self.rules[cands[0]]
        fields = rule.search(line) or {}
        rank = spec.rank_hint
        tmpl = template(line)
        sig = signature_id(rule.family, rule.id, tmpl)
        key = (sig, rank) if rank is not None else (sig, None, spec.index)
        frames = frames_from_callstack(ef.callstack) if ef.callstack else ()
        self.res.occs[key] = Occ(
            sig=sig, family=rule.family, rule=rule.id, rule_role=rule.role, template=tmpl,
            rank=rank, host=None, step=None, step_from_line=False,
            time=ef.time, time_key=ef.time_key, input_index=spec.index, offset=0,
            line_rel=ef.line, message=line[:WINDOW * 2], fields=dict(fields), frames=frames,
            chained=False)
        return True


def _tag_key(tag: str | None) -> bytes | None:
    """What every line of the same rank starts with (after quote markers and indentation)."""
    if not tag:
        return None
    t = tag.strip()
    if t.endswith(">:") and "]<" in t:  # mpirun: [1,3]<stdout>: and [1,3]<stderr>: are one rank
        t = t[: t.index("]<") + 2]
    return t.encode("utf-8", "replace")


_FIELDS: dict = {}


def _shared_fields(fields: dict) -> dict:
    """One dict object for equal field sets (a wall of 100,000 timeouts has a handful: same
    op, seq and timeout). Occurrence fields are read, never changed, after the scan."""
    key = tuple(fields.items())
    got = _FIELDS.get(key)
    if got is None:
        if len(_FIELDS) > 65536:
            _FIELDS.clear()
        got = _FIELDS[key] = dict(fields)
    return got


def scan_piece(engine: Engine, piece: Piece, progress: Callable[[int], None] | None = None) -> PieceResult:
    return _Scanner(engine, piece, progress).run()


def scan_unit(engine: Engine, pieces, progress: Callable[[int], None] | None = None
              ) -> list[PieceResult]:
    """Scan a unit of work: one piece of a large file, or a batch of small whole files.

    A batch comes back as ONE result folded from its files' results (the same fold the merge
    would do), so 100,000 per-rank files cost a few dozen results to send between processes
    and to merge, not 100,000.
    """
    if len(pieces) == 1:
        return [scan_piece(engine, pieces[0], progress)]
    acc: PieceResult | None = None
    last = -1
    for piece in pieces:
        assert piece.start == 0 and piece.end is None, "only whole files are batched"
        assert piece.spec.index > last, "a batch is in input order"
        last = piece.spec.index
        if acc is None:
            acc = PieceResult(piece.spec.index, 0)
        if SHORTCUTS and piece.spec.kind == KIND_LOG:
            # A plain file scans straight into the batch's tables (_Into): the fold's answer
            # without a result per file to build and fold (files come in input order, so an
            # occurrence already in the batch is always the earlier one).
            r = _Scanner(engine, piece, progress, into=acc).run()
            _fold_rest(acc, r)
        else:  # gzip and error files keep their own result (an error file sets its occurrence)
            r = scan_piece(engine, piece, progress)
            fold_into(acc, r)
        acc.parts.extend((r.input_index, r.lines, r.bytes))
        acc.lines += r.lines
        acc.bytes += r.bytes
    return [acc] if acc is not None else []


class _Into:
    """A file's result whose tables are the batch's own (occurrences, ranks, hosts, exits,
    warnings: what folding would add to the batch's, in the same order). What is the file's
    alone (lines, bytes, stamps, the last step of each rank, counts) stays here for `_fold_rest`."""

    lines = 0
    bytes = 0
    max_step = None
    world_size = None
    candidates = 0
    first_stamp = None
    last_stamp = None

    def __init__(self, index: int, acc: PieceResult):
        self.input_index = index
        self.occs, self.ranks, self.hosts = acc.occs, acc.ranks, acc.hosts
        self.exits, self.warnings = acc.exits, acc.warnings
        self.rank_steps = {}


def _fold_rest(acc: PieceResult, r: _Into) -> None:
    """fold_into for what an _Into result kept to itself."""
    if r.rank_steps:
        steps = acc.rank_steps
        for rk, st in r.rank_steps.items():
            if rk not in steps or st > steps[rk]:
                steps[rk] = st
    if r.max_step is not None and (acc.max_step is None or r.max_step > acc.max_step):
        acc.max_step = r.max_step
    if r.world_size is not None and (acc.world_size is None or r.world_size > acc.world_size):
        acc.world_size = r.world_size
    acc.candidates += r.candidates
    if r.first_stamp is not None and (acc.first_stamp is None or r.first_stamp < acc.first_stamp):
        acc.first_stamp = r.first_stamp
    if r.last_stamp is not None and (acc.last_stamp is None or r.last_stamp > acc.last_stamp):
        acc.last_stamp = r.last_stamp


def fold_into(acc: PieceResult, r: PieceResult) -> None:
    """Add what result `r` found to `acc`: the fold of a batch (here) and of the merge.

    Order-independent except for first-seen hosts and exit codes: callers fold in input order.
    The first occurrence of a key is the one earliest in (input, offset); later ones only count.
    Line counts and `parts` are the caller's (they differ between a batch and a split file).
    """
    occs = acc.occs
    for key, occ in r.occs.items():
        prev = occs.get(key)
        if prev is None:
            occs[key] = occ
        elif (occ.input_index, occ.offset) < (prev.input_index, prev.offset):
            occ.count += prev.count
            occs[key] = occ
        else:
            prev.count += occ.count
    for rk, h in r.hosts.items():
        acc.hosts.setdefault(rk, h)
    for rk, ex in r.exits.items():
        acc.exits.setdefault(rk, ex)
    acc.ranks |= r.ranks
    acc.warnings.extend(r.warnings)
    _fold_rest(acc, r)


def file_size(spec: InputSpec) -> int:
    try:
        return os.stat(spec.real).st_size if spec.real else 0
    except OSError:
        return 0
