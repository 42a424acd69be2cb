"""The hang analysis on hand-made observations: majority, ties, silence, honesty, order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.analyze.hang import CollectiveObs, analyze, analyze_paths
from triage.errors import InputError

STEP = [("all_reduce", "[20]"), ("broadcast", "[1]")]


def ob(rank, seq, op="all_reduce", shape="[20]", state="completed", pg="0", **kw):
    return CollectiveObs(rank=rank, pg=pg, seq=seq, op=op, shape=shape, state=state,
                         source=None, **kw)


def history(rank, n, start=1, last_state="scheduled"):
    """`n` collectives of the two-collective training step, the last one unfinished."""
    out = []
    for i in range(n):
        op, shape = STEP[(start + i - 1) % 2]
        out.append(ob(rank, start + i, op, shape,
                      state=last_state if i == n - 1 else "completed"))
    return out


def test_majority_names_the_odd_one():
    obs = [o for r in range(4) for o in history(r, 5)]
    obs = [o for o in obs if not (o.rank == 2 and o.seq == 5)] + [ob(2, 5, "broadcast", "[3]",
                                                                      "scheduled")]
    v = analyze(obs, hosts={2: "node-b", 0: "node-a"})
    assert (v.verdict, v.culprits, v.hosts, v.process_group, v.seq, v.op) == (
        "culprit", (2,), ("node-b",), "0", 5, "all_reduce")
    assert v.ranks[2].state == "off_script" and v.ranks[0].state == "waiting"
    assert "rank 2 did broadcast [3]" in v.why


def test_rank_behind_is_named():
    obs = [o for r in range(3) for o in history(r, 5)] + history(3, 4, last_state="completed")
    v = analyze(obs)
    assert (v.verdict, v.culprits, v.seq) == ("culprit", (3,), 5)
    assert v.ranks[3].state == "behind" and v.ranks[3].last_seq == 4


def test_rank_ahead_is_named():
    # three ranks stopped after 4 collectives, one issued a fifth the others never did
    obs = [o for r in range(3) for o in history(r, 4, last_state="completed")]
    obs += history(3, 4, last_state="completed") + [ob(3, 5, "barrier", "[]", "scheduled")]
    v = analyze(obs)
    assert (v.verdict, v.culprits) == ("culprit", (3,))
    assert v.ranks[3].state == "ahead"


def test_many_behind_the_script_is_not_blame_on_the_few():
    # 3 ranks stopped after 4 collectives, 1 issued the 5th the script expects: the 3 are
    # behind, but nothing singles out which of them is the cause
    obs = [o for r in range(3) for o in history(r, 4, last_state="completed")] + history(3, 5)
    obs = [o for o in obs if not (o.rank == 3 and o.seq == 5)] + [ob(3, 5, "all_reduce", "[20]",
                                                                      "scheduled")]
    v = analyze(obs)
    assert v.verdict == "undecided" and "never issued" in v.why


def test_two_ranks_tie_broken_by_the_script():
    # rank 1 skips the broadcast: at seq 6 rank 0 broadcasts, rank 1 all-reduces
    obs = history(0, 6) + [o for o in history(1, 5, last_state="completed")] + [
        ob(1, 6, "all_reduce", "[20]", "scheduled")]
    v = analyze(obs)
    assert (v.verdict, v.culprits, v.op) == ("culprit", (1,), "broadcast")
    assert "predict broadcast [1]" in v.why


def test_two_ranks_behind_tie():
    v = analyze(history(0, 5) + history(1, 4, last_state="completed"))
    assert (v.verdict, v.culprits) == ("culprit", (1,))


def test_two_ranks_without_a_script_is_undecided():
    v = analyze([ob(0, 1, "all_reduce", "[20]", "scheduled"),
                 ob(1, 1, "all_reduce", "[21]", "scheduled")])
    assert (v.verdict, v.culprits) == ("undecided", ())
    assert "split evenly" in v.why


def test_even_split_of_four_is_undecided():
    obs = [ob(r, 1, "all_reduce", "[20]" if r < 2 else "[21]", "scheduled") for r in range(4)]
    assert analyze(obs).verdict == "undecided"


def test_wrapped_ring_buffer_is_unknown_not_behind():
    # rank 3's buffer starts at seq 4: it must not count as "not issued" for seqs 1-3
    same = [o for r in range(3) for o in history(r, 6)] + history(3, 3, start=4)
    assert analyze(same).verdict == "undecided"  # all four wait in seq 6
    behind = [o for r in range(3) for o in history(r, 6)] + history(3, 2, start=4,
                                                                    last_state="completed")
    v = analyze(behind)
    assert (v.verdict, v.culprits, v.seq) == ("culprit", (3,), 6)


def test_silent_rank_from_logs():
    obs = [ob(r, None, None, None, "timed_out", pg=None) for r in (0, 1, 3)]
    v = analyze(obs, known_ranks=range(4))
    assert (v.verdict, v.culprits) == ("culprit", (2,))
    assert v.ranks[2].state == "silent"
    # without knowing rank 2 exists, nothing can be said
    assert analyze(obs).verdict == "undecided"


def test_silence_of_the_majority_is_not_blame():
    obs = [ob(0, None, None, None, "timed_out", pg=None)]
    assert analyze(obs, world_size=4).verdict == "undecided"


def test_nccl_log_lines_align_by_seq():
    # 4 ranks log watchdog timeouts; rank 1 is stuck one collective earlier
    obs = [ob(r, 808, "all_reduce", "numel=8->8", "timed_out", pg=None) for r in (0, 2, 3)]
    obs += [ob(1, 807, "all_reduce", "numel=8->8", "timed_out", pg=None)]
    v = analyze(obs)
    assert (v.verdict, v.culprits, v.seq, v.op) == ("culprit", (1,), 808, "all_reduce")
    assert v.ranks[1].state == "behind" and v.ranks[1].last_seq == 807


def test_op_spellings_from_different_sources_agree():
    obs = [ob(r, 5, "ALLREDUCE" if r % 2 else "all_reduce", state="timed_out") for r in range(4)]
    assert analyze(obs).verdict == "undecided"  # same op, all stuck: nobody singled out


def test_no_hang():
    obs = [o for r in range(4) for o in history(r, 4, last_state="completed")]
    v = analyze(obs)
    assert (v.verdict, v.culprits) == ("no_hang", ())


def test_all_stuck_in_the_same_place_is_undecided():
    v = analyze([o for r in range(4) for o in history(r, 5)])
    assert v.verdict == "undecided" and v.seq == 5


def test_nothing_observed():
    v = analyze([])
    assert v.verdict == "undecided" and v.ranks == {}


def test_json_contract():
    obs = [o for r in range(3) for o in history(r, 5)] + history(3, 4, last_state="completed")
    j = analyze(obs).to_json()
    assert list(j) == ["schema", "verdict", "culprits", "hosts", "process_group", "seq", "op",
                       "ranks", "why"]
    assert j["schema"] == "triage.hang/1"
    assert j["ranks"]["3"] == {"state": "behind", "last_seq": 4, "op": "broadcast"}
    json.dumps(j)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), world=st.integers(2, 6), culprit_kind=st.sampled_from(
    ["behind", "off", "none", "skip"]))
def test_order_never_matters(data, world, culprit_kind):
    culprit = data.draw(st.integers(0, world - 1))
    obs = []
    for r in range(world):
        if r == culprit and culprit_kind == "behind":
            obs += history(r, 4, last_state="completed")
        elif r == culprit and culprit_kind == "off":
            obs += history(r, 4, last_state="completed") + [ob(r, 5, "broadcast", "[3]",
                                                                "scheduled")]
        elif r == culprit and culprit_kind == "skip":
            obs += history(r, 5, last_state="completed") + [ob(r, 6, "all_reduce", "[20]",
                                                                "scheduled")]
        else:
            obs += history(r, 6 if culprit_kind == "skip" else 5)
    baseline = analyze(obs)
    shuffled = data.draw(st.permutations(obs))
    assert analyze(shuffled) == baseline
    if culprit_kind != "none":
        assert baseline.culprits == (culprit,)


def test_analyze_paths_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        analyze_paths([tmp_path / "missing"])
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    with pytest.raises(InputError, match="no flight-recorder dump"):
        analyze_paths([tmp_path])
    with pytest.raises(InputError):
        analyze_paths([])


def test_analyze_paths_prefixed_console(tmp_path):
    # one interleaved console: torchrun --tee prefixes, rank 2 never reports
    lines = []
    for r in (0, 1, 3):
        lines.append(f"[default{r}]:[rank{r}]: RuntimeError: [../gloo/transport/tcp/"
                     "unbound_buffer.cc:78] Timed out waiting 3000ms for recv operation to "
                     "complete")
    lines.append("[default2]:[rank2]: step 11 loss 0.25")
    (tmp_path / "console.log").write_text("\n".join(lines) + "\n")
    v = analyze_paths([tmp_path])
    assert (v.verdict, v.culprits) == ("culprit", (2,))
    assert v.ranks[0].evidence == v.ranks[0].evidence  # a SourceRef to the line
    assert v.ranks[0].evidence.line == 1
