"""Hang analysis: which rank (or host) is off-script, and at which collective.

Input is a bag of `CollectiveObs` — what one rank said about one collective — from log lines
(triage.parse.collectives) and flight-recorder dumps (triage.parse.flight_recorder). Output is a
`HangVerdict`, whose `to_json()` is the public `triage.hang/1` object.

The method, per process group (pg):
1. Line the ranks up by collective sequence number. For each seq, a rank is *present* (it issued
   that collective: op and shape known or not), *behind* (its evidence ends before that seq),
   or *unknown* (its evidence starts after it: a wrapped ring buffer, or a log line that only
   names a later collective). Unknown ranks never vote.
2. Walk the seqs in order; the first seq where present and behind ranks do not all agree on
   (op, shape) is the point of disagreement. Ranks are grouped by what they did there
   ("not issued" is a group of its own). A strict largest group is the script; every rank
   outside it is a culprit ("off_script", "behind" or "ahead"). One guard: when most ranks
   never issued the collective and the script (step 3) says it was due next, the many are
   behind and nothing singles one out: "undecided", never blame on the few that issued it.
3. A tie (two ranks, or 2 vs 2) is broken only by evidence about the script itself: the
   sequence of collectives all ranks agreed on before (a repeating training step predicts the
   next collective: what followed the longest recurring suffix), or, failing that, which of
   the tied signatures was ever completed before. If neither singles out one group, the
   verdict is "undecided". Field comparisons skip what some present rank does not know (an
   NCCL summary line has no op; numel and shapes are not compared with each other).
4. If all ranks agree everywhere, known ranks (`known_ranks`, `world_size`) with no
   collective evidence at all, while every other rank reports waiting, a timeout or a failed
   collective (at least one of them unfinished), are the culprits ("silent"), if they are a
   minority. `where` (py-spy's innermost main-thread frame) says what they were doing.
5. Log lines that carry no seq (gloo's "Timed out waiting ...", "Connection closed by peer";
   py-spy frames) only feed step 4 and each rank's state.
Between process groups, the one with the most ranks is looked at first; ties by name.

Invariants
- The verdict does not depend on the order of the observations: every collection is sorted
  (by rank, pg, seq) before use and every tie is broken by value, never by position.
- "culprit" is said only with evidence that singles the culprits out; otherwise "undecided".
  "no_hang" only when no rank reports a timeout, a mismatch, waiting or an unfinished
  collective and the ranks agree.
- Ranks are global ranks, as given by the observations.

Scale: observations are plain frozen dataclasses; a pg with S seqs and R ranks costs O(S*R)
dictionary lookups. Measured here (2 loaded cores): 2,000 entries x 1,024 ranks (2M
observations) in about 30 s, most of it building and sorting the observations; the scanner's
log-only path passes a few observations per rank. The tie-breaking predictor only runs on ties.

Limits: point-to-point traffic is not analysed (majority does not apply to a pair); seq numbers
of TORCH_DISTRIBUTED_DEBUG=DETAIL reports live in their own pg (`detail:<pg>`) because they
count differently from dumps; a rank that is behind in one pg but whose dump is missing
cannot be told from a rank that is not a member of that pg.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from triage.errors import InputError
from triage.records import SourceRef

HANG_SCHEMA = "triage.hang/1"


class Verdict(str, Enum):
    CULPRIT = "culprit"
    UNDECIDED = "undecided"
    NO_HANG = "no_hang"


# What a rank did at the point of disagreement (the `state` of `ranks` in triage.hang/1).
class RankStatus(str, Enum):
    WAITING = "waiting"  # issued the script's collective and waits in it
    OFF_SCRIPT = "off_script"  # issued another op or shape than the script
    BEHIND = "behind"  # never issued the collective the others are in
    AHEAD = "ahead"  # issued a collective the others never issued
    SILENT = "silent"  # known rank with no evidence while the others wait
    MISSING = "missing"  # known rank with no evidence (no dump, no log line)


PENDING_STATES = frozenset({"timed_out", "mismatch", "waiting", "scheduled", "started"})
# "failed": a collective that died because a peer went away (gloo "Connection closed by peer")
EVIDENT_STATES = PENDING_STATES | {"failed"}


@dataclass(frozen=True)
class CollectiveObs:
    """What one rank said about one collective (a log line or a dump entry)."""

    rank: int
    pg: str | None
    seq: int | None
    op: str | None
    shape: str | None  # sizes or numel as text, e.g. "[16]" or "numel=8->8"
    state: str  # "timed_out", "scheduled", "started", "completed", "mismatch", "waiting",
    #             "failed" (a peer went away)
    source: SourceRef | None
    host: str | None = None
    where: str | None = None  # the user's call site, when a dump recorded frames
    time_ns: int | None = None
    reported_by: int | None = None  # a DETAIL report names other ranks: who said it


@dataclass(frozen=True)
class RankHangState:
    state: str
    last_seq: int | None
    op: str | None
    shape: str | None = None
    host: str | None = None
    evidence: SourceRef | None = None
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "last_seq": self.last_seq, "op": self.op}


@dataclass(frozen=True)
class HangVerdict:
    verdict: str  # Verdict value
    culprits: tuple[int, ...]
    hosts: tuple[str, ...]
    process_group: str | None
    seq: int | None
    op: str | None
    ranks: Mapping[int, RankHangState]
    why: str
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": HANG_SCHEMA,
            "verdict": self.verdict,
            "culprits": list(self.culprits),
            "hosts": list(self.hosts),
            "process_group": self.process_group,
            "seq": self.seq,
            "op": self.op,
            "ranks": {str(r): self.ranks[r].to_json() for r in sorted(self.ranks)},
            "why": self.why,
        }


# ---------------------------------------------------------------------------------------------
# the analysis

_NOT_ISSUED = ("<not issued>", None)
_STATE_RANK = {"completed": 0, "scheduled": 1, "started": 2, "waiting": 3, "timed_out": 4,
               "mismatch": 5}


def _sig_text(sig: tuple[str | None, str | None]) -> str:
    op, shape = sig
    if sig == _NOT_ISSUED:
        return "nothing (never issued it)"
    return f"{op or '?'}{' ' + shape if shape else ''}"


def _ranks_text(ranks: Iterable[int]) -> str:
    rs = sorted(ranks)
    if len(rs) > 8:
        return f"{len(rs)} ranks ({', '.join(map(str, rs[:4]))}, ..., {rs[-1]})"
    return ("rank " if len(rs) == 1 else "ranks ") + ", ".join(map(str, rs))


def _merge(a: CollectiveObs, b: CollectiveObs) -> CollectiveObs:
    """Two observations of the same (rank, pg, seq): keep the more informative, by value."""
    def key(o: CollectiveObs):
        return (o.reported_by is None or o.reported_by == o.rank, o.op is not None,
                o.shape is not None and not o.shape.startswith("numel"), o.shape is not None,
                _STATE_RANK.get(o.state, 0), o.where or "", o.source.path if o.source else "",
                o.source.line if o.source else 0)
    return max((a, b), key=key)


@dataclass
class _PgView:
    pg: str
    by_rank: dict[int, dict[int, CollectiveObs]]  # rank -> seq -> obs

    def seqs(self) -> list[int]:
        return sorted({s for m in self.by_rank.values() for s in m})


def _views(observations: Sequence[CollectiveObs]) -> dict[str, _PgView]:
    views: dict[str, _PgView] = {}
    for o in observations:
        if o.seq is None:
            continue
        pg = o.pg if o.pg is not None else "?"
        v = views.setdefault(pg, _PgView(pg, {}))
        m = v.by_rank.setdefault(o.rank, {})
        m[o.seq] = _merge(m[o.seq], o) if o.seq in m else o
    # a log line without pg ("?") is the same collective as one with a pg when a rank has both
    if "?" in views and len(views) == 2:
        other = next(p for p in views if p != "?")
        for rank, m in views.pop("?").by_rank.items():
            tgt = views[other].by_rank.setdefault(rank, {})
            for s, o in m.items():
                tgt[s] = _merge(tgt[s], o) if s in tgt else o
    return views


def _signatures(view: _PgView, seq: int, ranks: Sequence[int]) -> dict[int, tuple]:
    """What each voting rank did at `seq`; fields some present rank lacks are left out."""
    present = {r: view.by_rank[r][seq] for r in ranks if seq in view.by_rank[r]}
    use_op = all(o.op is not None for o in present.values())
    kinds = {(o.shape or "").startswith("numel") for o in present.values()}
    use_shape = all(o.shape is not None for o in present.values()) and len(kinds) == 1
    sigs: dict[int, tuple] = {}
    for r in ranks:
        m = view.by_rank[r]
        if seq in m:
            o = m[seq]
            sigs[r] = (o.op if use_op else "*", o.shape if use_shape else None)
        elif max(m) < seq:
            sigs[r] = _NOT_ISSUED
    return sigs


def _agreed_prefix(view: _PgView, upto: int) -> list[tuple]:
    out = []
    for s in view.seqs():
        if s >= upto:
            break
        sigs = {(o.op, o.shape) for m in view.by_rank.values() if s in m for o in (m[s],)}
        if len(sigs) == 1:
            out.append(next(iter(sigs)))
    return out


def _predict(history: list[tuple]) -> tuple | None:
    """The next signature of a repeating script: what followed the longest recurring suffix."""
    n = len(history)
    for length in range(min(16, n - 1), 0, -1):
        ctx = history[n - length:]
        nxt = Counter(history[i] for i in range(length, n)
                      if history[i - length:i] == ctx)
        if nxt:
            (best, c), *rest = sorted(nxt.items(), key=lambda kv: (-kv[1], repr(kv[0])))
            if not rest or rest[0][1] < c:
                return best
            return None
    return None


@dataclass(frozen=True)
class _Finding:
    pg: str
    seq: int
    groups: dict[tuple, tuple[int, ...]]
    script: tuple | None  # the winning signature, None when undecided
    reason: str


def _decide(view: _PgView, views: Mapping[str, _PgView], familiar: set[tuple]) -> _Finding | None:
    ranks = sorted(view.by_rank)
    for seq in view.seqs():
        sigs = _signatures(view, seq, ranks)
        if len(set(sigs.values())) <= 1 or not any(s != _NOT_ISSUED for s in sigs.values()):
            continue
        groups: dict[tuple, list[int]] = defaultdict(list)
        for r, sig in sorted(sigs.items()):
            groups[sig].append(r)
        gs = {k: tuple(v) for k, v in groups.items()}
        order = sorted(gs.items(), key=lambda kv: (-len(kv[1]), repr(kv[0])))
        top = len(order[0][1])
        tied = [sig for sig, rs in order if len(rs) == top]
        if len(tied) == 1:
            if tied[0] == _NOT_ISSUED:
                # most ranks never issued it: the issuers are ahead, unless the script says
                # this collective was due next (then the many are behind: nobody singled out)
                pred = _predict(_agreed_prefix(view, seq))
                issued = [sig for sig in gs if sig != _NOT_ISSUED]
                if pred is not None and any(sig[0] in (pred[0], "*") and
                                            (sig[1] is None or sig[1] == pred[1])
                                            for sig in issued):
                    return _Finding(view.pg, seq, gs, None,
                                    f"{top} of {len(sigs)} ranks never issued it, yet the "
                                    f"script predicts {_sig_text(pred)} next, as the others did")
            return _Finding(view.pg, seq, gs, tied[0],
                            f"{top} of {len(sigs)} ranks did the same")
        # a tie: ask the script (what the ranks agreed on before) which side is on it
        pred = _predict(_agreed_prefix(view, seq))
        if pred is None and view.pg.startswith("detail:") and view.pg[7:] in views:
            linked = views[view.pg[7:]]
            pred = _predict(_agreed_prefix(linked, max(linked.seqs(), default=0) + 1))
        if pred is not None:
            match = [sig for sig in tied if sig[0] in (pred[0], "*") and
                     (sig[1] is None or sig[1] == pred[1])]
            if len(match) == 1:
                return _Finding(view.pg, seq, gs, match[0],
                                f"a tie, broken by the script: the collectives the ranks agreed "
                                f"on before predict {_sig_text(pred)} next")
            if not match and _NOT_ISSUED in tied:
                # the issued collective is not the script's next one: the issuers are ahead
                return _Finding(view.pg, seq, gs, _NOT_ISSUED,
                                f"a tie, broken by the script: it predicts {_sig_text(pred)} "
                                "next, which the issuing ranks did not issue")
        seen = [sig for sig in tied if sig in familiar]
        if len(seen) == 1 and _NOT_ISSUED not in tied:
            return _Finding(view.pg, seq, gs, seen[0],
                            f"a tie, broken by history: only {_sig_text(seen[0])} was ever "
                            "issued before")
        return _Finding(view.pg, seq, gs, None,
                        f"ranks split evenly ({', '.join(_sig_text(s) for s in tied)}) and "
                        "nothing earlier says which side follows the script")
    return None


def _familiar(views: Mapping[str, _PgView]) -> set[tuple]:
    out: set[tuple] = set()
    for v in views.values():
        for m in v.by_rank.values():
            for o in m.values():
                if o.state == "completed":
                    out.add((o.op, o.shape))
    return out


def _last(view: _PgView, rank: int) -> CollectiveObs | None:
    m = view.by_rank.get(rank)
    return m[max(m)] if m else None


def analyze(observations: Sequence[CollectiveObs], *, world_size: int | None = None,
            known_ranks: Iterable[int] = (), hosts: Mapping[int, str] | None = None,
            where: Mapping[int, str] | None = None) -> HangVerdict:
    """Name the rank(s) off-script, or say honestly that nothing singles anyone out.

    `where` (optional): what a rank was doing outside any collective, e.g. the innermost
    frame of its py-spy stack; shown for silent ranks, never used to decide.
    """
    where = dict(where or {})
    from triage.parse.collectives import canonical_op

    canon = [o if o.op == canonical_op(o.op) else replace(o, op=canonical_op(o.op))
             for o in observations]  # "ALLREDUCE" from one source, "all_reduce" from another
    obs = sorted(canon, key=lambda o: (
        o.rank, o.pg or "", -1 if o.seq is None else o.seq, o.state, o.op or "", o.shape or "",
        o.source.path if o.source else "", o.source.line if o.source else 0,
        -1 if o.reported_by is None else o.reported_by))
    host_of: dict[int, str] = {}
    for o in obs:
        if o.host and o.reported_by in (None, o.rank):
            host_of.setdefault(o.rank, o.host)
    host_of.update(hosts or {})
    seen_ranks = {o.rank for o in obs}
    known = set(known_ranks) | seen_ranks | (set(range(world_size)) if world_size else set())
    views = _views(obs)
    familiar = _familiar(views)
    # look at the widest process group first; ties by name
    order = sorted(views.values(), key=lambda v: (-len(v.by_rank), v.pg.startswith("detail:"),
                                                  v.pg))
    finding = None
    for v in order:
        finding = _decide(v, views, familiar)
        if finding is not None and finding.script is not None:
            break
    else:
        finding = next((f for f in (_decide(v, views, familiar) for v in order) if f), None)

    def state_for(r: int) -> RankHangState:
        # the rank's latest evidence: in the pg of the finding, else anywhere
        pv = views.get(finding.pg) if finding else (order[0] if order else None)
        o = _last(pv, r) if pv else None
        if o is None:
            cands = [x for x in obs if x.rank == r and x.reported_by in (None, r)]
            o = max(cands, key=lambda x: (x.seq is not None, x.seq or 0,
                                          _STATE_RANK.get(x.state, 0))) if cands else None
        if o is None:
            return RankHangState(RankStatus.MISSING.value, None, None, host=host_of.get(r))
        return RankHangState(o.state, o.seq, o.op, o.shape, host_of.get(r), o.source, o.where)

    ranks = {r: state_for(r) for r in sorted(known)}
    pending = any(o.state in PENDING_STATES for o in obs)

    if finding is not None and finding.script is not None:
        culprits = tuple(sorted(r for sig, rs in finding.groups.items()
                                if sig != finding.script for r in rs))
        script_txt = _sig_text(finding.script)
        parts = []
        for sig, rs in sorted(finding.groups.items(), key=lambda kv: kv[1]):
            if sig == finding.script:
                role = RankStatus.BEHIND if sig == _NOT_ISSUED else RankStatus.WAITING
            elif sig == _NOT_ISSUED:
                role = RankStatus.BEHIND
            elif finding.script == _NOT_ISSUED:
                role = RankStatus.AHEAD
            else:
                role = RankStatus.OFF_SCRIPT
            for r in rs:
                base = ranks[r]
                last = _last(views[finding.pg], r)
                ranks[r] = RankHangState(role.value, last.seq if last else base.last_seq,
                                         last.op if last else base.op,
                                         last.shape if last else base.shape,
                                         base.host, last.source if last else base.evidence,
                                         last.where if last else base.where)
            if sig != finding.script:
                what = _sig_text(sig)
                first = views[finding.pg].by_rank[rs[0]].get(finding.seq)
                at = f" at {first.where}" if first is not None and first.where else ""
                parts.append(f"{_ranks_text(rs)} did {what}{at}")
        op = finding.script[0] if finding.script != _NOT_ISSUED else next(
            (s[0] for s in finding.groups if s != _NOT_ISSUED), None)
        why = (f"process group {finding.pg}, collective #{finding.seq}: "
               f"{'; '.join(parts)}, while {_ranks_text(finding.groups[finding.script])} "
               f"did {script_txt} ({finding.reason}).")
        return HangVerdict(Verdict.CULPRIT.value, culprits,
                           tuple(sorted({host_of[r] for r in culprits if r in host_of})),
                           finding.pg, finding.seq, op if op != "*" else None, ranks, why)

    # every rank agrees wherever they overlap: look for ranks that said nothing at all
    reporting = {o.rank for o in obs if o.state in EVIDENT_STATES and o.reported_by in (None, o.rank)}
    silent = sorted(known - seen_ranks)
    if silent and pending and reporting and len(silent) < len(reporting) and \
            len(reporting) + len(silent) == len(known):
        for r in silent:
            ranks[r] = RankHangState(RankStatus.SILENT.value, None, None, host=host_of.get(r),
                                     where=where.get(r))
        pv = order[0] if order else None
        lasts = [o for r in sorted(reporting) for o in ([_last(pv, r)] if pv else []) if o]
        seqs = {o.seq for o in lasts}
        seq = seqs.pop() if len(seqs) == 1 and len(lasts) == len(reporting) else None
        ops = {ranks[r].op for r in reporting}
        op = ops.pop() if len(ops) == 1 else None
        at = (f" in collective #{seq}" if seq is not None else "") + (f" ({op})" if op else "")
        why = (f"{_ranks_text(reporting)} report waiting, a timeout or a failed collective{at}, "
               f"while {_ranks_text(silent)} never reported any collective: the rank(s) that "
               "never joined.")
        doing = [f"rank {r} was in {where[r]}" for r in silent if r in where]
        if doing:
            why = why[:-1] + f" ({'; '.join(doing)})."
        return HangVerdict(Verdict.CULPRIT.value, tuple(silent),
                           tuple(sorted({host_of[r] for r in silent if r in host_of})),
                           pv.pg if pv and seq is not None else None, seq, op, ranks, why)

    if finding is not None:
        why = (f"process group {finding.pg}, collective #{finding.seq}: {finding.reason}; "
               "no rank can be singled out.")
        return HangVerdict(Verdict.UNDECIDED.value, (), (), finding.pg, finding.seq, None,
                           ranks, why)
    if not obs:
        return HangVerdict(Verdict.UNDECIDED.value, (), (), None, None, None, ranks,
                           "no collective was observed in the inputs.")
    if not pending:
        return HangVerdict(Verdict.NO_HANG.value, (), (), None, None, None, ranks,
                           "no rank reports a timeout, a mismatch or an unfinished collective, "
                           "and the ranks agree on every collective.")
    pv = order[0] if order else None
    if pv is None:
        return HangVerdict(Verdict.UNDECIDED.value, (), (), None, None, None, ranks,
                           f"{_ranks_text(seen_ranks)} report timeouts or failed collectives, "
                           "but no line says which collective (gloo does not print it) and no "
                           "rank is silent; flight-recorder dumps would tell.")
    lasts = sorted({o.seq for r in seen_ranks for o in ([_last(pv, r)] if pv else []) if o})
    where = f" (all at collective #{lasts[0]} of process group {pv.pg})" if pv and len(lasts) == 1 \
        else ""
    return HangVerdict(Verdict.UNDECIDED.value, (), (), pv.pg if pv and where else None,
                       lasts[0] if where else None, None, ranks,
                       f"every rank that left evidence is in the same place{where} and agrees "
                       "with the others; nothing singles out a culprit.")


# ---------------------------------------------------------------------------------------------
# reading a run folder (dumps and logs side by side)

_RANK_FILE = re.compile(r"(?:^|[^a-z])rank[_-]?(?P<r>\d+)", re.I)


_ATTEMPT_DIR = re.compile(r"attempt_\d+")


def _rank_from_path(path: Path) -> int | None:
    """`rank3.log`, `trace_rank_3`; or torchrun's `--log-dir` tree `.../attempt_0/3/stderr.log`
    (a local rank: the global one on a single node)."""
    m = _RANK_FILE.search(path.name)
    if m:
        return int(m.group("r"))
    parent = path.parent
    if parent.name.isdigit() and _ATTEMPT_DIR.fullmatch(parent.parent.name):
        return int(parent.name)
    return None


def read_log_observations(path: Path
                          ) -> tuple[list[CollectiveObs], set[int], dict[int, str], dict[int, str]]:
    """The small log reader of `analyze_paths`: observations, the ranks a log shows, their
    hosts, and where py-spy found each rank's main thread.

    Kept apart so the project scanner (triage.scan) can replace it. It peels launcher prefixes
    with `triage.parse.prefix.split_prefix` (`[rank3]:`, `[default3]:`, `3: `, `host: ...`),
    falls back to a rank in the file name (`rank3.log`, `trace_rank_3`), and hands each line
    to `triage.parse.collectives.observe_line_all`. Lines of unknown rank are skipped.
    """
    from triage.parse.collectives import PySpyTracker, observe_line_all
    from triage.parse.prefix import split_prefix, strip_ansi

    spy = PySpyTracker()

    file_rank = _rank_from_path(path)
    found: list[CollectiveObs] = []
    ranks: set[int] = set() if file_rank is None else {file_rank}
    hosts: dict[int, str] = {}
    try:
        fh = open(path, "r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", where=str(path),
                         hint="check the path and its permissions") from None
    with fh:
        for n, line in enumerate(fh, 1):
            text = strip_ansi(line.rstrip("\r\n"))
            pre = split_prefix(text)
            rank = pre.rank if pre.rank is not None else file_rank
            if rank is None:
                continue
            if pre.rank is not None:
                ranks.add(rank)
            if pre.host:
                hosts.setdefault(rank, pre.host)
            body = text[pre.offset:]
            spy.feed(body, rank)
            found.extend(observe_line_all(body, rank=rank, source=SourceRef(str(path), n),
                                          host=pre.host))
    return found, ranks, hosts, spy.where


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs.sort()
                out.extend(Path(root) / n for n in sorted(names))
        elif p.exists():
            out.append(p)
        else:
            raise InputError("no such file or folder", where=str(p),
                             hint="give a run folder, log files or flight-recorder dumps")
    return sorted(set(out))


def analyze_paths(paths: Sequence[Path], *, world_size: int | None = None) -> HangVerdict:
    """`triage hang PATH...`: find dumps and logs (in folders too) and analyse them together."""
    from triage.parse.flight_recorder import load_dump, looks_like_dump, observations_from_dumps
    from triage.errors import TriageError

    if not paths:
        raise InputError("no input given", hint="give a run folder, log files or dumps")
    observations: list[CollectiveObs] = []
    known: set[int] = set()
    warnings: list[str] = []
    hosts: dict[int, str] = {}
    where: dict[int, str] = {}
    dumps = []
    for f in _files(paths):
        try:
            with open(f, "rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            warnings.append(f"{f}: cannot read ({exc.strerror or exc}); skipped")
            continue
        if looks_like_dump(head):
            try:
                dumps.append(load_dump(f))
            except TriageError as exc:
                warnings.append(f"{exc}; skipped")
            continue
        if b"\x00" in head:
            continue  # some other binary file
        obs, ranks, log_hosts, log_where = read_log_observations(f)
        observations.extend(obs)
        known |= ranks
        for r, h in log_hosts.items():
            hosts.setdefault(r, h)
        for r, w in log_where.items():
            where.setdefault(r, w)
    if not dumps and not known and not observations:
        if warnings:
            raise InputError(warnings[0].removesuffix("; skipped"),
                             hint="no other dump or rank log was found")
        raise InputError("no flight-recorder dump and no rank log found",
                         where=", ".join(str(p) for p in paths),
                         hint="dumps are the files written to TORCH_FR_DUMP_TEMP_FILE<rank>; "
                         "logs need [rankN]: prefixes or a rank in the file name")
    seen_dump_ranks: dict[int, str] = {}
    for d in sorted(dumps, key=lambda d: (d.rank, d.path)):
        if d.rank in seen_dump_ranks:
            warnings.append(f"{d.path}: a second dump for rank {d.rank} "
                            f"(first: {seen_dump_ranks[d.rank]}); skipped")
            continue
        seen_dump_ranks[d.rank] = d.path
    dumps = [d for d in dumps if seen_dump_ranks.get(d.rank) == d.path]
    observations.extend(observations_from_dumps(dumps))
    known |= set(seen_dump_ranks)
    verdict = analyze(observations, world_size=world_size, known_ranks=known, hosts=hosts,
                      where=where)
    return HangVerdict(**{**verdict.__dict__, "warnings": tuple(warnings)})
