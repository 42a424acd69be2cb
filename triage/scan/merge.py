"""Merge piece results into one ScanResult: line numbers, steps, hosts, signatures, root cause.

Pieces arrive in any order (from processes or a Dask cluster); the merge sorts them by (input,
byte offset), so the result does not depend on how the work was split or scheduled.

Step at failure (DESIGN.md: the step the error states, else the last step that rank reported
before it), resolved in this order: the line's own step; the rank's last step line within the
lookback window before it; the last step any rank reported there (consoles where only rank 0
prints steps); the rank's last step in the tail of any input (per-rank stdout/stderr pairs); else
unknown. Every source is a fixed window of the file, so the answer does not depend on the split.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dataclasses import replace

from triage.classify.roles import choose_root, role_of
from triage.classify.signature import signature_id
from triage.ingest.discover import InputSpec
from triage.records import (Failure, InputInfo, LazyTuple, Occurrence, RankState, Role, ScanResult,
                            ScanStats, SignatureSummary, SourceRef)
from triage.scan.worker import Occ, PieceResult, fold_into


def merge(specs: Sequence[InputSpec], results: list[PieceResult], *, seconds: float,
          warnings: Sequence[str] = (), hang: Callable[..., Any] | None = None,
          probes: Sequence[InputSpec] = ()) -> ScanResult:
    """Merge piece results. Takes ownership of `results`: the list is emptied as its results are
    merged, so their per-piece tables are freed as the merged ones grow (peak memory).
    `probes`: probe record files (triage.scan.probes), read here; a divergence between ranks
    they show is one more failure."""
    results.sort(key=lambda r: (r.input_index, r.start))
    probe_occs: list[Occ] = []
    probe_lines: dict[int, int] = {}
    if probes:
        from triage.scan.probes import probe_occs as read_probes

        probe_occs, probe_lines, probe_warnings = read_probes(probes)
        warnings = list(warnings) + probe_warnings
        specs = sorted([*specs, *probes], key=lambda s: s.index)

    inputs: list[InputInfo] = []
    lines_total = bytes_total = 0

    # Line counts per input: a folded result (a batch of whole files) lists its files in
    # `parts`; a piece of a split file adds its lines after the earlier pieces' lines.
    n_inputs = max([s.index for s in specs], default=-1) + 1
    input_lines = [0] * n_inputs
    input_bytes = [0] * n_inputs
    for idx, nlines in probe_lines.items():
        input_lines[idx] = nlines
    for piece in results:
        if piece.parts:
            it = iter(piece.parts)  # flat: index, lines, bytes of each file
            for idx, nlines, nbytes in zip(it, it, it):
                input_lines[idx] += nlines
                input_bytes[idx] += nbytes
            continue
        line_base = input_lines[piece.input_index]
        if line_base:
            for occ in piece.occs.values():
                occ.line_rel += line_base
        input_lines[piece.input_index] = line_base + piece.lines
        input_bytes[piece.input_index] += piece.bytes
    acc = PieceResult(-1, 0)
    results.reverse()
    while results:  # popped as folded: each result's tables are freed as the merged ones grow
        fold_into(acc, results.pop())
    rank_last, hosts, exits, ranks_seen = acc.rank_steps, acc.hosts, acc.exits, acc.ranks
    world, max_step, merged = acc.world_size, acc.max_step, acc.occs
    all_warnings = list(warnings) + acc.warnings
    for spec in specs:
        nlines = input_lines[spec.index]
        size = spec.size if spec.size else input_bytes[spec.index]
        inputs.append(InputInfo(spec.path, size, nlines))
        lines_total += nlines
        bytes_total += size
    del input_lines, input_bytes

    for o in probe_occs:  # the host as the logs name it (the probe's own hostname may differ)
        if o.rank is not None and o.rank in hosts:
            o.host = hosts[o.rank]
    occs = list(merged.values()) + probe_occs
    for o in occs:
        if o.step is None and o.rank is not None:
            o.step = rank_last.get(o.rank)  # not within its lookback: the rank's last step
        if o.step is not None and (max_step is None or o.step > max_step):
            max_step = o.step
        if o.host is None and o.rank is not None:
            o.host = hosts.get(o.rank)
        if o.rank is not None:
            ranks_seen.add(o.rank)
    occs.sort(key=_first_key(occs))
    path_of = {s.index: s.path for s in specs}

    def hang_analysis():
        if hang is None:
            return None
        return hang(occs, ranks=sorted(ranks_seen), world_size=world, hosts=hosts,
                    path_of=path_of, exits=exits)

    verdict = choose_root(occs, hang_analysis=hang_analysis)

    def failure(o: Occ, role: str, why: str, family: str | None = None, rank=...) -> Failure:
        rk = o.rank if rank is ... else rank
        return Failure(
            family=family or o.family, rank=rk, host=o.host if rk == o.rank else hosts.get(rk),
            step=o.step if rk == o.rank else rank_last.get(rk, o.step), time=o.time,
            message=o.message, source=SourceRef(path_of[o.input_index], o.line_rel), role=role,
            signature=o.sig, playbook=o.rule, why=why, fields=dict(o.fields), frames=o.frames)

    root_failure = None
    root_sig = None
    extra_summary = None
    if verdict.root is not None:
        root_failure = failure(verdict.root, Role.ROOT.value, verdict.why, verdict.root_family,
                               verdict.root_rank)
        root_sig = verdict.root.sig
        if verdict.advice is not None:
            root_failure = replace(root_failure, playbook=verdict.advice)
        if verdict.synthetic:
            # A silent rank: the failure is inferred. It gets a signature of its own, and the
            # symptom line it quotes stays a symptom in the table.
            tmpl = f"rank <NUM> silent: {verdict.root_family} inferred from other ranks' {verdict.root.family}"
            root_sig = signature_id(verdict.root_family, None, tmpl)
            root_failure = replace(root_failure, signature=root_sig, fields={}, frames=())
            rr = verdict.root_rank
            extra_summary = SignatureSummary(
                id=root_sig, family=verdict.root_family, template=tmpl, count=1,
                ranks=(rr,) if rr is not None else (), hosts=(hosts[rr],) if rr in hosts else (),
                first_step=root_failure.step, playbook=root_failure.playbook)

    # Per signature: count, ranks, hosts, first step, and its representative (first) occurrence.
    sigs: dict[str, dict] = {}
    for o in occs:
        s = sigs.get(o.sig)
        if s is None:
            s = sigs[o.sig] = {"first": o, "count": 0, "ranks": set(), "hosts": set(), "steps": []}
        s["count"] += o.count
        if o.rank is not None:
            s["ranks"].add(o.rank)
        if o.host:
            s["hosts"].add(o.host)
        if o.step is not None:
            s["steps"].append(o.step)
    failures: list[Failure] = [root_failure] if extra_summary is not None else []
    for sig, s in sigs.items():
        rep = s["first"]
        if extra_summary is None and verdict.root is not None and sig == verdict.root.sig:
            failures.append(root_failure)
            continue
        role, why = role_of(rep, verdict)
        failures.append(failure(rep, role, why))
    summaries = ((extra_summary,) if extra_summary is not None else ()) + tuple(
        SignatureSummary(
            id=sig, family=s["first"].family, template=s["first"].template, count=s["count"],
            ranks=tuple(sorted(s["ranks"])), hosts=tuple(sorted(s["hosts"])),
            first_step=min(s["steps"]) if s["steps"] else None, playbook=s["first"].rule)
        for sig, s in sigs.items())
    # One record per (signature, rank) and per rank: built when read (the case store, the
    # report), not for a `--json` scan that never prints them.
    occurrences = LazyTuple(lambda: (
        Occurrence(o.sig, o.rank, o.host, o.step, o.time,
                   SourceRef(path_of[o.input_index], o.line_rel), o.message, o.count, o.frames)
        for o in occs))
    ranks = LazyTuple(lambda: (
        RankState(r, hosts.get(r), rank_last.get(r), exits.get(r, (None, False))[0])
        for r in sorted(ranks_seen)))
    return ScanResult(
        inputs=tuple(inputs), root_cause=root_failure, failures=tuple(failures),
        signatures=summaries, stats=ScanStats(lines_total, bytes_total, seconds), ranks=ranks,
        world_size=world, max_step=max_step, warnings=tuple(all_warnings), hang=verdict.hang,
        occurrences=occurrences, start_time=acc.first_stamp[1] if acc.first_stamp else None,
        end_time=acc.last_stamp[1] if acc.last_stamp else None)


def _first_key(occs: Sequence[Occ]):
    """Order of first occurrence: by time when every failure has one, else by position."""
    if occs and all(o.time_key is not None for o in occs):
        return lambda o: (o.time_key, o.input_index, o.offset)
    return lambda o: (o.input_index, o.offset)
