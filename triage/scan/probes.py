"""Probe records as scan evidence: silent divergence between ranks, found before any log line.

A reduction that returns a wrong sum on one rank leaves nothing in the logs: the replicas drift
apart silently, and the first line that says anything is a NaN or a desync on some *other* rank,
steps later. The probe (triage.probe) records every rank's parameter checksum each step, so the
first step where they disagree, and the odd rank, are in its records. `triage scan` reads the
probe files among its inputs (`*.jsonl` in a folder named like `probe`, or any `.jsonl`
whose first 64 KB hold a `triage.probe/1` record: triage.ingest.discover) and, when
the ranks of a run disagree, adds one failure: rule `numerics.rank_divergence` (family `other`,
root role), on the odd rank, at the first step they disagree, with the record's own time. It
then competes for root cause with the logs' failures like any other (earliest first), and the
numeric failures and desyncs that follow it are its symptoms (triage.classify.roles).

- One failure per folder of probe files (one run); records of several folders are never mixed.
- Sharded parameters (FSDP, ZeRO) differ across ranks by design: checksums that disagree with no
  majority from the very first record are not taken as a divergence (a warning says so).
- Only a checksum *disagreement* makes a failure. A non-finite value the probe counted is
  reported by the training loop's own NaN check in the logs; `triage diverge` shows both.
- The failure quotes the odd rank's record line verbatim (its source is that line of that
  file); its template is fixed, so every run's divergence has one signature.
- Untrusted input: lines are read with a length cap (longer ones are skipped whole and counted
  as unreadable), parsed as JSON only, never evaluated; unreadable lines give one warning a file.
"""

from __future__ import annotations

import calendar
import os
from collections import defaultdict
from datetime import datetime
from typing import Sequence

from triage.analyze.diverge import (ProbeDivergence, ProbeRecord, analyse, read_lines,
                                    read_records)
from triage.classify.signature import signature_id
from triage.ingest.discover import InputSpec
from triage.scan.worker import Occ

RULE = "numerics.rank_divergence"
FAMILY = "other"
TEMPLATE = "probe records: parameter checksums differ across ranks at step <NUM>"


def _read(spec: InputSpec) -> tuple[list[ProbeRecord], list[ProbeDivergence], int, list[str]]:
    """Records of one file, lines read, warnings."""
    try:
        fh = open(spec.real or spec.path, "rb")
    except OSError as exc:
        return [], [], 0, [f"{spec.path}: cannot open ({exc.strerror or exc}); skipped"]
    with fh:
        records, reported, n, bad, first_bad = read_records(fh, spec.path)
    warnings = [f"{spec.path}: skipped {bad} unreadable probe line(s), first at line {first_bad}"] \
        if bad else []
    return records, reported, n, warnings


def _line_at(spec: InputSpec, line_no: int) -> str:
    """Line `line_no` of a probe file, verbatim (read again: records are not kept as text)."""
    try:
        with open(spec.real or spec.path, "rb") as fh:
            for n, text in read_lines(fh):
                if n == line_no:
                    return (text or "").rstrip("\r\n")
    except OSError:
        pass
    return ""


def _local_stamp(t: float | None) -> tuple[str | None, float | None]:
    """(ISO text, time key) of an epoch time as the host's wall clock, the way log lines state
    their time (triage.parse.timestamps keys a wall-clock stamp as if it were UTC)."""
    if t is None or not (0 <= t < 32503680000):  # year 3000
        return None, None
    dt = datetime.fromtimestamp(t)
    key = calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    return dt.isoformat(timespec="microseconds"), key


def probe_occs(specs: Sequence[InputSpec]) -> tuple[list[Occ], dict[int, int], list[str]]:
    """(one Occ per run whose ranks' checksums disagree, lines read per input index, warnings)."""
    folders: dict[str, list[InputSpec]] = defaultdict(list)
    for s in specs:
        folders[os.path.dirname(s.path)].append(s)
    occs: list[Occ] = []
    lines: dict[int, int] = {}
    warnings: list[str] = []
    for folder, group in folders.items():
        records: list[ProbeRecord] = []
        reported: list[ProbeDivergence] = []
        index_of: dict[str, InputSpec] = {}
        for s in group:
            recs, rep, n, warns = _read(s)
            records += recs
            reported += rep
            lines[s.index] = n
            warnings += warns
            index_of[s.path] = s
        if not records:
            continue
        res = analyse(records, reported)
        warnings += [f"{folder or '.'}: {w}" for w in res.warnings]
        if res.first_mismatch_step is None or res.first_mismatch_step != res.first_bad_step:
            continue
        step = res.first_bad_step
        if not res.majority and step == res.first_step:
            # No majority from the first record on: sharded parameters (FSDP, ZeRO) differ by
            # design, and a tie there cannot say who is wrong. Not evidence of a divergence.
            warnings.append(f"{folder or '.'}: probe checksums disagree with no majority from "
                            f"the first recorded step ({step}): sharded parameters? not used "
                            "as evidence (triage diverge shows the records)")
            continue
        odd = [r for g in res.groups for r in g if r not in res.majority] if res.majority else []
        rank = odd[0] if odd else None
        at_step = [r for r in res.window if r.step == step]
        quoted = next((r for r in at_step if r.rank == rank), None) or \
            min(at_step, key=lambda r: r.rank)
        path, _, line_no = quoted.source.rpartition(":")
        spec = index_of[path]
        iso, key = _local_stamp(quoted.time)
        groups = " | ".join(",".join(map(str, g)) for g in res.groups)
        fields = {"step": str(step), "groups": groups, "probe": folder or "."}
        if odd:
            fields["odd_ranks"] = ",".join(map(str, odd))
            fields["majority"] = ",".join(map(str, res.majority))
        occs.append(Occ(
            signature_id(FAMILY, RULE, TEMPLATE), FAMILY, RULE, "root", TEMPLATE, rank,
            quoted.host, step, True, iso, key, spec.index, 0, int(line_no),
            _line_at(spec, int(line_no))[:8192], fields, (), False))
    return occs, lines, warnings
