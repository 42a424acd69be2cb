"""What `triage scan` must find in each format fixture (tests/scan/fixtures/README.md).

Every expected value is written here by hand from the scenario the fixture was written for
(the culprit rank, its step, host and time), and source lines are located by searching the
fixture for the line that states the error, so each assert can fail. Where the scanner is known
to get an answer wrong today, the test states the right answer and is marked
`xfail(strict=True)` with the bug: it turns into a failure (XPASS) the day the bug is fixed, so
the mark gets removed then.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scan.conftest import copy_fixtures, fixture_lines, line_of
from triage.parse.prefix import strip_ansi
from triage.scan import scan

_CACHE: dict[str, object] = {}


@pytest.fixture
def scanned(scan_fixtures):
    """scan(<fixture>) once per session, by fixture name."""

    def get(name: str):
        if name not in _CACHE:
            _CACHE[name] = scan([str(scan_fixtures / name)], jobs=1)
        return _CACHE[name]

    return get


def by_playbook(result, rule: str):
    return [f for f in result.failures if f.playbook == rule]


def occ_ranks(result, signature: str) -> set:
    return {o.rank for o in result.occurrences if o.signature == signature}


def assert_sources_exist(result, root: Path) -> None:
    """Every reported source line exists and contains the message (prefix/ANSI aside)."""
    for f in result.failures:
        path = Path(f.source.path)
        lines = fixture_lines(path if path.is_absolute() else root / path)
        assert 1 <= f.source.line <= len(lines), f
        text = lines[f.source.line - 1]
        core = f.message.strip("…")
        assert core in strip_ansi(text), (f.source, core)


# --------------------------------------------------------------------------------------------
# (a) 8-rank NCCL job, rank 5 silent


NCCL_HANG = "nccl_hang_8rank.log"
TIMED_OUT = {0, 1, 2, 3, 4, 6, 7}  # every rank but the silent one, as written into the fixture


def test_nccl_hang_root_is_the_silent_rank(scanned, scan_fixtures):
    r = scanned(NCCL_HANG)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step, rc.host, rc.role) == ("hang", 5, 1202, "gpu-node-017", "root")
    assert "rank 5" in rc.why
    # rank 5 wrote no error of its own: the line quoted is its own exit record in the elastic
    # summary (SIGTERM by the agent), the only line that is rank 5's
    assert rc.source.line == line_of(scan_fixtures / NCCL_HANG, "Signal 15 (SIGTERM) received")
    assert "SIGTERM" in rc.message
    assert r.hang is not None and tuple(r.hang.culprits) == (5,)
    others = [f for f in r.failures if f is not rc]
    assert others and all(f.role == "symptom" for f in others)


def test_nccl_hang_watchdog_timeouts_on_seven_ranks(scanned):
    r = scanned(NCCL_HANG)
    wd = [o for o in r.occurrences if "ProcessGroupNCCL.cpp:632]" in o.message]
    assert {o.rank for o in wd} == TIMED_OUT
    assert all(o.step == 1202 and o.host == "gpu-node-017" for o in wd)
    assert all(o.time.startswith("2026-11-23T01:19:52.") for o in wd)
    assert len({o.signature for o in wd}) == 1  # one signature across ranks and numbers
    assert r.world_size == 8
    assert {s.rank: s.last_step for s in r.ranks} == {k: 1202 for k in range(8)}
    assert {s.rank: s.exit_code for s in r.ranks} == {k: (-15 if k == 5 else -6) for k in range(8)}


def test_nccl_hang_elastic_signal_lines_carry_their_block_rank(scanned):
    sigterm = [f for f in scanned(NCCL_HANG).failures if "Signal 15 (SIGTERM) received" in f.message]
    assert sigterm and sigterm[0].rank == 5


def test_glog_year_comes_from_dated_lines_not_mtime(tmp_path):
    import calendar

    root = copy_fixtures(tmp_path / "fx", mtime=calendar.timegm((2024, 1, 5, 0, 0, 0, 0, 0, 0)))
    r = scan([str(root / NCCL_HANG)], jobs=1)
    wd = by_playbook(r, "nccl.watchdog_timeout")[0]
    assert wd.time.startswith("2026-11-23T01:19:52")


MISMATCH = "nccl_mismatch_4rank.log"


def test_nccl_mismatch_names_the_rank_off_script(scanned, scan_fixtures):
    r = scanned(MISMATCH)
    rc = r.root_cause
    assert (rc.rank, rc.step) == (2, 400)
    assert rc.source.line == line_of(scan_fixtures / MISMATCH, "OpType=BROADCAST")
    assert r.hang is not None and r.hang.verdict == "culprit" and tuple(r.hang.culprits) == (2,)
    others = [f for f in r.failures if f is not rc]
    assert others and all(f.role == "symptom" for f in others)
    wd = [f for f in others if "OpType=ALLREDUCE" in f.message]
    assert len(wd) == 1 and occ_ranks(r, wd[0].signature) == {0, 1, 3}


def test_nccl_mismatch_family(scanned):
    assert scanned(MISMATCH).root_cause.family == "collective_mismatch"


# --------------------------------------------------------------------------------------------
# (b) CUDA OOM on rank 2 in a torchrun --tee console

OOM_TEE = "cuda_oom_tee.log"


def test_oom_tee_root(scanned, scan_fixtures):
    r = scanned(OOM_TEE)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step, rc.host, rc.role) == ("cuda_oom", 2, 340, "gpu-node-003", "root")
    assert rc.playbook == "cuda.oom"
    assert rc.source.line == line_of(scan_fixtures / OOM_TEE, "[default2]:[rank2]: torch.OutOfMemoryError")
    assert "Tried to allocate 2.00 GiB. GPU 2 has a total capacity of 79.15 GiB" in rc.message
    assert rc.fields.get("bytes") == "2.00 GiB"
    others = [f for f in r.failures if f is not rc]
    assert others and all(f.role == "symptom" for f in others)
    wd = by_playbook(r, "nccl.watchdog_timeout")[0]
    assert occ_ranks(r, wd.signature) == {0, 1, 3}
    assert wd.time == "2026-11-23T01:40:42.118420"
    assert_sources_exist(r, scan_fixtures)


def test_oom_tee_root_keeps_prefix_time_and_frames(scanned):
    rc = scanned(OOM_TEE).root_cause
    assert rc.message.startswith("[default2]:[rank2]: torch.OutOfMemoryError")
    assert rc.time == "2026-11-23T01:30:41.887000"
    assert rc.frames and rc.frames[-1].function == "forward"


# --------------------------------------------------------------------------------------------
# (c) srun -l console, Xid 79 on gpu-b07 (task 6)

SLURM = "slurm-48213.out"


def test_slurm_xid_line_is_found_on_task_6(scanned, scan_fixtures):
    r = scanned(SLURM)
    xid = [f for f in r.failures if f.family == "gpu_hardware"]
    assert len(xid) == 1
    f = xid[0]
    assert f.rank == 6 and f.step == 10000
    assert f.time == "2026-11-23T02:14:32"
    assert f.source.line == line_of(scan_fixtures / SLURM, "NVRM: Xid (PCI:0000:4c:00): 79")
    assert r.world_size == 8
    assert_sources_exist(r, scan_fixtures)


def test_slurm_root_is_the_xid(scanned):
    rc = scanned(SLURM).root_cause
    assert (rc.family, rc.rank, rc.step) == ("gpu_hardware", 6, 10000)
    assert rc.host == "gpu-b07"


def test_slurm_peer_address_is_not_the_ranks_host(scanned):
    r = scanned(SLURM)
    ib = by_playbook(r, "nccl.ib_completion_error")[0]
    sock = by_playbook(r, "nccl.socket_peer_closed")[0]
    assert ib.rank == 4 and ib.host in (None, "gpu-b07")
    assert sock.rank == 1 and sock.host in (None, "gpu-a03")


def test_slurm_job_step_id_is_not_a_training_step(scanned):
    r = scanned(SLURM)
    cancelled = [f for f in r.failures if "slurmstepd" in f.message][0]
    assert cancelled.step == 10000
    assert r.max_step == 10000 and all(s.first_step in (None, 10000) for s in r.signatures)


# --------------------------------------------------------------------------------------------
# (d) Megatron-LM NaN, DeepSpeed loss scale

MEGATRON = "megatron_nan.log"
DEEPSPEED = "deepspeed_overflow.log"


def test_megatron_nan_root(scanned, scan_fixtures):
    r = scanned(MEGATRON)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step) == ("nonfinite", 3, 2100)
    assert rc.source.line == line_of(scan_fixtures / MEGATRON, "AssertionError: Rank 3: found NaN")
    assert rc.time is None  # rank 3 printed no dated line of its own
    wd = by_playbook(r, "nccl.watchdog_timeout")[0]
    assert wd.role == "symptom" and occ_ranks(r, wd.signature) == {0, 1, 2, 4, 5, 6, 7}
    assert r.max_step == 2100
    assert_sources_exist(r, scan_fixtures)


def test_megatron_nan_host_from_message(scanned):
    assert scanned(MEGATRON).root_cause.host == "gpu-c11"


def test_deepspeed_loss_scale_exception_on_every_rank(scanned, scan_fixtures):
    r = scanned(DEEPSPEED)
    exc = [s for s in r.signatures if "already at minimum" in s.template]
    assert len(exc) == 1
    assert exc[0].family == "loss_scale" and exc[0].ranks == (0, 1, 2, 3) and exc[0].count == 4
    assert exc[0].first_step == 520
    assert r.root_cause.family == "loss_scale" and r.root_cause.step == 520
    assert_sources_exist(r, scan_fixtures)


def test_deepspeed_root_is_the_exception(scanned, scan_fixtures):
    r = scanned(DEEPSPEED)
    rc = r.root_cause
    # every rank raises it; rank 1 printed first (ties between ranks fall to input order)
    assert rc.source.line == line_of(scan_fixtures / DEEPSPEED, "[rank1]: Exception: Current loss scale")
    assert (rc.family, rc.rank, rc.step) == ("loss_scale", 1, 520)
    overflow = [f for f in r.failures if "OVERFLOW!" in f.message]
    assert overflow and all(f.role == "symptom" for f in overflow)


# --------------------------------------------------------------------------------------------
# (e) mpirun --tag-output, chained exception

MPIRUN = "mpirun_chained.log"


def test_mpirun_chained_root_and_roles(scanned, scan_fixtures):
    r = scanned(MPIRUN)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step) == ("python_exception", 1, 41)
    assert rc.source.line == line_of(scan_fixtures / MPIRUN, "[1,1]<stderr>:FileNotFoundError")
    chained = [f for f in r.failures if "cannot load training shard 17" in f.message]
    assert len(chained) == 1 and chained[0].role == "symptom" and chained[0].rank == 1
    remote = by_playbook(r, "nccl.remote_error")
    assert remote and all(f.role == "symptom" for f in remote)
    assert occ_ranks(r, remote[0].signature) == {0, 2, 3}
    assert {s.rank: s.last_step for s in r.ranks} == {0: 40, 1: 41, 2: 40, 3: 40}
    assert_sources_exist(r, scan_fixtures)


def test_mpirun_time_from_same_rank_stdout(scanned):
    assert scanned(MPIRUN).root_cause.time == "2026-11-23T05:12:41.007000"


# --------------------------------------------------------------------------------------------
# (f) per-rank files, plain and gzipped


def test_rank_files_root(scanned, scan_fixtures):
    r = scanned("rank_files")
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step) == ("cuda_illegal_access", 6, 77)
    assert rc.time == "2026-11-23T06:03:10.016000"
    assert rc.source.path.endswith("rank_files/rank_6.log")
    assert rc.source.line == line_of(scan_fixtures / "rank_files/rank_6.log", "an illegal memory access")
    remote = by_playbook(r, "nccl.remote_error")
    assert remote and all(f.role == "symptom" for f in remote)
    assert set().union(*(occ_ranks(r, f.signature) for f in remote)) == {0, 1, 2, 3, 4, 5, 7}
    assert len(r.inputs) == 8 and [i.path.rsplit("/", 1)[-1] for i in r.inputs] == [f"rank_{k}.log" for k in range(8)]
    assert_sources_exist(r, scan_fixtures)


def test_rank_files_gz_same_as_plain(scanned):
    plain = scanned("rank_files").to_json()
    gz = scanned("rank_files_gz").to_json()
    for d in (plain, gz):
        d["stats"]["seconds"] = 0
        for i in d["inputs"]:
            i["bytes"] = 0  # compressed sizes differ, everything else must not
        d["stats"]["bytes"] = 0
    text = repr(gz).replace("rank_files_gz", "rank_files").replace(".log.gz", ".log")
    assert text == repr(plain)


# --------------------------------------------------------------------------------------------
# (g) torchrun --log-dir tree with error.json files

LOGDIR = "torchrun_logdir"


def test_logdir_root_from_error_files(scanned):
    r = scanned(LOGDIR)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step) == ("python_exception", 2, 58)
    assert rc.time == "2026-11-23T07:01:19Z"  # error.json timestamp 1795417279
    assert "/attempt_0/2/" in rc.source.path
    assert rc.message.startswith("ValueError: Target size")
    closed = by_playbook(r, "gloo.peer_closed")
    assert closed and all(f.role == "symptom" for f in closed)
    assert set().union(*(occ_ranks(r, f.signature) for f in closed)) == {0, 1, 3}
    assert sorted(s.rank for s in r.ranks) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------
# (h) the hostile copy

HOSTILE = "hostile_copy.log"


def test_hostile_copy_root(scanned, scan_fixtures):
    r = scanned(HOSTILE)
    rc = r.root_cause
    assert (rc.family, rc.rank, rc.step) == ("cuda_oom", 2, 340)
    assert rc.source.line == line_of(scan_fixtures / HOSTILE, "Tried to allocate 2.00 GiB")
    # every rank's progress survives quoting, colour, \r, flattening, splicing and bad bytes
    assert {s.rank: s.last_step for s in r.ranks} == {0: 340, 1: 340, 2: 340, 3: 340}
    assert r.inputs[0].lines == len(fixture_lines(scan_fixtures / HOSTILE)) - 1
    wd = by_playbook(r, "nccl.watchdog_timeout")
    # rank 3's intact watchdog line is found; rank 0's was hard-wrapped and must not be misattributed
    assert occ_ranks(r, wd[0].signature) <= {0, 3} and 3 in occ_ranks(r, wd[0].signature)
    assert all(f.rank in (2, 3, 0, None) for f in r.failures)
    assert_sources_exist(r, scan_fixtures)


def test_hostile_copy_time_through_quotes(scanned):
    assert scanned(HOSTILE).root_cause.time == "2026-11-23T01:30:40.126000"


def test_stdin_same_as_file(scan_fixtures, monkeypatch):
    """`-` (stdin) gives the same failures as the file itself."""
    import io
    import sys

    data = (scan_fixtures / OOM_TEE).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    a = scan(["-"], jobs=1).to_json()
    b = scan([str(scan_fixtures / OOM_TEE)], jobs=1).to_json()
    strip = lambda d: [(f["family"], f["rank"], f["step"], f["source"]["line"], f["role"]) for f in d["failures"]]
    assert strip(a) == strip(b)
