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


def _files(d):
    return sorted(p for p in os.listdir(d) if p.startswith("hsdb-"))


def test_cached_database_gives_the_same_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    pb = load_playbooks([])
    fresh = E.Engine.build(pb, "hyperscan")
    assert len(_files(tmp_path)) == 1  # written by the first build
    stored = E.Engine.build(pb, "hyperscan")  # read back
    assert stored.backend == "hyperscan"
    hits = fresh.hits(TEXT, len(TEXT))
    assert hits and stored.hits(TEXT, len(TEXT)) == hits


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty"])
def test_damaged_cache_is_compiled_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    pb = load_playbooks([])
    want = E.Engine.build(pb, "hyperscan").hits(TEXT, len(TEXT))
    (name,) = _files(tmp_path)
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
    eng = E.Engine.build(pb, "hyperscan")
    assert eng.hits(TEXT, len(TEXT)) == want
    assert E._load_cached_db is not None and path.read_bytes() != bytes(blob)  # rewritten whole


def test_cache_off_and_unwritable(tmp_path, monkeypatch):
    pb = load_playbooks([])
    from triage import cache

    monkeypatch.setenv("TRIAGE_CACHE_DIR", "")
    assert cache.cache_dir() is None
    want = E.Engine.build(pb, "hyperscan").hits(TEXT, len(TEXT))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(blocker / "sub"))
    assert E.Engine.build(pb, "hyperscan").hits(TEXT, len(TEXT)) == want
