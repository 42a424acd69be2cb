"""`triage playbooks ...` end to end through the real CLI app, with golden output.

Golden files live in tests/playbooks/golden/; set TRIAGE_UPDATE_GOLDEN=1 to rewrite them on
purpose after a deliberate change (then review the diff).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli import app
from triage.errors import EXIT_BAD, EXIT_PLAYBOOK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["playbooks", *args], catch_exceptions=False)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TRIAGE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with TRIAGE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # display paths relative to the repo: playbooks/nccl.yaml


USER_RULE = """\
rules:
  - id: site.stale_nfs
    title: Stale NFS handle on the checkpoint share
    family: checkpoint_io
    severity: high
    role: root
    priority: 90
    match:
      any:
        - '\\[Errno 116\\] Stale file handle: ''(?P<path>[^'']+)'''
    causes:
      - category: infrastructure
        text: The site's NFS server fails over every night at 02:00.
    next_steps:
      - Resume from the last checkpoint after 02:10.
    examples:
      match:
        - "[rank3]: OSError: [Errno 116] Stale file handle: '/ckpt/step_100.pt'"
      no_match:
        - "OSError: [Errno 2] No such file or directory: '/ckpt/step_100.pt'"
"""


def user_dir(tmp_path: Path, text: str = USER_RULE) -> Path:
    d = tmp_path / "site-playbooks"
    d.mkdir()
    (d / "site.yaml").write_text(text, encoding="utf-8")
    return d


def test_every_command_has_help_and_is_documented():
    doc = (ROOT / "docs" / "playbooks.md").read_text(encoding="utf-8")
    for cmd in ("list", "show", "check", "test"):
        result = run(cmd, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
        assert f"triage playbooks {cmd}" in doc, f"docs/playbooks.md does not document {cmd}"


def test_list_golden():
    result = run("list")
    assert result.exit_code == 0
    golden("list.txt", result.stdout)


def test_list_family_and_json():
    result = run("list", "--family", "gpu_hardware", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "triage.playbooks/1"
    assert data["rules"] and {r["family"] for r in data["rules"]} == {"gpu_hardware"}


def test_show_golden():
    result = run("show", "nccl.watchdog_timeout")
    assert result.exit_code == 0
    golden("show_nccl_watchdog_timeout.txt", result.stdout)


def test_show_json_round_trips_the_schema():
    data = json.loads(run("show", "cuda.oom", "--json").stdout)["rule"]
    assert data["id"] == "cuda.oom" and data["match"]["any"]
    assert set(data) >= {"id", "title", "family", "severity", "role", "priority", "match",
                         "causes", "next_steps", "references", "examples"}


def test_show_unknown_id_is_one_line_with_a_suggestion():
    result = run("show", "cuda.om")
    assert result.exit_code == EXIT_USAGE
    assert result.stdout == ""
    assert result.stderr == "error: no rule with id 'cuda.om' (hint: did you mean cuda.oom?)\n"


def test_check_builtin_ok():
    result = run("check")
    assert result.exit_code == 0
    assert re.fullmatch(r"ok: \d+ rules in \d+ files\n", result.stdout)


def test_check_reports_every_problem(tmp_path):
    bad = USER_RULE.replace("family: checkpoint_io", "family: disk").replace(
        "Stale file handle", "Stale(?=x) file handle")
    second = USER_RULE.replace("site.stale_nfs", "site.other").replace("role: root", "role: cause")
    d = user_dir(tmp_path, bad)
    (d / "zz.yaml").write_text(second, encoding="utf-8")
    result = run("check", str(d), "--no-builtin")
    assert result.exit_code == EXIT_PLAYBOOK
    assert result.stdout == ""
    text = result.stderr.replace(str(d), "DIR")
    golden("check_bad.txt", text)


def test_check_json(tmp_path):
    d = user_dir(tmp_path, USER_RULE.replace("severity: high", "severity: huge"))
    result = run("check", str(d), "--json")
    assert result.exit_code == EXIT_PLAYBOOK
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["problems"][0]["where"].endswith("site.yaml:5")
    assert "field 'severity'" in data["problems"][0]["message"]


def test_duplicate_id_with_builtin_names_both_files(tmp_path):
    d = user_dir(tmp_path, USER_RULE.replace("site.stale_nfs", "checkpoint.filesystem_error"))
    result = run("check", str(d))
    assert result.exit_code == EXIT_PLAYBOOK
    assert "checkpoint.filesystem_error: duplicate id, already defined at " in result.stderr
    assert "playbooks/checkpoint.yaml" in result.stderr and "site.yaml:2" in result.stderr
    assert "override: true" in result.stderr


def test_user_rule_overrides_builtin_explicitly(tmp_path, monkeypatch):
    text = USER_RULE.replace("site.stale_nfs", "checkpoint.filesystem_error").replace(
        "    priority: 90\n", "    priority: 90\n    override: true\n")
    monkeypatch.setenv("TRIAGE_PLAYBOOKS", str(user_dir(tmp_path, text)))
    out = run("show", "checkpoint.filesystem_error").stdout
    assert "Stale NFS handle on the checkpoint share" in out
    assert "(overrides an earlier rule)" in out


def test_test_command_on_builtin_and_user_dir(tmp_path):
    result = run("test")
    assert result.exit_code == 0
    assert re.fullmatch(r"\d+ examples of \d+ rules: 0 failed, 0 shadowed\n", result.stdout)
    result = run("test", str(user_dir(tmp_path)))
    assert result.exit_code == 0
    assert result.stdout == "2 examples of 1 rule: 0 failed, 0 shadowed\n"


BROKEN_RULE = """\
  - id: site.broken
    title: A rule whose examples are wrong
    family: checkpoint_io
    severity: low
    role: root
    priority: 5
    match:
      any:
        - 'Errno 116'
    causes:
      - category: infrastructure
        text: Nothing.
    next_steps:
      - Nothing.
    examples:
      match:
        - "OSError: [Errno 116] Stale file handle: '/x'"
        - "no errno here"
      no_match:
        - "Errno 116 again"
"""


def test_test_command_reports_failures_and_shadowing(tmp_path):
    text = USER_RULE + BROKEN_RULE
    result = run("test", str(user_dir(tmp_path, text)))
    assert result.exit_code == EXIT_BAD
    golden("test_failures.txt", result.stdout)
    strict = run("test", str(tmp_path / "site-playbooks"), "--json", "--strict")
    data = json.loads(strict.stdout)
    assert data["ok"] is False and len(data["failures"]) == 2 and len(data["shadowed"]) == 1
