"""`triage diverge`: first bad step from probe records (synthetic records, golden output, parser
properties). Real runs are in test_demo_e2e.py."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from triage.analyze.diverge import analyse, find_divergence, parse_line, ProbeRecord
from triage.cli import app
from triage.cli.diverge import render
from triage.errors import InputError, UsageError

GOLDEN = Path(__file__).parent / "golden"


def probe_lines(step: int, rank: int, world: int, *, checksum: str, loss: float | str = 1.5,
                grad_norm: float | str = 0.25, nonfinite=(0, 0, 0)) -> str:
    return json.dumps({
        "schema": "triage.probe/1", "kind": "step", "step": step, "rank": rank,
        "world_size": world, "host": "node0", "time": 1000.0 + step, "loss": loss,
        "grad_norm": grad_norm, "param_checksum": checksum, "numel": 10,
        "nonfinite": {"loss": nonfinite[0], "grads": nonfinite[1], "params": nonfinite[2]},
    })


def write_run(directory: Path, *, steps: int = 10, world: int = 4, odd: int | None = None,
              diverge_at: int | None = None, nan_at: int | None = None,
              stop: dict[int, int] | None = None) -> Path:
    """A synthetic probe directory: ranks agree except `odd` from `diverge_at` on, and `odd`
    has NaN parameters from `nan_at` on."""
    directory.mkdir(parents=True, exist_ok=True)
    for rank in range(world):
        lines = []
        for step in range(steps):
            if stop and step > stop.get(rank, steps):
                break
            checksum = f"b2:{step:04d}{'a' * 28}"
            nonfinite = (0, 0, 0)
            loss: float | str = round(2.0 - 0.01 * step + 0.001 * rank, 4)
            if rank == odd and diverge_at is not None and step >= diverge_at:
                checksum = f"b2:{step:04d}{'b' * 28}"
            if rank == odd and nan_at is not None and step >= nan_at:
                nonfinite, loss = (0, 3, 7), "nan"
            lines.append(probe_lines(step, rank, world, checksum=checksum, loss=loss,
                                     nonfinite=nonfinite))
        (directory / f"rank{rank}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_agreeing_ranks_have_no_bad_step(tmp_path):
    result = find_divergence([write_run(tmp_path / "p")])
    assert result.first_bad_step is None and result.kinds == ()
    assert result.ranks == (0, 1, 2, 3) and result.records == 40
    assert result.headline().startswith("no divergence")


def test_silent_divergence_names_the_odd_rank(tmp_path):
    result = find_divergence([write_run(tmp_path / "p", odd=2, diverge_at=6)])
    assert result.first_bad_step == 6
    assert result.kinds == ("mismatch",)
    assert result.bad_ranks == (2,) and result.majority == (0, 1, 3)
    assert {r.step for r in result.window} == {4, 5, 6, 7, 8}


def test_nonfinite_before_mismatch(tmp_path):
    result = find_divergence([write_run(tmp_path / "p", odd=1, diverge_at=7, nan_at=5)])
    assert result.first_bad_step == 5 and result.kinds == ("nonfinite",)
    assert result.first_mismatch_step == 7 and result.bad_ranks == (1,)


def test_two_against_two_names_no_majority(tmp_path):
    d = write_run(tmp_path / "p", world=2, odd=1, diverge_at=3)
    result = find_divergence([d])
    assert result.first_bad_step == 3 and result.majority == ()
    assert result.bad_ranks == (0, 1) and result.groups == ((0,), (1,))
    assert "no majority" in result.headline()


def test_a_rank_that_stopped_is_not_a_divergence(tmp_path):
    result = find_divergence([write_run(tmp_path / "p", stop={3: 4})])
    assert result.first_bad_step is None
    assert result.last_step == {0: 9, 1: 9, 2: 9, 3: 4}


def test_torn_lines_are_skipped_with_a_warning(tmp_path):
    d = write_run(tmp_path / "p", odd=0, diverge_at=2)
    with open(d / "rank0.jsonl", "a") as fh:
        fh.write('{"schema": "triage.probe/1", "kind": "step", "st')
    result = find_divergence([d])
    assert result.first_bad_step == 2
    assert any("rank0.jsonl: skipped 1 unreadable line(s), first at line 11" in w
               for w in result.warnings)


def test_bad_inputs_raise_triage_errors(tmp_path):
    with pytest.raises(InputError):
        find_divergence([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        find_divergence([tmp_path / "empty"])
    write_run(tmp_path / "two" / "a")
    write_run(tmp_path / "two" / "b")
    with pytest.raises(UsageError, match="more than one run"):
        find_divergence([tmp_path / "two"])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.jsonl").write_text("hello\n{}\n")
    with pytest.raises(InputError, match="no probe records"):
        find_divergence([tmp_path / "junk"])


def _render_text(result) -> str:
    buf = io.StringIO()
    render(result, Console(file=buf, width=100, color_system=None, force_terminal=False))
    return buf.getvalue()


@pytest.mark.parametrize("name, kwargs", [
    ("diverge_mismatch.txt", {"odd": 2, "diverge_at": 6}),
    ("diverge_nonfinite.txt", {"odd": 1, "diverge_at": 7, "nan_at": 5}),
    ("diverge_clean.txt", {"stop": {3: 8}}),
])
def test_golden_text(tmp_path, name, kwargs):
    d = write_run(tmp_path / "p", **kwargs)
    text = _render_text(find_divergence([d])).replace(str(tmp_path), "TMP")
    golden = GOLDEN / name
    if os.environ.get("TRIAGE_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_cli_json_and_errors(tmp_path):
    d = write_run(tmp_path / "p", odd=3, diverge_at=4)
    runner = CliRunner()
    res = runner.invoke(app, ["diverge", str(d), "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["schema"] == "triage.diverge/1"
    assert obj["first_bad_step"] == 4 and obj["bad_ranks"] == [3] and obj["kinds"] == ["mismatch"]
    res = runner.invoke(app, ["diverge", str(tmp_path / "nope")])
    assert res.exit_code == 3
    assert "Traceback" not in res.output and "no such file or directory" in res.output


# -- properties -------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_line_never_crashes_on_garbage(text):
    try:
        rec = parse_line(text, "x:1")
    except ValueError:
        return
    assert rec is None or isinstance(rec, ProbeRecord) or hasattr(rec, "odd_ranks")


floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.sampled_from(["nan", "inf", "-inf"]))


@settings(max_examples=200, deadline=None)
@given(step=st.integers(0, 10**9), rank=st.integers(0, 10**5), loss=floats, gn=floats,
       nf=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)))
def test_parse_line_round_trips_records(step, rank, loss, gn, nf):
    line = probe_lines(step, rank, rank + 1, checksum="b2:00", loss=loss, grad_norm=gn, nonfinite=nf)
    rec = parse_line(line, "x:1")
    assert (rec.step, rec.rank, rec.nonfinite) == (step, rank, nf)
    assert rec.to_json()["loss"] == (loss if isinstance(loss, str) else float(loss)) or loss == "nan"


@settings(max_examples=60, deadline=None)
@given(world=st.integers(3, 8), steps=st.integers(1, 30), data=st.data())
def test_first_bad_step_is_the_injected_one(world, steps, data):
    at = data.draw(st.integers(0, steps - 1))
    odd = data.draw(st.integers(0, world - 1))
    records = []
    for step in range(steps):
        for rank in range(world):
            checksum = "b2:bad" if rank == odd and step >= at else f"b2:{step}"
            records.append(ProbeRecord(step, rank, world, None, None, 1.0, 1.0, checksum,
                                       (0, 0, 0), "x"))
    result = analyse(records)
    assert result.first_bad_step == at and result.bad_ranks == (odd,)
