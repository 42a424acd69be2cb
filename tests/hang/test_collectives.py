"""Structural parsing of collective descriptors in one log line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.parse.collectives import PySpyTracker, canonical_op, observe_line, observe_line_all
from triage.records import SourceRef

SRC = SourceRef("x.log", 1)

# NCCL formats cannot be produced on this CPU-only machine. The lines below follow the wording
# of torch's ProcessGroupNCCL.cpp watchdog messages as they appear in public bug reports
# (torch 2.1-2.6 era: "[Rank N] Watchdog caught collective operation timeout: WorkNCCL(...)",
# "[PG ID 0 PG GUID 0(default_pg) Rank 1] Exception (either an error or timeout) detected by
# watchdog at work: ...", "[PG 1 Rank 0] Timeout at NCCL work: ..."); numbers are made up.
WATCHDOG = ("[E1206 18:44:12.715298746 ProcessGroupNCCL.cpp:607] [Rank 0] Watchdog caught "
            "collective operation timeout: WorkNCCL(SeqNum=7753, OpType=_REDUCE_SCATTER_BASE, "
            "NumelIn=544997376, NumelOut=68124672, Timeout(ms)=600000) ran for 600061 "
            "milliseconds before timing out.")
WATCHDOG_OLD = ("[E ProcessGroupNCCL.cpp:737] [Rank 1] Watchdog caught collective operation "
                "timeout: WorkNCCL(SeqNum=469508, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for "
                "1802212 milliseconds before timing out.")
SUMMARY = ("[E626 06:24:44.906457629 ProcessGroupNCCL.cpp:1785] [PG ID 0 PG GUID 0(default_pg) "
           "Rank 1] Exception (either an error or timeout) detected by watchdog at work: 808, "
           "last enqueued NCCL work: 811, last completed NCCL work: 807.")
TIMEOUT_AT = ("[E1206 18:44:16.994932383 ProcessGroupNCCL.cpp:1709] [PG 1 Rank 0] Timeout at NCCL "
              "work: 7753, last enqueued NCCL work: 7755, last completed NCCL work: 7752.")
TIMEOUT_AT_DESC = ("[E909 09:55:46.996672294 ProcessGroupNCCL.cpp:1709] [PG 0 (default_pg) Rank 3] "
                   "Timeout at NCCL work: 2070, last enqueued NCCL work: 2082, last completed "
                   "NCCL work: 2069.")
# Produced here by a real gloo job (triage.demo.collective_faults, fault=shape, DETAIL).
DETAIL = ("RuntimeError: Detected mismatch between collectives on ranks. Rank 1 is running "
          "collective: CollectiveFingerPrint(SequenceNumber=4, OpType=ALLREDUCE, "
          "TensorShape=[21], TensorDtypes=Float, TensorDeviceTypes=TensorOptions(dtype=float "
          "(default), device=cpu)), but Rank 0 is running collective: CollectiveFingerPrint("
          "SequenceNumber=4, OpType=ALLREDUCE, TensorShape=[20], TensorDtypes=Float, "
          "TensorDeviceTypes=TensorOptions(dtype=float (default), device=cpu)).")
GLOO = ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/"
        "unbound_buffer.cc:78] Timed out waiting 3000ms for recv operation to complete")
GLOO_PEER = ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553]"
             " Connection closed by peer [127.0.0.1]:2206. This is typically caused by a remote "
             "worker crashing.")
# py-spy cannot attach here; the frame format ("    name (file:line)" under a
# 'Thread 0x... (active): "MainThread"' header) follows py-spy's `dump` output.
PYSPY = "    all_reduce (torch/distributed/distributed_c10d.py:2050)"


def test_watchdog():
    o = observe_line(WATCHDOG, rank=12, source=SRC)
    assert (o.rank, o.pg, o.seq, o.op, o.shape, o.state) == (
        12, None, 7753, "reduce_scatter", "numel=544997376->68124672", "timed_out")
    assert o.source == SRC


def test_watchdog_old_without_numel():
    o = observe_line(WATCHDOG_OLD, rank=1, source=SRC)
    assert (o.seq, o.op, o.shape, o.state) == (469508, "all_reduce", None, "timed_out")


def test_watchdog_local_rank_only_when_nothing_else():
    assert observe_line(WATCHDOG, rank=None, source=SRC).rank == 0


@pytest.mark.parametrize("line,pg,seq", [(SUMMARY, "0", 808), (TIMEOUT_AT, "1", 7753),
                                         (TIMEOUT_AT_DESC, "0", 2070)])
def test_watchdog_summaries_carry_the_pg(line, pg, seq):
    o = observe_line(line, rank=9, source=SRC)
    assert (o.rank, o.pg, o.seq, o.op, o.state) == (9, pg, seq, None, "timed_out")


def test_detail_report_names_both_ranks_reporter_first():
    got = observe_line_all(DETAIL, rank=1, source=SRC)
    assert [(o.rank, o.seq, o.op, o.shape, o.state, o.reported_by) for o in got] == [
        (1, 4, "all_reduce", "[21]", "mismatch", 1), (0, 4, "all_reduce", "[20]", "mismatch", 1)]
    assert {o.pg for o in got} == {"detail:0"}
    assert observe_line(DETAIL, rank=0, source=SRC).rank == 0  # the reporter's own first


def test_gloo_timeout_and_peer_failure():
    o = observe_line(GLOO, rank=2, source=SRC)
    assert (o.rank, o.seq, o.op, o.state) == (2, None, None, "timed_out")
    assert observe_line(GLOO, rank=None, source=SRC) is None
    assert observe_line(GLOO_PEER, rank=2, source=SRC).state == "failed"


def test_pyspy_frame():
    o = observe_line(PYSPY, rank=5, source=SRC)
    assert (o.rank, o.op, o.state) == (5, "all_reduce", "waiting")
    assert observe_line("    train_step (train.py:12)", rank=5, source=SRC) is None


@pytest.mark.parametrize("line", [
    "step 12 loss 0.5", "WorkNCCL(SeqNum=5", "Watchdog caught collective operation timeout",
    "Timed out waiting for the store", "[PG 1 Rank 0] started", "",
    "Rank 0 is running collective: nothing",
])
def test_near_misses(line):
    assert observe_line(line, rank=0, source=SRC) is None


@pytest.mark.parametrize("raw,canon", [("ALLREDUCE", "all_reduce"), ("nccl:all_reduce", "all_reduce"),
                                       ("_ALLGATHER_BASE", "all_gather"), ("BROADCAST", "broadcast"),
                                       ("gloo:barrier", "barrier"), ("WEIRD_OP", "weird_op"),
                                       (None, None)])
def test_canonical_op(raw, canon):
    assert canonical_op(raw) == canon


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_never_raises(text):
    for rank in (None, 3):
        for o in observe_line_all(text, rank=rank, source=SRC):
            assert o.state in {"timed_out", "mismatch", "waiting", "failed"}


@settings(max_examples=200)
@given(seq=st.integers(0, 10**12), op=st.sampled_from(["ALLREDUCE", "BROADCAST", "ALLGATHER",
                                                       "_REDUCE_SCATTER_BASE", "ALLTOALL_BASE"]),
       nin=st.integers(0, 2**63), nout=st.integers(0, 2**63), local=st.integers(0, 99999),
       pre=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_watchdog_roundtrip(seq, op, nin, nout, local, pre):
    line = (f"{pre}[Rank {local}] Watchdog caught collective operation timeout: WorkNCCL("
            f"SeqNum={seq}, OpType={op}, NumelIn={nin}, NumelOut={nout}, Timeout(ms)=600000) "
            f"ran for 600100 milliseconds before timing out.")
    o = observe_line(line, rank=7, source=SRC)
    assert (o.rank, o.seq, o.op, o.shape) == (7, seq, canonical_op(op), f"numel={nin}->{nout}")


@settings(max_examples=200)
@given(a=st.integers(0, 4095), b=st.integers(0, 4095), seq=st.integers(0, 10**9),
       da=st.lists(st.integers(0, 10**6), max_size=4), db=st.lists(st.integers(0, 10**6), max_size=4))
def test_detail_roundtrip(a, b, seq, da, db):
    def fp(r, dims):
        return (f"Rank {r} is running collective: CollectiveFingerPrint(SequenceNumber={seq}, "
                f"OpType=ALLREDUCE, TensorShape=[{', '.join(map(str, dims))}], "
                f"TensorDtypes=Float, TensorDeviceTypes=TensorOptions(device=cpu))")
    line = f"Detected mismatch between collectives on ranks. {fp(a, da)}, but {fp(b, db)}"
    got = observe_line_all(line, rank=a, source=SRC)
    assert [(o.rank, o.seq, o.shape) for o in got][0] == (a, seq, "[" + ", ".join(map(str, da)) + "]")
    assert sorted(o.rank for o in got) == sorted([a, b])


def test_pyspy_tracker_main_thread_innermost_frame():
    t = PySpyTracker()
    dump = ["Process 4102: python train.py", "Python v3.11.7 (/usr/bin/python3.11)", "",
            'Thread 0x7F39D8FFF640 (idle): "pin_memory"', "    select (selectors.py:415)",
            'Thread 0x7F3A2C1B5740 (active): "MainThread"', "    _next_batch (data/loader.py:88)",
            "    train_step (train.py:57)"]
    for line in dump:
        t.feed(line, 2)
    t.feed('Thread 0x1 (active+gil): "MainThread"', 3)
    t.feed("    all_reduce (torch/distributed/distributed_c10d.py:2501)", 3)
    assert t.where == {2: "_next_batch (data/loader.py:88)",
                       3: "all_reduce (torch/distributed/distributed_c10d.py:2501)"}


@settings(max_examples=200)
@given(st.lists(st.text(max_size=80), max_size=20), st.one_of(st.none(), st.integers(0, 7)))
def test_pyspy_tracker_never_raises(lines, rank):
    t = PySpyTracker()
    for line in lines:
        t.feed(line, rank)
