"""First divergence between ranks, from probe records (`triage.probe/1`, see triage/probe.py).

`find_divergence(paths)` reads every probe record under the given files or directories and
answers: the first step at which the ranks of a data-parallel run stop agreeing bitwise on
their parameters, or at which any rank sees a non-finite loss, gradient or parameter; which
ranks; and the records around that step.

Rules
- Ranks agree at a step when every rank that recorded the step has the same parameter
  checksum. When they do not, the largest group of equal checksums is the majority and the
  others are the odd ranks; a tie (2 against 2) names no majority and every rank is listed in
  `groups` (the honest answer: the records cannot say who is wrong).
- A step is non-finite when any rank counted a NaN/Inf in its loss, gradients or parameters.
- The first bad step is the smallest step that is either. Both are reported separately too
  (`first_mismatch_step`, `first_nonfinite_step`), with the probe's own cross-rank check
  (`"kind": "divergence"` records), which may fire later than the first bad step because it only
  runs every K steps.
- Steps recorded by only some ranks are compared among those ranks (a rank that died stops
  recording; that is not a divergence). `last_step` says how far each rank got.

Input handling: lines that are not JSON objects or not probe records are skipped and counted in
`warnings` (a crashed rank may leave a torn last line); so is a line over 64 KB, read past in
bounded pieces (`read_lines`, shared with the scan's reader of probe records). Records from several runs must not be
mixed: directories holding probe files in more than one folder are refused with a hint. A
rank that recorded the same step twice (an appended restart) keeps its last record for that
step, and a warning says so.

Limits: the probe must record every step (`every=1`) for the first bad step to be exact;
with `every=K` it is exact to K steps. Sharded parameters legitimately differ across ranks.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

from triage.errors import InputError, UsageError

PROBE_SCHEMA = "triage.probe/1"
DIVERGE_SCHEMA = "triage.diverge/1"


@dataclass(frozen=True)
class ProbeRecord:
    step: int
    rank: int
    world_size: int | None
    host: str | None
    time: float | None
    loss: float | None
    grad_norm: float | None
    checksum: str | None
    nonfinite: tuple[int, int, int]  # loss, grads, params
    source: str  # "path:line"

    @property
    def is_nonfinite(self) -> bool:
        return any(self.nonfinite)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step, "rank": self.rank, "host": self.host, "time": self.time,
            "loss": _num_json(self.loss), "grad_norm": _num_json(self.grad_norm),
            "param_checksum": self.checksum,
            "nonfinite": {"loss": self.nonfinite[0], "grads": self.nonfinite[1],
                          "params": self.nonfinite[2]},
            "source": self.source,
        }


@dataclass(frozen=True)
class ProbeDivergence:
    """A divergence the probe itself reported with its cross-rank check."""

    step: int
    odd_ranks: tuple[int, ...]
    majority: tuple[int, ...]


@dataclass(frozen=True)
class DivergeResult:
    inputs: tuple[str, ...]
    ranks: tuple[int, ...]
    world_size: int | None
    records: int
    first_step: int | None
    last_step_seen: int | None
    first_bad_step: int | None
    kinds: tuple[str, ...]  # subset of ("mismatch", "nonfinite") at the first bad step
    bad_ranks: tuple[int, ...]  # odd ranks and/or non-finite ranks at the first bad step
    majority: tuple[int, ...]  # empty on a tie or when there is no mismatch
    groups: tuple[tuple[int, ...], ...]  # checksum groups at the first mismatch step
    first_mismatch_step: int | None
    first_nonfinite_step: int | None
    probe_reported: ProbeDivergence | None
    last_step: dict[int, int]  # rank -> last recorded step
    window: tuple[ProbeRecord, ...]  # records around the first bad step (or the last steps)
    warnings: tuple[str, ...] = ()

    def headline(self) -> str:
        """One plain-text sentence: what went wrong first, or that nothing did."""
        if self.first_bad_step is None:
            span = (f"steps {self.first_step}-{self.last_step_seen}"
                    if self.first_step is not None else "no steps")
            return (f"no divergence: ranks {_ranks(self.ranks)} agree bitwise and stay finite "
                    f"over {span}")
        parts = []
        if "mismatch" in self.kinds:
            if self.majority:
                odd = [r for g in self.groups for r in g if r not in self.majority]
                parts.append(f"parameter checksums disagree: rank(s) {_ranks(odd)} differ from "
                             f"rank(s) {_ranks(self.majority)}")
            else:
                parts.append("parameter checksums disagree with no majority: groups "
                             + " | ".join(_ranks(g) for g in self.groups))
        if "nonfinite" in self.kinds:
            nf = [r.rank for r in self.window if r.step == self.first_bad_step and r.is_nonfinite]
            parts.append(f"non-finite values on rank(s) {_ranks(sorted(set(nf)))}")
        return f"first bad step {self.first_bad_step}: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": DIVERGE_SCHEMA,
            "inputs": list(self.inputs),
            "ranks": list(self.ranks),
            "world_size": self.world_size,
            "records": self.records,
            "steps": {"first": self.first_step, "last": self.last_step_seen},
            "first_bad_step": self.first_bad_step,
            "kinds": list(self.kinds),
            "bad_ranks": list(self.bad_ranks),
            "majority": list(self.majority),
            "groups": [list(g) for g in self.groups],
            "first_mismatch_step": self.first_mismatch_step,
            "first_nonfinite_step": self.first_nonfinite_step,
            "probe_reported": None if self.probe_reported is None else {
                "step": self.probe_reported.step,
                "odd_ranks": list(self.probe_reported.odd_ranks),
                "majority": list(self.probe_reported.majority),
            },
            "last_step": {str(k): v for k, v in sorted(self.last_step.items())},
            "window": [r.to_json() for r in self.window],
            "summary": self.headline(),
            "warnings": list(self.warnings),
        }


def _ranks(ranks: Iterable[int]) -> str:
    return ",".join(str(r) for r in ranks)


def _num_json(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _num(value: Any) -> float | None:
    """Probe floats: JSON numbers, or the strings "nan", "inf", "-inf"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def parse_line(line: str, source: str) -> ProbeRecord | ProbeDivergence | None:
    """One JSONL line -> a record, or None for a line that is not a probe record.

    Raises ValueError for a probe record with missing or ill-typed fields."""
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict) or obj.get("schema") != PROBE_SCHEMA:
        return None
    kind = obj.get("kind", "step")
    if kind == "divergence":
        return ProbeDivergence(
            step=_int(obj["step"]),
            odd_ranks=tuple(_int(r) for r in obj.get("odd_ranks", ())),
            majority=tuple(_int(r) for r in obj.get("majority", ())),
        )
    if kind != "step":
        return None
    nf = obj.get("nonfinite") or {}
    if not isinstance(nf, dict):
        raise ValueError("nonfinite is not an object")
    checksum = obj.get("param_checksum")
    if checksum is not None and not isinstance(checksum, str):
        raise ValueError("param_checksum is not a string")
    world = obj.get("world_size")
    t = obj.get("time")
    host = obj.get("host")
    return ProbeRecord(
        step=_int(obj["step"]),
        rank=_int(obj["rank"]),
        world_size=_int(world) if world is not None else None,
        host=str(host) if host is not None else None,
        time=_num(t) if t is not None else None,
        loss=_num(obj.get("loss")),
        grad_norm=_num(obj.get("grad_norm")),
        checksum=checksum,
        nonfinite=(_int(nf.get("loss", 0)), _int(nf.get("grads", 0)), _int(nf.get("params", 0))),
        source=source,
    )


def probe_files(paths: Sequence[str | Path]) -> list[Path]:
    """The probe files named by ``paths`` (files, or directories searched recursively)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.jsonl") if f.is_file())
            if not found:
                raise InputError("no probe records (*.jsonl) in this directory", where=str(p),
                                 hint="point at the directory given to Probe(...), e.g. RUN/probe")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("no such file or directory", where=str(p))
    folders = sorted({str(f.parent) for f in files})
    if len(folders) > 1:
        raise UsageError(f"probe records of more than one run: {', '.join(folders[:4])}"
                         + (" ..." if len(folders) > 4 else ""),
                         hint="give one run's probe directory at a time")
    return files


LINE_MAX = 1 << 16  # a probe record is ~300 bytes; a longer line is not one


def read_lines(fh: BinaryIO) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each line of a binary file; text is None for a line longer than
    LINE_MAX, which is read past in bounded pieces, never held whole (untrusted input)."""
    n = 0
    while True:
        line = fh.readline(LINE_MAX + 1)
        if not line:
            return
        n += 1
        if len(line) > LINE_MAX and not line.endswith(b"\n"):
            while True:
                more = fh.readline(LINE_MAX)
                if not more or more.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, line.decode("utf-8", "replace")


def parse_or_none(text: str | None, source: str) -> ProbeRecord | ProbeDivergence | None | bool:
    """parse_line for read_lines' output: False for a line that is not readable (too long, not
    JSON, a probe record with missing or ill-typed fields)."""
    if text is None:
        return False
    try:
        return parse_line(text, source)
    except (ValueError, KeyError, TypeError, RecursionError):
        return False


def read_records(fh: BinaryIO, name: str) -> tuple[list[ProbeRecord], list[ProbeDivergence], int,
                                                   int, int | None]:
    """One open probe file: (records, reported divergences, lines read, unreadable lines, the
    first unreadable line's number). `name` goes into each record's source ("name:line")."""
    records: list[ProbeRecord] = []
    reported: list[ProbeDivergence] = []
    bad = n = 0
    first_bad = None
    for n, text in read_lines(fh):
        rec = parse_or_none(text, f"{name}:{n}")
        if rec is False:
            bad += 1
            first_bad = first_bad or n
        elif isinstance(rec, ProbeRecord):
            records.append(rec)
        elif isinstance(rec, ProbeDivergence):
            reported.append(rec)
    return records, reported, n, bad, first_bad


def load_records(files: Sequence[Path]) -> tuple[list[ProbeRecord], list[ProbeDivergence], list[str]]:
    records: list[ProbeRecord] = []
    reported: list[ProbeDivergence] = []
    warnings: list[str] = []
    for path in files:
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
        with fh:
            recs, rep, _n, bad, first_bad = read_records(fh, str(path))
        records += recs
        reported += rep
        if bad:
            warnings.append(f"{path}: skipped {bad} unreadable line(s), first at line {first_bad}")
    return records, reported, warnings


def analyse(records: Sequence[ProbeRecord], reported: Sequence[ProbeDivergence] = (), *,
            inputs: Sequence[str] = (), window: int = 2,
            warnings: Sequence[str] = ()) -> DivergeResult:
    """The first bad step of a set of probe records (see the module docstring for the rules)."""
    warnings = list(warnings)
    by_step: dict[int, dict[int, ProbeRecord]] = defaultdict(dict)
    dup = Counter()
    for rec in records:
        if rec.rank in by_step[rec.step]:
            dup[rec.rank] += 1
        by_step[rec.step][rec.rank] = rec
    for rank, n in sorted(dup.items()):
        warnings.append(f"rank {rank}: {n} step(s) recorded more than once; kept the last record")
    ranks = tuple(sorted({r.rank for r in records}))
    worlds = {r.world_size for r in records if r.world_size is not None}
    world_size = max(worlds) if worlds else None
    last_step: dict[int, int] = {}
    for rec in records:
        last_step[rec.rank] = max(last_step.get(rec.rank, rec.step), rec.step)

    first_mismatch = first_nonfinite = None
    groups_at: tuple[tuple[int, ...], ...] = ()
    majority_at: tuple[int, ...] = ()
    for step in sorted(by_step):
        recs = by_step[step]
        if first_nonfinite is None and any(r.is_nonfinite for r in recs.values()):
            first_nonfinite = step
        if first_mismatch is None:
            sums: dict[str, list[int]] = defaultdict(list)
            for rank, r in sorted(recs.items()):
                if r.checksum is not None:
                    sums[r.checksum].append(rank)
            if len(sums) > 1:
                first_mismatch = step
                groups_at = tuple(sorted((tuple(g) for g in sums.values()), key=lambda g: (-len(g), g)))
                sizes = sorted((len(g) for g in groups_at), reverse=True)
                majority_at = groups_at[0] if sizes[0] > sizes[1] else ()
        if first_mismatch is not None and first_nonfinite is not None:
            break

    candidates = [s for s in (first_mismatch, first_nonfinite) if s is not None]
    first_bad = min(candidates) if candidates else None
    kinds: list[str] = []
    bad: set[int] = set()
    if first_bad is not None:
        if first_mismatch == first_bad:
            kinds.append("mismatch")
            if majority_at:
                bad.update(r for g in groups_at for r in g if r not in majority_at)
            else:
                bad.update(r for g in groups_at for r in g)
        if first_nonfinite == first_bad:
            kinds.append("nonfinite")
            bad.update(r.rank for r in by_step[first_bad].values() if r.is_nonfinite)
    steps = sorted(by_step)
    centre = first_bad if first_bad is not None else (steps[-1] if steps else None)
    shown: list[ProbeRecord] = []
    if centre is not None:
        lo, hi = centre - window, centre + (window if first_bad is not None else 0)
        for step in steps:
            if lo <= step <= hi:
                shown.extend(by_step[step][r] for r in sorted(by_step[step]))
    first_reported = min(reported, key=lambda d: d.step) if reported else None
    return DivergeResult(
        inputs=tuple(inputs), ranks=ranks, world_size=world_size, records=len(records),
        first_step=steps[0] if steps else None, last_step_seen=steps[-1] if steps else None,
        first_bad_step=first_bad, kinds=tuple(kinds), bad_ranks=tuple(sorted(bad)),
        majority=majority_at if "mismatch" in kinds else (),
        groups=groups_at if "mismatch" in kinds else (),
        first_mismatch_step=first_mismatch, first_nonfinite_step=first_nonfinite,
        probe_reported=first_reported, last_step=last_step, window=tuple(shown),
        warnings=tuple(warnings),
    )


def find_divergence(paths: Sequence[str | Path], *, window: int = 2) -> DivergeResult:
    """Read probe records under ``paths`` (one run) and find its first bad step."""
    if window < 0:
        raise UsageError(f"window must be >= 0, got {window}")
    files = probe_files(paths)
    records, reported, warnings = load_records(files)
    if not records:
        raise InputError("no probe records found", where=", ".join(str(p) for p in paths),
                         hint="the files must hold triage.probe/1 lines written by triage.probe.Probe")
    return analyse(records, reported, inputs=[str(f) for f in files], window=window,
                   warnings=warnings)
