"""The compiled-rules cache: same prefilter hits as a fresh compile; damaged, foreign or
unwritable caches cost a compile, never a wrong answer or an error."""

from __future__ import annotations

import os

import pytest

from triage.classify.playbook import load_playbooks
from triage.scan import engine as E

hyperscan = pytest.importorskip("hyperscan")

TEXT = (b"step 12 | loss 2.3\n"
        b"[rank3]: RuntimeError: CUDA error: an illegal memory access was encountered\n"
        b"[E1123 02:26:51.123456 ProcessGroupNCCL.cpp:616] [Rank 5] Watchdog caught collective "
        b"operation timeout: WorkNCCL(SeqNum=141, OpType=ALLREDUCE, Timeout(ms)=600000) ran for "
        b"600021 milliseconds before timing out.\n"
        b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")


# Over SMALL_CHUNK: scanned by the database that also reports step keywords.
BIG = TEXT + b"x" * (E.SMALL_CHUNK + 1 - len(TEXT)) + b"\n" + TEXT


def _files(d):
    return sorted(p for p in os.listdir(d) if p.startswith("hsdb-"))


def _all_hits(eng):
    return eng.hits(TEXT, len(TEXT)), eng.hits(BIG, len(BIG))


def test_cached_database_gives_the_same_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    pb = load_playbooks([])
    fresh = E.Engine.build(pb, "hyperscan")
    assert len(_files(tmp_path)) == 2  # written by the first build: small chunks, large ones
    stored = E.Engine.build(pb, "hyperscan")  # read back
    assert stored.backend == "hyperscan"
    small, big = _all_hits(fresh)
    assert small and big and _all_hits(stored) == (small, big)


def test_small_and_large_chunk_databases_agree():
    """The two databases differ only by the step-keyword pattern: same rule hits on the same
    lines, and the large one reports step keywords (once)."""
    eng = E.Engine.build(load_playbooks([]), "hyperscan")
    small, big = _all_hits(eng)
    steps = [h for h in big if h[1] == eng.step_pid]
    assert len(steps) == 1 and eng.pattern_kind[eng.step_pid] == E.KIND_STEPKEY
    rules = [h for h in big if h[1] != eng.step_pid]
    assert [h for h in rules if h[0] <= len(TEXT)] == small
    shift = len(BIG) - len(TEXT)
    assert [(end - shift, pid) for end, pid in rules if end > len(TEXT)] == small
    assert all(h[1] != eng.step_pid for h in small)


def test_step_key_presence():
    eng = E.Engine.build(load_playbooks([]), "hyperscan")
    late = bytearray(b"x" * 8000 + b"\nepoch 1 iter 5\n")
    assert eng.has_step_key(late, len(late)) is True
    assert eng.has_step_key(late, 8000) is False  # only buf[:n] counts
    assert eng.has_step_key(b"tep", 3) is True
    assert E.Engine.build(load_playbooks([]), "re2").has_step_key(late, 8000) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty"])
def test_damaged_cache_is_compiled_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    pb = load_playbooks([])
    want = _all_hits(E.Engine.build(pb, "hyperscan"))
    damaged = {}
    for name in _files(tmp_path):
        path = tmp_path / name
        blob = bytearray(path.read_bytes())
        if damage == "flip":
            blob[len(blob) // 2] ^= 0xFF
        elif damage == "truncate":
            blob = blob[: len(blob) // 3]
        elif damage == "foreign":  # a well-formed file whose body is not a database
            import hashlib

            from triage import cache

            body = b"\x00" * 4096
            blob = bytearray(cache._MAGIC + hashlib.sha256(body).digest() + body)
        else:
            blob = bytearray()
        path.write_bytes(bytes(blob))
        damaged[path] = bytes(blob)
    assert len(damaged) == 2
    eng = E.Engine.build(pb, "hyperscan")
    assert _all_hits(eng) == want
    for path, blob in damaged.items():
        assert path.read_bytes() != blob  # rewritten whole


def test_cache_off_and_unwritable(tmp_path, monkeypatch):
    pb = load_playbooks([])
    from triage import cache

    monkeypatch.setenv("TRIAGE_CACHE_DIR", "")
    assert cache.cache_dir() is None
    want = _all_hits(E.Engine.build(pb, "hyperscan"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(blocker / "sub"))
    assert _all_hits(E.Engine.build(pb, "hyperscan")) == want
