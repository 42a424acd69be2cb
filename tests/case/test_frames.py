"""Stack frames in the case: stored with each occurrence, shown by `triage show`, and scored by
`triage hypotheses` (two signatures raised at the same place lean towards one bug)."""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from triage.analyze.hypotheses import evidence_from_case, raise_site
from triage.case.records import frames_from_json
from triage.case.store import CaseStore
from triage.cli import app
from triage.records import Frame


def _traceback_log(error: str, inner: str = "fused_reduce", ranks: int = 1) -> str:
    lines = ["step 3 | loss 2.0", "step 4 | loss 2.0"]
    for r in range(ranks):
        lines += [f"[rank{r}]: Traceback (most recent call last):",
                  f'[rank{r}]:   File "/workspace/train.py", line 40, in main',
                  f"[rank{r}]:     loss = step(batch)",
                  f'[rank{r}]:   File "/workspace/kernels.py", line 12, in {inner}',
                  f"[rank{r}]:     out = ext.reduce(x)",
                  f"[rank{r}]: {error}"]
    return "\n".join(lines) + "\n"


def _ingest(tmp_path, name: str, text: str, db):
    d = tmp_path / name
    d.mkdir()
    (d / "console.log").write_text(text, encoding="utf-8")
    res = CliRunner().invoke(app, ["ingest", str(d), "--run", name, "--case", str(db)])
    assert res.exit_code == 0, res.output


def test_frames_are_stored_and_shown(tmp_path):
    db = tmp_path / "case.db"
    _ingest(tmp_path, "a", _traceback_log(
        "RuntimeError: CUDA error: an illegal memory access was encountered", ranks=2), db)
    runner = CliRunner()
    sigs = json.loads(runner.invoke(app, ["signatures", "--case", str(db), "--json"]).stdout)
    sig = next(s for s in sigs["signatures"] if s["family"] == "cuda_illegal_access")["id"]
    shown = json.loads(runner.invoke(app, ["show", sig, "--case", str(db), "--json"]).stdout)
    root = next(o for o in shown["occurrences"] if o["role"] == "root")
    assert root["frames"] == [
        {"file": "/workspace/train.py", "function": "main", "line": 40},
        {"file": "/workspace/kernels.py", "function": "fused_reduce", "line": 12}]
    text = runner.invoke(app, ["show", sig, "--case", str(db)]).stdout
    assert "at /workspace/train.py:40 in main\n  at /workspace/kernels.py:12 in fused_reduce" in text
    # the second rank raised at the same place: its stack is not printed again
    assert text.count("in fused_reduce") == 1 and "(the same stack as above)" in text


def test_two_signatures_raised_at_one_place_are_evidence_of_one_bug(tmp_path):
    db = tmp_path / "case.db"
    _ingest(tmp_path, "a", _traceback_log(
        "RuntimeError: CUDA error: an illegal memory access was encountered"), db)
    _ingest(tmp_path, "b", _traceback_log(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"), db)
    _ingest(tmp_path, "c", _traceback_log(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", inner="load"),
        db)
    with CaseStore.open(db) as store:
        ev = evidence_from_case(store)
        fam = {s.id: s.family for s in store.signatures()}
    by_family = {fam[sig]: sites for sig, sites in ev.frames.items()}
    assert by_family == {"cuda_illegal_access": {"kernels.py:fused_reduce"},
                         "cuda_oom": {"kernels.py:fused_reduce", "kernels.py:load"}}


def test_a_case_from_before_frames_and_damaged_frames_read_as_none(tmp_path):
    db = tmp_path / "case.db"
    _ingest(tmp_path, "a", _traceback_log(
        "RuntimeError: CUDA error: an illegal memory access was encountered"), db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE occurrences SET frames = NULL WHERE role = 'root'")
        conn.execute("UPDATE occurrences SET frames = '{\"not\": 1}' WHERE role != 'root'")
    conn.close()
    with CaseStore.open(db) as store:
        assert all(o.frames == () for o in store.occurrences())
        assert evidence_from_case(store).frames == {}
    for bad in (None, "", "[", "[[1, 2]]", "[3]", '"x"', "[[\"a\", \"b\", \"c\"]]"):
        got = frames_from_json(bad)
        assert got == () or got == (Frame("a", "b", None),)


def test_raise_site_is_the_innermost_frame_by_file_name():
    frames = (Frame("/w/train.py", "main", 1), Frame("C:\\w\\ops\\kernels.py", "reduce", 9))
    assert raise_site(frames) == "kernels.py:reduce"
    assert raise_site(()) is None
