"""The report library stays a library: no typer/rich, no network, no scripts in templates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "triage" / "report" / "templates"


def test_library_imports_no_cli_toolkit():
    code = ("import sys, triage.report, triage.report.from_case, triage.report.figures;"
            "bad = [m for m in ('typer', 'rich', 'matplotlib.pyplot') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_templates_have_no_script_and_no_remote_resource():
    for path in TEMPLATES.iterdir():
        text = path.read_text(encoding="utf-8").lower()
        assert "<script" not in text.replace("no <script>", ""), path.name
        for needle in ("http://", "https://", "@import", "url("):
            assert needle not in text, f"{path.name} names a remote resource: {needle}"
        assert "| safe" not in text or path.name == "report.html.j2"


def test_only_the_package_css_is_marked_safe():
    text = (TEMPLATES / "report.html.j2").read_text(encoding="utf-8")
    assert text.count("| safe") == 1 and "{{ css | safe }}" in text


def test_help_documents_the_command():
    res = subprocess.run([sys.executable, "-m", "triage", "report", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for option in ("--case", "--format", "--output", "--json"):
        assert option in res.stdout
    doc = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    assert "triage report" in doc and "--case" in doc and "--format" in doc
