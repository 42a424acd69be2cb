"""Golden Markdown reports: byte-stable for a fixed clock, sorted content and relative paths."""

from __future__ import annotations

from dataclasses import replace

from tests.report.factories import advice, incident, write_log
from tests.report.golden import check_golden
from triage.records import InputInfo, RankState, ScanResult, ScanStats
from triage.report import from_scan, render_markdown, write_report

NOW = "2026-11-23T01:00:00Z"


def test_incident_markdown_golden(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path)
    data = from_scan(incident(), now=NOW, advice=advice)
    written, text = write_report(data, "md", "report.md")
    check_golden("incident.md", text)
    assert written.figures == ("report.md"[:-3] + "-rank-by-step.png",)
    assert (tmp_path / "report-rank-by-step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](report-rank-by-step.png)" in text


def test_no_timestamps_no_file_golden(tmp_path, monkeypatch):
    """No timestamps (order by step, lower confidence) and an input that cannot be re-read."""
    monkeypatch.chdir(tmp_path)
    data = from_scan(incident(with_time=False), now=NOW, advice=lambda rule: None)
    text = render_markdown(data)
    check_golden("incident-no-time.md", text)
    assert text.startswith("#") and "summary" in data.sections()


def test_clean_scan_golden():
    clean = ScanResult(inputs=(InputInfo("logs/rank0.log", 100, 20),), root_cause=None,
                       failures=(), signatures=(), stats=ScanStats(20, 100, 0.0),
                       ranks=(RankState(0, "node-a", 19), RankState(1, "node-a", 19)),
                       world_size=2, max_step=19)
    data = from_scan(clean, now=NOW, advice=advice)
    assert data.sections() == ("summary", "reproduce")
    assert data.summary.confidence == "unknown"
    check_golden("clean.md", render_markdown(data))


def test_same_input_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path)
    one = render_markdown(from_scan(incident(), now=NOW, advice=advice))
    # failures handed over in another order: the report must not change
    shuffled = incident()
    shuffled = replace(shuffled, signatures=tuple(reversed(shuffled.signatures)))
    two = render_markdown(from_scan(shuffled, now=NOW, advice=advice))
    assert one == two


def test_clock_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    data = from_scan(incident(), advice=advice)
    assert data.generated_at == "2023-11-14T22:13:20Z"
