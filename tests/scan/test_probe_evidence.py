"""Probe records as scan evidence: a silent divergence between ranks is the root cause when it
comes first, on the odd rank, and the NaN it leads to elsewhere is its symptom."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import triage.scan as scanmod
from triage.scan import scan

T0 = time.mktime((2026, 11, 23, 1, 0, 0, 0, 0, -1))  # local wall clock, as the logs state it


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int(t % 1 * 1000):03d}"


def write_probe(folder, *, ranks=4, steps=12, odd=None, from_step=None, tie=False):
    """Per-rank probe files (triage.probe/1, the format triage.probe.Probe writes): rank `odd`
    (or ranks 2 and 3 with `tie`) holds other parameters from `from_step` on."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in range(ranks):
        with open(folder / f"rank{r}.jsonl", "w") as fh:
            for s in range(steps):
                bad = from_step is not None and s >= from_step and (
                    r == odd or (tie and r >= ranks // 2))
                fh.write(json.dumps({
                    "schema": "triage.probe/1", "kind": "step", "step": s, "rank": r,
                    "world_size": ranks, "host": f"node{r // 2}", "time": T0 + s + r * 0.01,
                    "loss": 2.0 - s * 0.01, "grad_norm": 0.3,
                    "param_checksum": f"c32:{(s * 7919 + (1000 if bad else 0)):08x}",
                    "numel": 6792, "nonfinite": {"loss": 0, "grads": 0, "params": 0}},
                    separators=(",", ":")) + "\n")


def write_console(path, *, ranks=4, steps=12, nan_rank=2, nan_step=9):
    """A torchrun console (rank-prefixed lines) that ends in a NaN on `nan_rank`."""
    lines = []
    for s in range(steps):
        for r in range(ranks):
            lines.append(f"[default{r}]:{_stamp(T0 + s + 0.5)} INFO step {s} loss 2.0")
        if s == nan_step:
            lines.append(f"[default{nan_rank}]:{_stamp(T0 + s + 0.6)} ERROR "
                         f"FloatingPointError: loss is nan at step {s} (rank {nan_rank})")
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _roles(result):
    return {(f.family, f.rank): f.role for f in result.failures}


def test_divergence_before_the_nan_is_the_root_on_the_odd_rank(tmp_path):
    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "probe", odd=1, from_step=3)
    r = scan([run], jobs=1)
    rc = r.root_cause
    assert (rc.rank, rc.step, rc.playbook, rc.family) == (1, 3, "numerics.rank_divergence", "other")
    assert rc.source.path.endswith(os.path.join("probe", "rank1.jsonl")) and rc.source.line == 4
    # the message is the odd rank's record, verbatim
    line = (run / "probe" / "rank1.jsonl").read_text().splitlines()[3]
    assert rc.message == line
    assert rc.time.startswith(_stamp(T0 + 3)[:19].replace(" ", "T"))
    assert "rank(s) 1 differ from rank(s) 0,2,3" in rc.why
    assert _roles(r)[("nonfinite", 2)] == "symptom"
    # the probe files are inputs, with their lines counted
    probe_inputs = [i for i in r.inputs if i.path.endswith(".jsonl")]
    assert len(probe_inputs) == 4 and all(i.lines == 12 for i in probe_inputs)


def test_agreeing_ranks_change_nothing(tmp_path):
    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "probe")
    r = scan([run], jobs=1)
    assert (r.root_cause.family, r.root_cause.rank, r.root_cause.step) == ("nonfinite", 2, 9)
    without = scan([run / "console.log"], jobs=1)
    assert [(f.signature, f.role) for f in r.failures] == \
        [(f.signature, f.role) for f in without.failures]


def test_a_tie_names_no_rank(tmp_path):
    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "probe", from_step=2, tie=True)
    rc = scan([run], jobs=1).root_cause
    assert rc.playbook == "numerics.rank_divergence" and rc.rank is None and rc.step == 2
    assert "no majority" in rc.why


def test_a_log_failure_before_the_divergence_stays_the_root(tmp_path):
    run = tmp_path / "run"
    write_console(run / "console.log", nan_rank=0, nan_step=2)
    write_probe(run / "probe", odd=3, from_step=6)
    r = scan([run], jobs=1)
    assert (r.root_cause.family, r.root_cause.rank) == ("nonfinite", 0)


def test_runs_are_not_mixed(tmp_path):
    """Two runs' probe folders in one scan: each run's ranks are compared among themselves."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_probe(a / "probe", odd=1, from_step=5)
    write_probe(b / "probe", odd=2, from_step=4, steps=8)
    r = scan([tmp_path], jobs=1)
    div = sorted((f.rank, f.step) for f in r.failures if f.playbook == "numerics.rank_divergence")
    occ = sorted((o.rank, o.step) for o in r.occurrences
                 if o.message.startswith('{"schema"'))
    assert occ == [(1, 5), (2, 4)]
    assert div == [(2, 4)]  # one signature: its first occurrence (the earlier one)
    assert r.root_cause.rank == 2 and r.root_cause.step == 4


def test_damaged_probe_files_scan_what_is_readable(tmp_path):
    run = tmp_path / "run"
    write_probe(run / "probe", odd=2, from_step=4)
    p = run / "probe" / "rank0.jsonl"
    good = p.read_bytes()
    p.write_bytes(b"\xff\xfe junk \x00\x00\n" + b"{" * 200_000 + b"\n" + b"[1, 2\n"
                  + good + b'{"schema": "triage.probe/1", "kind": "step", "step": "x"')
    r = scan([run], jobs=1)
    assert r.root_cause.rank == 2 and r.root_cause.step == 4
    assert any(str(p) in w and "unreadable probe line" in w for w in r.warnings)


def test_endless_probe_line_is_skipped_in_bounded_reads(tmp_path):
    from triage.analyze.diverge import LINE_MAX

    run = tmp_path / "run"
    write_probe(run / "probe", odd=1, from_step=1)
    p = run / "probe" / "rank3.jsonl"
    p.write_bytes(b"x" * (LINE_MAX * 5 + 7) + b"\n" + p.read_bytes())
    r = scan([run], jobs=1)
    assert r.root_cause.rank == 1
    assert [i.lines for i in r.inputs if i.path == str(p)] == [13]


def test_probe_folder_alone_and_jobs_agree(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "probe", odd=1, from_step=3)
    alone = scan([run / "probe"], jobs=1)
    assert alone.root_cause.rank == 1 and [f.role for f in alone.failures] == ["root"]
    assert alone.root_cause.host == "node0"  # no log names it: the probe's own hostname
    one = scan([run], jobs=1).to_json()
    monkeypatch.setattr(scanmod, "STREAM_MIN", 1)  # the streaming path, as with many files
    streamed = scan([run], jobs=2).to_json()
    for d in (one, streamed):
        d["stats"].pop("seconds")
    assert one == streamed


def test_cli_names_the_odd_rank(tmp_path):
    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "probe", odd=1, from_step=3)
    out = subprocess.run([sys.executable, "-m", "triage", "scan", "--json", str(run)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert (d["root_cause"]["rank"], d["root_cause"]["step"]) == (1, 3)
    assert d["root_cause"]["playbook"] == "numerics.rank_divergence"
    assert {(f["family"], f["role"]) for f in d["failures"]} >= {("other", "root"),
                                                                  ("nonfinite", "symptom")}
    text = subprocess.run([sys.executable, "-m", "triage", "scan", str(run)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    assert "probe records, step 3: rank(s) 1 hold other parameters than rank(s) 0,2,3" in text.stdout


@pytest.mark.parametrize("echo", ["nonfinite", "collective_mismatch", "loss_scale"])
def test_divergence_echoes_are_symptoms_and_others_are_not(echo):
    from types import SimpleNamespace as NS

    from triage.classify.roles import Verdict, role_of

    root = NS(rule="numerics.rank_divergence", step=3, rank=1, family="other")
    v = Verdict(root, "other", 1, "why")
    later = NS(rule="x", rule_role="root", chained=False, family=echo, rank=2, step=9,
               time=None)
    assert role_of(later, v)[0] == "symptom"
    earlier = NS(**{**vars(later), "step": 2})
    assert role_of(earlier, v)[0] == "independent"
    data = NS(**{**vars(later), "family": "python_exception"})
    assert role_of(data, v)[0] == "independent"


_RECORD = json.dumps({"schema": "triage.probe/1", "kind": "step", "step": 1, "rank": 0,
                      "param_checksum": "c32:00000001", "nonfinite": {"loss": 0}}).encode()


def _probe_chunks():
    from hypothesis import strategies as st

    return st.lists(st.one_of(
        st.binary(max_size=300), st.just(_RECORD), st.just(b"\n"), st.just(b"\r\n"),
        st.just(b'{"schema": "triage.probe/1", "kind": "step", "step": "x"}'),
        st.just(b'{"schema": "triage.probe/1", "kind": "divergence", "odd_ranks": [1, "a"]}'),
        st.just(b"[" * 5000), st.just(b'{"schema": "triage.probe/1", "step": 1e999}')),
        max_size=40)


def test_probe_reader_survives_any_bytes(tmp_path):
    """Whatever the bytes, reading a probe file never raises, counts the file's lines and
    keeps only well-formed records."""
    from hypothesis import HealthCheck, given, settings

    from triage.ingest.discover import InputSpec
    from triage.scan.probes import _read

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_probe_chunks())
    def check(chunks):
        data = b"".join(chunks)
        p = tmp_path / "probe" / "rank0.jsonl"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        records, _reported, n, warnings = _read(InputSpec(0, str(p), str(p), "probe", len(data)))
        assert n == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        assert all(r.step == 1 and r.rank == 0 for r in records)
        assert not warnings or str(p) in warnings[0]

    check()


def test_probe_files_are_known_by_their_records_wherever_they_are(tmp_path):
    """Probe records in a folder not named "probe" are found by their first line; other .jsonl
    files in a directory are not inputs, and a .jsonl named on the command line that is not
    probe records is read as a log, as before."""
    from triage.ingest.discover import KIND_LOG, KIND_PROBE, discover

    run = tmp_path / "run"
    write_console(run / "console.log")
    write_probe(run / "fingerprints", odd=1, from_step=3)
    (run / "metrics.jsonl").write_text('{"loss": 1.0}\n')
    r = scan([run], jobs=1)
    assert (r.root_cause.rank, r.root_cause.step) == (1, 3)
    assert not any(i.path.endswith("metrics.jsonl") for i in r.inputs)
    specs, _ = discover([str(run / "fingerprints" / "rank1.jsonl"), str(run / "metrics.jsonl")])
    assert [s.kind for s in specs] == [KIND_PROBE, KIND_LOG]


def test_sharded_parameters_are_not_a_divergence(tmp_path):
    """Every rank with its own checksum from the first record (FSDP/ZeRO shards): no failure
    from the records, a warning instead; the logs' NaN stays the root."""
    run = tmp_path / "run"
    write_console(run / "console.log")
    folder = run / "probe"
    write_probe(folder)
    for r in range(4):  # each rank's own shard
        p = folder / f"rank{r}.jsonl"
        p.write_text(p.read_text().replace('"param_checksum":"c32:', f'"param_checksum":"c32:{r}'))
    r = scan([run], jobs=1)
    assert (r.root_cause.family, r.root_cause.rank) == ("nonfinite", 2)
    assert any("sharded parameters?" in w for w in r.warnings)


def test_diverge_reads_an_endless_line_in_bounded_pieces(tmp_path):
    """`triage diverge` shares the bounded reader: a 40 MB line without a newline is one
    unreadable line, and the records after it still count."""
    import tracemalloc

    from triage.analyze.diverge import find_divergence

    write_probe(tmp_path / "probe", odd=2, from_step=5)
    p = tmp_path / "probe" / "rank0.jsonl"
    records = p.read_bytes()
    with open(p, "wb") as fh:
        fh.write(b"{" * (40 << 20) + b"\n")
        fh.write(records)
    tracemalloc.start()
    res = find_divergence([tmp_path / "probe"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (res.first_bad_step, res.bad_ranks) == (5, (2,))
    assert any("rank0.jsonl" in w and "line 1" in w for w in res.warnings)
    assert peak < 8 << 20  # never the whole line in memory
