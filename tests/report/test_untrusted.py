"""Log text is untrusted: nothing from a log can run in the HTML page or mark up the Markdown.

The payloads sit where a log puts text: the failure line itself (message, excerpt), the
signature template and the host name. They are written into a real log file so the excerpt
reader reads them back from disk, as it does for a scan.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.report.factories import advice, incident, write_log
from triage.report import from_scan, render_html, render_markdown

PAYLOADS = [
    '<script>alert("pwned")</script>',
    '" onerror="alert(1)',
    "' onerror='alert(1)",
    "<img src=x onerror=alert(1)>",
    "</style><script>alert(2)</script>",
    "</pre></code></td><svg onload=alert(3)>",
    "<a href=\"javascript:alert(4)\">x</a>",
    "`` <script>alert(5)</script> ``` |x| @everyone [link](javascript:alert(6))",
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _report(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path, payload=payload)
    return from_scan(incident(payload=payload, host_payload=payload), now="2026-01-01T00:00:00Z",
                     advice=advice)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_escapes_log_text(tmp_path, monkeypatch, payload):
    data = _report(tmp_path, monkeypatch, payload)
    html = render_html(data)
    parser = _Tags()
    parser.feed(html)
    names = [t for t, _ in parser.tags]
    assert "script" not in names and "svg" not in names and "iframe" not in names
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler attribute on <{tag}>: {name}"
            assert "javascript:" not in (value or "").lower()
        if tag == "img":
            assert dict(attrs)["src"].startswith("data:image/png;base64,")
        if tag == "a":
            assert dict(attrs)["href"].startswith("#")
    # the payload is shown, as text, verbatim (in the excerpt, read back from the log file)
    assert any(payload in chunk for chunk in parser.text)
    # defence in depth: the page forbids scripts even if escaping ever failed
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert html.count("<style>") == 1 and html.count("</style>") == 1


_FENCE = re.compile(r"^(`{3,})[^\n]*\n.*?^\1\s*$", re.S | re.M)
_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)


def _outside_code(md: str) -> str:
    return _SPAN.sub("", _FENCE.sub("", md))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markdown_keeps_log_text_in_code(tmp_path, monkeypatch, payload):
    data = _report(tmp_path, monkeypatch, payload)
    md = render_markdown(data, {"rank-by-step": "report-rank-by-step.png"})
    rest = _outside_code(md)
    # Outside code no raw HTML at all (the template writes none), no @-mention, and no link
    # but the figure's own; escaped text (&lt;, \[) renders as text on GitHub.
    assert "<" not in rest, "raw '<' outside code in Markdown"
    assert "@" not in rest, "an @-mention outside code in Markdown"
    assert re.findall(r"(?<!\\)\]\(", rest) == ["]("]
    assert "](report-rank-by-step.png)" in rest
    assert payload in md  # verbatim inside code


def test_outside_code_helper_can_fail():
    assert "<script" in _outside_code("text <script> `code`")
    assert "<script" not in _outside_code("text `<script>` and\n```\n<script>\n```\n")
