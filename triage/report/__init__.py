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

# Both builders are imported here, eagerly: importing a submodule binds its name on the package,
# so a lazily imported `triage.report.from_case` module would replace the function of that name.
from triage.report.from_case import from_case
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


__all__ = [
    "FORMATS", "REPORT_SCHEMA", "ReportData", "WrittenReport", "from_case", "from_scan",
    "render", "render_html", "render_json", "render_markdown", "write_report",
]
