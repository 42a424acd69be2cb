"""`triage report` end to end: a real log file, the real scanner, the real CLI process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.report.factories import write_log

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = ' <script>alert("x")</script> " onerror="alert(1)'


def triage(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1700000000",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "triage", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def logdir(tmp_path):
    write_log(tmp_path, payload=PAYLOAD)
    return tmp_path


def test_markdown_with_figure_and_json_summary(logdir):
    res = triage("report", "console.log", "--format", "md", "-o", "pm.md", "--json", cwd=logdir)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["format"] == "md" and out["path"] == "pm.md"
    assert out["figures"] == ["pm-rank-by-step.png"]
    assert {"summary", "timeline", "figure", "signatures", "excerpts"} <= set(out["sections"])
    md = (logdir / "pm.md").read_text()
    assert "![" in md and "](pm-rank-by-step.png)" in md
    assert "The first failure was cuda\\_oom on rank 2" in md
    assert "`console.log:20`" in md  # excerpt names its file:line
    assert (logdir / "pm-rank-by-step.png").stat().st_size > 1000


def test_html_from_real_scan_escapes_payloads(logdir):
    res = triage("report", "console.log", "--format", "html", "-o", "pm.html", cwd=logdir)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "wrote pm.html" in res.stderr
    html = (logdir / "pm.html").read_text()
    tags: list[tuple[str, list]] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    P().feed(html)
    assert all(t != "script" for t, _ in tags)
    assert not [a for _, attrs in tags for a, _ in attrs if a.startswith("on")]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "data:image/png;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "src=\"http" not in html


def test_json_to_stdout(logdir):
    res = triage("report", "console.log", "--format", "json", cwd=logdir)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "triage.report/1" and doc["generated_at"] == "2023-11-14T22:13:20Z"
    assert doc["summary"]["confidence"] in ("high", "medium", "low")
    assert doc["excerpts"][0]["source"] == {"path": "console.log", "line": 20}


@pytest.mark.parametrize("args, code, needle", [
    ((), 2, "nothing to report on"),
    (("console.log", "--case", "c.db"), 2, "not both"),
    (("--case", "missing.db"), 5, "no such case file"),
    (("console.log", "--format", "pdf"), 2, "unknown report format"),
    (("console.log", "--json"), 2, "--json needs -o FILE"),
    (("console.log", "-o", "nodir/x.md"), 3, "does not exist"),
    (("nothere.log",), 3, "nothere.log"),
])
def test_bad_input_is_one_line_and_exit_code(logdir, args, code, needle):
    res = triage("report", *args, cwd=logdir)
    assert res.returncode == code, (res.returncode, res.stderr)
    assert needle in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
