"""`--jobs 1`, `--jobs 2` (with large files split into pieces) and a Dask cluster agree exactly.

Small chunk and piece sizes force every boundary case on a few MB: pieces that start mid-line,
tracebacks and timestamps that must be read from before a piece, steps resolved across pieces.
"""

from __future__ import annotations

import gzip
import json
import random

import pytest

import triage.scan as scanmod
import triage.scan.worker as worker
from triage.ingest.discover import discover
from triage.scan import scan


def _write_log(path, ranks=16, steps=400, seed=7):
    rng = random.Random(seed)
    lines = []
    first_error = None
    for step in range(1, steps + 1):
        for r in range(ranks):
            if rng.random() < 0.3:
                lines.append(f"[rank{r}]: 2026-11-23 01:{step // 60 % 60:02d}:{step % 60:02d},{r:03d} "
                             f"INFO train: step {step} | loss {rng.random():.4f}")
            else:
                lines.append(f"[rank{r}]: node-{r // 8}:{100 + r}:{200 + r} [{r % 8}] NCCL INFO "
                             f"Channel {rng.randrange(16):02d}/0 : {r}[{r}] -> {(r + 1) % ranks}")
        if step % 97 == 0:  # data errors on random ranks: the first one is the root cause
            r = rng.randrange(ranks)
            first_error = first_error if first_error is not None else (r, step)
            lines += [f"[rank{r}]: Traceback (most recent call last):",
                      f'[rank{r}]:   File "/w/train.py", line {step}, in step_fn',
                      f"[rank{r}]:     batch = next(it)",
                      f"[rank{r}]: ValueError: corrupt record {step} in shard {r}"]
    culprit = 5
    lines += [f"[rank{culprit}]: RuntimeError: CUDA error: an illegal memory access was encountered"]
    for r in range(ranks):
        if r != culprit:
            lines.append(f"[rank{r}]:[E1123 02:00:00.123456 ProcessGroupNCCL.cpp:616] [Rank {r}] "
                         f"Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1201, "
                         f"OpType=ALLREDUCE, NumelIn=4096, NumelOut=4096, Timeout(ms)=600000) ran "
                         f"for 600021 milliseconds before timing out.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, first_error  # first_error: (rank, step) of the first data error


def _per_rank_texts(tmp_path) -> dict[int, str]:
    """The console of `_write_log` (8 ranks) split into per-rank texts without prefixes."""
    src = _write_log(tmp_path / "all.log", ranks=8, steps=200)[0].read_text().splitlines()
    per: dict[int, list[str]] = {}
    for line in src:
        r = int(line[5:line.index("]")])
        per.setdefault(r, []).append(line.split("]: ", 1)[1] if "]: " in line else line)
    return {r: "\n".join(ls) + "\n" for r, ls in per.items()}


def _norm(result):
    d = result.to_json()
    d["stats"].pop("seconds")
    return json.dumps(d, sort_keys=True)


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(worker, "CHUNK_SIZE", 64 << 10)
    monkeypatch.setattr(worker, "HISTORY", 16 << 10)
    monkeypatch.setattr(scanmod, "SPLIT_MIN", 48 << 10)
    monkeypatch.setattr(scanmod, "PIECE_TARGET", 64 << 10)
    monkeypatch.setattr(scanmod, "SERIAL_BELOW", 0)
    monkeypatch.setattr(scanmod, "UNIT_BYTES", 512 << 10)


def test_jobs_1_and_2_identical_on_split_file(tmp_path, small_pieces):
    log, first_error = _write_log(tmp_path / "console.log")
    assert log.stat().st_size > 4 * scanmod.SPLIT_MIN  # really split into pieces
    units = scanmod.plan(discover([str(log)])[0], 2)
    assert len(units) >= 5
    one = scan([log], jobs=1)
    two = scan([log], jobs=2)
    assert _norm(one) == _norm(two)
    # and the answer is right
    rc = one.root_cause
    assert (rc.rank, rc.family) == (first_error[0], "python_exception")
    assert rc.frames[-1].line == first_error[1]  # the traceback of *that* error
    assert any(f.family == "cuda_illegal_access" and f.rank == 5 for f in one.failures)
    lines = log.read_text().splitlines()
    assert lines[rc.source.line - 1] == rc.message
    for f in one.failures:
        assert lines[f.source.line - 1].endswith(f.message.split("]: ", 1)[-1])
    assert one.stats.lines == len(lines)


def test_chunk_size_does_not_change_answers(tmp_path, monkeypatch):
    log, _ = _write_log(tmp_path / "console.log", ranks=8, steps=300)
    big = _norm(scan([log], jobs=1))
    monkeypatch.setattr(worker, "CHUNK_SIZE", 4096)
    small = _norm(scan([log], jobs=1))
    assert big == small


def test_many_files_and_gz_in_parallel(tmp_path, small_pieces):
    d = tmp_path / "ranks"
    d.mkdir()
    for r, text in _per_rank_texts(tmp_path).items():
        if r % 2:
            with gzip.open(d / f"rank_{r}.log.gz", "wt") as fh:
                fh.write(text)
        else:
            (d / f"rank_{r}.log").write_text(text)
    one = scan([d], jobs=1)
    two = scan([d], jobs=2)
    assert _norm(one) == _norm(two)
    assert one.root_cause.family == "python_exception"
    assert {r.rank for r in one.ranks} == set(range(8))


def _full(result):
    """Everything a scan answers, for exact comparisons."""
    return _norm(result) + repr((result.ranks, result.occurrences, result.warnings,
                                 result.start_time, result.end_time, result.max_step))


def test_streaming_many_files_identical(tmp_path, small_pieces, monkeypatch):
    """Past STREAM_MIN files the workers start while the rest are still looked at: the same
    answers as --jobs 1, including a large file split into pieces, .gz, an error file, files
    that are skipped (binary, unreadable) and a warning in its place."""
    d = tmp_path / "run"
    (d / "sub").mkdir(parents=True)
    for r, text in _per_rank_texts(tmp_path).items():
        if r % 3 == 1:
            with gzip.open(d / f"rank_{r}.log.gz", "wt") as fh:
                fh.write(text)
        else:
            (d / ("sub" if r % 3 == 2 else "") / f"rank_{r}.log").write_text(text)
    _write_log(d / "console.log", ranks=8, steps=400)  # large enough to be split
    (d / "model.pt").write_bytes(b"\x00" * 100)
    (d / "error.json").write_text('{"message": {"message": "ValueError: bad"}}')
    locked = d / "rank_99.log"
    locked.write_text("x\n")
    locked.chmod(0)
    monkeypatch.setattr(scanmod, "STREAM_MIN", 1)
    one = scan([d], jobs=1)
    streamed = scan([d], jobs=2)
    assert _full(one) == _full(streamed)
    # what `triage scan --json` prints (inputs as rows) is the text of the plain object
    from triage.jsonout import dumps

    assert dumps(streamed.to_json(rows=True)) == json.dumps(streamed.to_json(), indent=2,
                                                             ensure_ascii=False)
    assert scanmod._streams(scanmod.expand([str(d)]), 2, None)
    assert {r.rank for r in one.ranks} >= set(range(8))


@pytest.mark.parametrize("block", [1, 3, 2048])
def test_streaming_blocks_and_files_taken_twice(tmp_path, small_pieces, monkeypatch, block):
    """Workers look at blocks of the listing: a file reached again under another name (a hard
    link, a symlink) in a later block is still taken once, where --jobs 1 takes it, and files
    big enough for their own units come back to be planned; the answers are those of --jobs 1."""
    d = tmp_path / "run"
    d.mkdir()
    for r, text in _per_rank_texts(tmp_path).items():
        (d / f"rank_{r}.log").write_text(text)
    _write_log(d / "console.log", ranks=8, steps=400)  # split into pieces
    (d / "zz_link_0.log").hardlink_to(d / "rank_0.log")  # listed last: a later block
    (d / "zz_sym_3.log").symlink_to(d / "rank_3.log")
    (d / "a_copy.log").hardlink_to(d / "rank_5.log")  # listed first: rank_5.log is the copy
    (d / "notes.json").write_text("{}")  # not an input: a gap in the numbering
    monkeypatch.setattr(scanmod, "STREAM_MIN", 1)
    monkeypatch.setattr(scanmod, "BLOCK_ITEMS", block)
    one = scan([d], jobs=1)
    streamed = scan([d], jobs=2)
    assert _full(one) == _full(streamed)
    paths = [i.path for i in streamed.inputs]
    assert not any(p.endswith(("zz_link_0.log", "zz_sym_3.log", "rank_5.log")) for p in paths)
    assert any(p.endswith("a_copy.log") for p in paths)


def test_dask_local_cluster_identical(tmp_path):
    distributed = pytest.importorskip("distributed")
    log, _ = _write_log(tmp_path / "console.log", ranks=8, steps=200)
    expected = _norm(scan([log], jobs=1))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        got = _norm(scan([log], dask_scheduler=cluster.scheduler_address))
    assert got == expected
