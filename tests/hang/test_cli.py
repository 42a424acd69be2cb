"""`triage hang`: golden text and JSON answers, errors as one line, help and docs present.

Set TRIAGE_REGEN_GOLDEN=1 to rewrite the golden files on purpose (then read the diff).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli import app

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
CASES = ["nccl_silent", "nccl_desync", "pyspy"]


def run(*args):
    return CliRunner().invoke(app, ["hang", *map(str, args)])


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TRIAGE_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("case", CASES)
def test_text_golden(case):
    res = run(DATA / case)
    assert res.exit_code == 0, res.output
    golden(f"{case}.txt", res.stdout)


@pytest.mark.parametrize("case", CASES)
def test_json_golden(case):
    res = run(DATA / case, "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert obj["schema"] == "triage.hang/1"
    golden(f"{case}.json", json.dumps(obj, indent=2) + "\n")


def test_expected_culprits():
    assert json.loads(run(DATA / "nccl_silent", "--json").stdout)["culprits"] == [2]
    assert json.loads(run(DATA / "nccl_silent", "--json").stdout)["hosts"] == ["node-b"]
    assert json.loads(run(DATA / "nccl_desync", "--json").stdout)["culprits"] == [1]
    assert json.loads(run(DATA / "pyspy", "--json").stdout)["culprits"] == [2]


def test_missing_path_is_one_line_exit_3(tmp_path):
    res = run(tmp_path / "nope")
    assert res.exit_code == 3
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and "no such file or folder" in res.stderr
    assert "Traceback" not in res.stderr


def test_unsafe_dump_alone_is_an_error_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "trace_0").write_bytes(pickle.dumps({"entries": [Exploit()]}))
    res = run(tmp_path / "trace_0", "--json")
    assert res.exit_code == 3 and res.stdout == ""
    assert "refused" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_unsafe_dump_beside_good_evidence_is_a_warning(tmp_path):
    (tmp_path / "trace_0").write_bytes(pickle.dumps({"entries": [os.system]}))
    (tmp_path / "console.log").write_text((DATA / "nccl_desync" / "console.log").read_text())
    res = run(tmp_path, "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["culprits"] == [1]
    assert "warning:" in res.stderr and "refused" in res.stderr


def test_world_size_option_finds_silent_ranks(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("".join(
        f"[rank{r}]: RuntimeError: [gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
        "3000ms for recv operation to complete\n" for r in (0, 1, 2)))
    assert json.loads(run(log, "--json").stdout)["verdict"] == "undecided"
    obj = json.loads(run(log, "--json", "--world-size", "4").stdout)
    assert (obj["verdict"], obj["culprits"], obj["ranks"]["3"]["state"]) == ("culprit", [3],
                                                                              "silent")


def test_help_and_docs():
    res = CliRunner().invoke(app, ["hang", "--help"])
    assert res.exit_code == 0 and "--json" in res.stdout and "--world-size" in res.stdout
    doc = (HERE.parents[1] / "docs" / "hang.md").read_text()
    assert "triage hang" in doc and "--json" in doc and "--world-size" in doc
