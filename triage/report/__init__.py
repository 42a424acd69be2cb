"""Post-mortem reports: from one scan or a whole case, as Markdown, HTML or JSON.

Pipeline: a builder per source fills the view-model (`triage.report.model.ReportData`), the
renderers turn it into text (`triage.report.render`), figures come from
`triage.report.figures`. Builders decide content and order; renderers only present it.

Public API
    from triage.report import from_scan, from_case, write_report, render
    data = from_scan(triage.scan.scan(paths), now="2026-01-01T00:00:00Z")
    data = from_case(store)                       # a triage.case.CaseStore
    written, text = write_report(data, "html", "report.html")
"""

from triage.report.from_scan import from_scan
from triage.report.model import REPORT_SCHEMA, ReportData
from triage.report.render import (
    FORMATS,
    WrittenReport,
    render,
    render_html,
    render_json,
    render_markdown,
    write_report,
)


def from_case(store, **kwargs):  # noqa: ANN001, ANN003 - see triage.report.from_case
    """The report of a whole case (imported lazily: the case stage is optional here)."""
    from triage.report.from_case import from_case as build  # noqa: PLC0415

    return build(store, **kwargs)


__all__ = [
    "FORMATS", "REPORT_SCHEMA", "ReportData", "WrittenReport", "from_case", "from_scan",
    "render", "render_html", "render_json", "render_markdown", "write_report",
]
