"""triage.probe: exact checksums, non-finite counts, never-blocking writes, and the cross-rank
check on a real 2-process gloo group."""

from __future__ import annotations

import json
import logging
import os
import socket

import pytest

torch = pytest.importorskip("torch")

from triage.analyze.diverge import find_divergence  # noqa: E402
from triage.probe import PROBE_SCHEMA, Probe, param_checksum  # noqa: E402


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_have_the_documented_fields(tmp_path):
    model = tiny_model()
    loss = model(torch.ones(2, 4)).sum()
    loss.backward()
    with Probe(tmp_path, rank=1, world_size=2, host="h1") as probe:
        rec = probe.step(7, loss=loss, model=model)
    [line] = read(tmp_path / "rank1.jsonl")
    assert line == rec
    assert line["schema"] == PROBE_SCHEMA and line["kind"] == "step"
    assert (line["step"], line["rank"], line["world_size"], line["host"]) == (7, 1, 2, "h1")
    assert line["loss"] == pytest.approx(float(loss.detach()))
    expected_norm = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()) ** 0.5
    assert line["grad_norm"] == pytest.approx(expected_norm)
    assert line["numel"] == sum(p.numel() for p in model.parameters())
    assert line["nonfinite"] == {"loss": 0, "grads": 0, "params": 0}


def test_checksum_is_bitwise(tmp_path):
    a, b = tiny_model(), tiny_model()
    assert param_checksum(a.parameters()) == param_checksum(b.parameters())
    with torch.no_grad():
        w = b[0].weight.view(-1)
        w[3:4].view(torch.int32).bitwise_xor_(1)  # one ulp
    assert param_checksum(a.parameters())[0] != param_checksum(b.parameters())[0]


def test_nonfinite_counts_and_json_safe_floats(tmp_path):
    model = tiny_model()
    loss = model(torch.ones(2, 4)).sum()
    loss.backward()
    with torch.no_grad():
        model[0].weight[0, :2] = float("nan")
        model[2].bias.grad[0] = float("inf")
    probe = Probe(tmp_path, rank=0, world_size=1)
    probe.step(0, loss=float("nan"), model=model)
    probe.close()
    text = (tmp_path / "rank0.jsonl").read_text()
    assert "NaN" not in text  # strict JSON
    [line] = read(tmp_path / "rank0.jsonl")
    assert line["loss"] == "nan" and line["grad_norm"] == "inf"
    assert line["nonfinite"] == {"loss": 1, "grads": 1, "params": 2}


def test_disabled_and_every(tmp_path):
    model = tiny_model()
    off = Probe(tmp_path / "off", enabled=False)
    assert off.step(0, model=model) is None
    assert not (tmp_path / "off").exists()
    assert Probe(None).step(0, model=model) is None
    probe = Probe(tmp_path / "on", every=10, rank=0, world_size=1)
    recorded = [s for s in range(25) if probe.step(s, model=model) is not None]
    probe.close()
    assert recorded == [0, 10, 20]
    assert [r["step"] for r in read(tmp_path / "on" / "rank0.jsonl")] == [0, 10, 20]


def test_an_unwritable_directory_disables_instead_of_raising(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="triage.probe"):
        probe = Probe(blocker / "probe", rank=0, world_size=1)
    assert probe.enabled is False
    assert probe.step(0, model=tiny_model()) is None
    assert "probe disabled" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, directory: str, bad_step: int, mode: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    logging.basicConfig(level=logging.INFO, filename=os.path.join(directory, f"log{rank}.txt"))
    model = tiny_model()
    probe = Probe(directory, check_every=2, on_divergence=mode)
    try:
        for step in range(6):
            if rank == world - 1 and step == bad_step:
                with torch.no_grad():
                    model[2].bias.view(-1)[0:1].view(torch.int32).bitwise_xor_(1)
            probe.step(step, model=model)
    except RuntimeError as exc:
        with open(os.path.join(directory, f"raised{rank}.txt"), "w") as fh:
            fh.write(str(exc))
    finally:
        probe.close()
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["log", "raise"])
def test_cross_rank_check_on_a_real_gloo_group(tmp_path, mode):
    import torch.multiprocessing as mp

    world, bad_step = 3, 2
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path), bad_step, mode),
                       nprocs=world, start_method="spawn", join=True)
    # the check runs every 2nd recorded step: steps 1, 3, 5; the flip happened at step 2
    reports = [r for k in range(world) for r in read(tmp_path / f"rank{k}.jsonl")
               if r["kind"] == "divergence"]
    first = min(r["step"] for r in reports)
    assert first == 3
    assert all(r["odd_ranks"] == [world - 1] for r in reports)
    assert "parameter checksums differ across ranks at step 3" in (tmp_path / "log0.txt").read_text()
    raised = sorted(p.name for p in tmp_path.glob("raised*.txt"))
    assert raised == ([f"raised{k}.txt" for k in range(world)] if mode == "raise" else [])
    # and `triage diverge` finds the exact step, not the check's step
    result = find_divergence([tmp_path])
    assert result.first_bad_step == bad_step and result.bad_ranks == (world - 1,)
    assert result.probe_reported.step == 3
