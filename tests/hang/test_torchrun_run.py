"""`triage hang` on the project's shared torchrun job (tests/realruns.py: real_run_hang).

Rank 2 sleeps before the all-reduce at step 12; ranks 0, 1, 3 time out after 15 s (or see a
peer close the connection); torchrun SIGTERMs rank 2, which logs nothing. There are no dumps:
the console (`[default<R>]:` prefixes) and the per-rank `--log-dir` tree are all there is.
"""

from __future__ import annotations

import pytest

from triage.analyze.hang import analyze_paths

pytestmark = pytest.mark.slow


def test_silent_rank_of_a_torchrun_job(real_run_hang):
    run = real_run_hang
    assert run.fault_rank == 2
    for paths in ([run.console.parent], [run.console], [run.attempt_dir]):
        v = analyze_paths(paths)
        assert (v.verdict, v.culprits) == ("culprit", (run.fault_rank,)), (paths, v.why)
        assert v.ranks[run.fault_rank].state == "silent"
        assert sorted(v.ranks) == [0, 1, 2, 3]
