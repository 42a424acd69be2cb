"""A hang: the culprit rank logs no error, so the report takes it from the hang analysis."""

from __future__ import annotations

from dataclasses import replace

from tests.report.factories import advice, incident
from triage.analyze.hang import HangVerdict
from triage.report import from_scan, render_markdown


def _hung():
    result = incident()
    verdict = HangVerdict(verdict="culprit", culprits=(2,), hosts=("node-b",),
                          process_group="0", seq=812, op="allreduce", ranks={},
                          why="ranks 0, 1, 3 wait in allreduce seq 812; rank 2 never issued it")
    return replace(result, hang=verdict)


def test_hang_culprit_in_title_summary_and_figure():
    data = from_scan(_hung(), now="2026-01-01T00:00:00Z", advice=advice)
    assert data.title == "Post-mortem: hang, culprit rank 2 (node-b)"
    assert "names rank 2 (host node-b) as the culprit at allreduce seq 812" in \
        data.summary.where_when
    culprit = [p for p in data.figure.points if p.role == "culprit"]
    assert [(p.rank, p.x) for p in culprit] == [(2, 40.0)]  # where rank 2 stopped
    assert "as the culprit" in render_markdown(data)


def test_undecided_hang_says_nothing_about_a_culprit():
    result = replace(_hung(), hang=replace(_hung().hang, verdict="undecided", culprits=()))
    data = from_scan(result, now="2026-01-01T00:00:00Z", advice=advice)
    assert "culprit" not in data.title and "culprit" not in data.summary.where_when
    assert not [p for p in data.figure.points if p.role == "culprit"]
