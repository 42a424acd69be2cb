"""The case commands as a user runs them: golden human output, --json, and one-line errors.

Golden files (tests/case/golden/) are compared byte for byte; the case is built with fixed
names, hashes and ingest times, and rendered on a fixed-width console. Regenerate on purpose
with TRIAGE_REGEN_GOLDEN=1.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import triage.cli.case as case_cli
from triage.case import CaseStore
from triage.case.ingest import record_run
from triage.case.meta import RunFile
from triage.cli import app

from tests.case.factories import SIG_IMA, SIG_NAN, scan_result

GOLDEN = Path(__file__).with_name("golden")
FIXED = lambda: datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)  # noqa: E731


def build_case(path: Path) -> Path:
    """24 runs of 32 ranks on 4 of 8 hosts; an illegal access lives on node3, NaN anywhere."""
    rng = random.Random(4)
    with CaseStore.open(path) as store:
        for i in range(24):
            four = rng.sample([f"node{k}" for k in range(8)], 4)
            if i % 3 == 0 and "node3" not in four:
                four[0] = "node3"
            hosts = {r: four[r // 8] for r in range(32)}
            root = None
            bad = [r for r, h in hosts.items() if h == "node3"]
            if bad and i % 3 == 0:
                root = (SIG_IMA, bad[i % len(bad)], 40 + i)
            elif i % 4 == 1:
                root = (SIG_NAN, (5 * i) % 32, 4 * i)
            record_run(store, scan_result(world=32, hosts=hosts, root=root, steps=120),
                       name=f"attempt-{i:02d}", content_hash=f"sha256:{i:064x}",
                       run_file=RunFile(seed=i, seconds=1800.0 if i < 12 else None,
                                        labels={"mitigation": "ring"} if i >= 16 else {}),
                       now=FIXED)
    return path


@pytest.fixture
def case(tmp_path):
    return build_case(tmp_path / "case.db")


def invoke(args, monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(case_cli, "out", Console(file=buf, width=120, highlight=False,
                                                 soft_wrap=False, color_system=None))
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    return res, buf.getvalue()


def check_golden(name: str, text: str) -> None:
    p = GOLDEN / name
    if os.environ.get("TRIAGE_REGEN_GOLDEN"):
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
    assert p.exists(), f"missing golden {p}; run with TRIAGE_REGEN_GOLDEN=1"
    assert text == p.read_text()


@pytest.mark.parametrize("args,golden", [
    (["runs"], "runs.txt"),
    (["signatures"], "signatures.txt"),
    (["show", "sig1:ima"], "show.txt"),
    (["timeline"], "timeline.txt"),
    (["timeline", "--run", "attempt-03", "--width", "40"], "timeline_run.txt"),
    (["rates", "--at-gpus", "100000"], "rates.txt"),
    (["suspects"], "suspects.txt"),
])
def test_golden_output(case, monkeypatch, args, golden):
    res, text = invoke(args + ["--case", str(case)], monkeypatch)
    assert res.exit_code == 0, res.output
    check_golden(golden, text.replace(str(case), "CASE"))


@pytest.mark.parametrize("args,top", [
    (["runs"], "runs"), (["signatures"], "signatures"), (["show", "sig1:nan"], "occurrences"),
    (["timeline"], "rows"), (["rates", "--at-gpus", "1000"], "rates"), (["suspects"], "verdicts"),
])
def test_json_is_one_object_on_stdout(case, monkeypatch, args, top):
    res, text = invoke(args + ["--case", str(case), "--json"], monkeypatch)
    assert res.exit_code == 0 and text == ""
    doc = json.loads(res.stdout)
    assert top in doc


def test_json_numbers(case, monkeypatch):
    res, _ = invoke(["rates", "--case", str(case), "--json", "--at-gpus", "100000"], monkeypatch)
    doc = json.loads(res.stdout)
    assert doc["schema"] == "triage.rates/1" and doc["runs"] == 24
    ima = next(r for r in doc["rates"] if r["signature"] == SIG_IMA)
    assert ima["events"] == 8
    assert ima["per_million_gpu_steps"]["value"] == pytest.approx(8 / doc["gpu_steps"] * 1e6, rel=1e-5)
    res, _ = invoke(["suspects", "--case", str(case), "--json"], monkeypatch)
    doc = json.loads(res.stdout)
    v = {x["signature"]: x for x in doc["verdicts"]}
    assert v[SIG_IMA]["events"] == 8 and v[SIG_IMA]["verdict"] == "concentrated"
    assert v[SIG_IMA]["suspects"] == ["host node3"]
    top = doc["tests"][0]
    assert (top["unit"], top["observed"], top["suspect"]) == ("node3", 8, True)
    assert v[SIG_NAN]["verdict"] == "spread" and v[SIG_NAN]["suspects"] == []


def _cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "triage", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, **(env or {})})


def test_errors_are_one_line_with_exit_codes(tmp_path):
    missing = tmp_path / "missing.db"
    r = _cli("runs", "--case", str(missing))
    assert r.returncode == 5 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no such case file" in r.stderr and "hint:" in r.stderr
    assert not missing.exists()
    r = _cli("ingest", str(tmp_path / "nope"), "--run", "x", "--case", str(tmp_path / "c.db"))
    assert r.returncode == 3 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    r = _cli("ingest", str(tmp_path), "--label", "oops", "--case", str(tmp_path / "c.db"))
    assert r.returncode == 2 and "--label" in r.stderr
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    r = _cli("signatures", "--case", str(junk))
    assert r.returncode == 5 and "not a SQLite case file" in r.stderr
    build_case(tmp_path / "c.db")
    r = _cli("show", "sig1:zzz", "--case", str(tmp_path / "c.db"))
    assert r.returncode == 5 and "no signature 'sig1:zzz'" in r.stderr


def test_ingest_command_end_to_end(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "rank0.log").write_text(
        "[rank0]: step 1 loss 2.5\n[rank0]: step 2 loss 2.4\n"
        "[rank0]: Traceback (most recent call last):\n"
        "[rank0]:   File \"train.py\", line 3, in <module>\n"
        "[rank0]: ValueError: corrupt record 17 in shard /data/a.bin\n")
    (logs / "triage-run.yaml").write_text("seed: 5\nworld_size: 1\n")
    case = tmp_path / "sub" / "case.db"
    r = _cli("ingest", str(logs), "--run", "one", "--label", "mitigation=none", "--case", str(case),
             "--json", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["created"] is True and doc["run"] == "one" and doc["schema"] == "triage.ingest/1"
    r = _cli("ingest", str(logs), "--run", "two", "--case", str(case), "--jobs", "1")
    assert r.returncode == 0 and "nothing added" in r.stdout
    r = _cli("runs", "--json", env={"TRIAGE_CASE": str(case)})
    runs = json.loads(r.stdout)["runs"]
    assert [x["name"] for x in runs] == ["one"]
    assert runs[0]["labels"] == {"mitigation": "none", "seed": "5"} and runs[0]["world_size"] == 1


def test_every_command_has_help_and_docs():
    doc = (Path(__file__).parents[2] / "docs" / "case.md").read_text()
    for name in ("ingest", "runs", "signatures", "show", "timeline", "rates", "suspects"):
        res = CliRunner().invoke(app, [name, "--help"])
        assert res.exit_code == 0 and "--case" in res.output
        assert f"triage {name}" in doc


def _ingest_one_line(tmp_path: Path, error_line: str) -> tuple[Path, Path]:
    """A one-rank run whose last line is `error_line`, ingested into a fresh case."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "rank_0.log").write_text(f"[rank0]: step 3 | loss 2.0\n[rank0]: {error_line}\n",
                                     encoding="utf-8")
    db = tmp_path / "case.db"
    res = CliRunner().invoke(app, ["ingest", str(logs), "--run", "a", "--case", str(db)])
    assert res.exit_code == 0, res.output
    return logs, db


def test_log_text_in_tables_is_never_markup(tmp_path, monkeypatch):
    """A template from an untrusted log is shown verbatim: rich markup in it (`[red]`,
    `[link=...]`, gloo's `[enforce fail at x.cc:456]`) is neither styled nor dropped."""
    from triage.cli import common

    logs, db = _ingest_one_line(tmp_path, "RuntimeError: [enforce fail at pair.cc] size mismatch "
                                "[red]boom[/red] [link=http://e.vil]click[/link]")
    runner = CliRunner()
    # Wide enough that no cell wraps. The console reads COLUMNS once, when it is made (which
    # test imported the CLI first decides when): set its width itself.
    monkeypatch.setattr(common.out, "_width", 400)
    res = runner.invoke(app, ["signatures", "--case", str(db)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    for literal in ("[enforce fail at pair.cc]", "[red]boom[/red]", "[link=http://e.vil]click[/link]"):
        assert literal in text, text


def test_escape_sequences_in_logs_never_reach_the_terminal(tmp_path):
    """A log line carrying a terminal hyperlink (OSC 8), a reset (ESC c) and a bell is shown
    without any of them by every command that prints log text."""
    logs, db = _ingest_one_line(tmp_path, "RuntimeError: boom \x1b]8;;http://e.vil\x07click"
                                "\x1b]8;;\x07 bell\x07 reset\x1bc end")
    runner = CliRunner()
    sig = json.loads(runner.invoke(app, ["signatures", "--case", str(db), "--json"]).stdout)
    sig_id = (sig["signatures"] if isinstance(sig, dict) else sig)[0]["id"]
    for args in (["scan", str(logs)], ["signatures", "--case", str(db)],
                 ["show", sig_id, "--case", str(db)], ["hypotheses", "--case", str(db)],
                 ["timeline", "--case", str(db)]):
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 1), (args, res.output)
        assert "\x1b" not in res.stdout and "\x07" not in res.stdout, (args, repr(res.stdout))
        assert "http://e.vil" not in res.stdout, args
