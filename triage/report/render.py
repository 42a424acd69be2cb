"""Render a `ReportData` as Markdown, HTML or JSON, and write it with its figures.

Design
- Jinja2 templates under triage/report/templates/, loaded from the package (no file system
  paths, so an installed wheel works). Two environments: HTML with autoescape on for every
  template, Markdown with autoescape off and explicit filters for every value that may come from
  a log (`code`, `cell`, `text`, `fence`). `StrictUndefined` everywhere: a template naming a
  field that does not exist fails the tests, never prints an empty string.
- Log text is untrusted. HTML: autoescaping, no scripts at all in the page, and a
  Content-Security-Policy (`default-src 'none'`) so that even an escaping bug could not run or
  load anything; images are `data:` PNGs; CSS is inline. Markdown: log text only inside code
  spans or fenced blocks whose fence is longer than any backtick run in the text, so it cannot
  open HTML, links, images or @-mentions in a GitHub issue.
- HTML is one self-contained file (figures as base64 PNG). Markdown references figures by
  relative file name; `write_report` writes them beside the .md file as `<stem>-<name>.png`.
- Output is deterministic: the view-model is sorted and the clock injected; renderers add no
  time, no random ids, no absolute paths.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import jinja2

from triage.errors import InputError, UsageError
from triage.report.figures import family_colour, rank_figure_png
from triage.report.model import ReportData

FORMATS = ("md", "html", "json")
MESSAGE_CAP = 160  # characters of a log line shown in a table cell; excerpts have it all

SECTION_TITLES = {
    "summary": "Summary",
    "timeline": "Timeline",
    "figure": "Where failures appeared",
    "signatures": "Signatures",
    "suspects": "Suspect hosts",
    "hypotheses": "Hypotheses: one bug or many?",
    "bisections": "Bisection",
    "reproduce": "How to reproduce",
    "excerpts": "Appendix: log excerpts",
}


# ---------------------------------------------------------------- filters (both formats)

def rank_ranges(ranks: Iterable[int]) -> str:
    """(0, 1, 2, 3, 7) -> '0-3, 7'."""
    values = sorted(set(ranks))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ", ".join(parts)


def shorten(text: str, cap: int = MESSAGE_CAP) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= cap else text[: cap - 1] + "…"


def fmt_num(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if value < 0.9995 else f"{value * 100:.2f}%"


def excerpt_lines(excerpt) -> list[str]:  # noqa: ANN001 - an Excerpt
    """Plain-text excerpt lines: '>' marks the failure line, then its number, then the text;
    a '⋮' line marks lines left out (another rank's lines in an interleaved console)."""
    numbered = excerpt.numbered
    width = len(str(max(n for n, _, _ in numbered)))
    out: list[str] = []
    prev = None
    for number, text, hit in numbered:
        if prev is not None and number > prev + 1:
            out.append(f"  {'⋮':>{width}} |")
        out.append(f"{'>' if hit else ' '} {number:>{width}} | {text}")
        prev = number
    return out


def dash(value: object) -> str:
    return "–" if value is None or value == "" else str(value)


# ---------------------------------------------------------------- Markdown escaping

_BACKTICKS = re.compile(r"`+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_MD_LEADING = re.compile(r"^(\s*)([#+\-=]|\d+(?=[.)]))")


def md_code(text: object) -> str:
    """An inline code span holding `text` literally, whatever backticks it contains."""
    text = " ".join(str(text).splitlines()) if text is not None else ""
    if not text.strip():
        return "` `" if text else "–"
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text.startswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(text: object, cap: int | None = MESSAGE_CAP) -> str:
    """A code span fit for a GFM table cell (pipes escaped, one line, shortened)."""
    value = shorten(str(text), cap) if cap and text is not None else text
    return md_code(value).replace("|", "\\|")


def _escape_leading(m: re.Match[str]) -> str:
    mark = m.group(2)
    return m.group(1) + (mark + "\\" if mark[0].isdigit() else "\\" + mark)


def md_text(text: object) -> str:
    """Plain Markdown text with every character that could start markup escaped."""
    value = " ".join(str(text).splitlines())
    value = _MD_SPECIAL.sub(r"\\\1", value)
    value = _MD_LEADING.sub(_escape_leading, value)
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("@", "&#64;")  # no @-mentions from a log


def md_fence(lines: Iterable[str] | str, info: str = "text") -> str:
    """A fenced block holding `lines` literally: the fence outgrows any backtick run inside."""
    body = lines if isinstance(lines, str) else "\n".join(lines)
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


# ---------------------------------------------------------------- environments

def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("triage.report", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ranks=rank_ranges, shorten=shorten, num=fmt_num, pct=percent,
                       dash=dash, colour=family_colour,
                       excerpt_lines=excerpt_lines)
    env.globals.update(titles=SECTION_TITLES)
    if not autoescape:
        env.filters.update(code=md_code, cell=md_cell, text=md_text, fence=md_fence)
    return env


_HTML = None
_MD = None


def _html_env() -> jinja2.Environment:
    global _HTML
    if _HTML is None:
        _HTML = _environment(autoescape=True)
    return _HTML


def _md_env() -> jinja2.Environment:
    global _MD
    if _MD is None:
        _MD = _environment(autoescape=False)
    return _MD


# ---------------------------------------------------------------- renderers


def figure_name(data: ReportData) -> str:
    axis = data.figure.axis if data.figure else "step"
    return {"step": "rank-by-step", "time": "rank-by-time"}.get(axis, "rank-by-order")


def render_markdown(data: ReportData, figures: Mapping[str, str] | None = None) -> str:
    """Markdown for a GitHub issue. `figures` maps figure names to the file names to link."""
    return _md_env().get_template("report.md.j2").render(
        r=data, figures=dict(figures or {}), fig_name=figure_name(data))


def render_html(data: ReportData) -> str:
    """One self-contained HTML page (figures embedded, inline CSS, no scripts)."""
    images = {}
    if data.figure is not None and data.figure.points:
        png = rank_figure_png(data.figure)
        images[figure_name(data)] = "data:image/png;base64," + base64.b64encode(png).decode()
    css = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    return _html_env().get_template("report.html.j2").render(
        r=data, images=images, fig_name=figure_name(data), css=css)


def render_json(data: ReportData) -> str:
    return json.dumps(data.to_json(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- writing

@dataclass(frozen=True)
class WrittenReport:
    path: str  # "-" for stdout
    format: str
    figures: tuple[str, ...]  # files written beside a Markdown report
    sections: tuple[str, ...]
    bytes: int

    def to_json(self) -> dict:
        return {"schema": "triage.report-written/1", "path": self.path, "format": self.format,
                "figures": list(self.figures), "sections": list(self.sections),
                "bytes": self.bytes}


def check_format(fmt: str) -> str:
    value = (fmt or "").lower()
    if value == "markdown":
        value = "md"
    if value not in FORMATS:
        raise UsageError(f"unknown report format {fmt!r}", where="--format",
                         hint="use one of: md, html, json")
    return value


def render(data: ReportData, fmt: str, figures: Mapping[str, str] | None = None) -> str:
    fmt = check_format(fmt)
    if fmt == "md":
        return render_markdown(data, figures)
    if fmt == "html":
        return render_html(data)
    return render_json(data)


def write_report(data: ReportData, fmt: str, out: str | Path | None) -> tuple[WrittenReport, str]:
    """Write the report to `out` (None or "-": return the text for stdout, no figure files).

    Returns what was written and the text (the caller prints it when `out` is stdout).
    """
    fmt = check_format(fmt)
    to_stdout = out is None or str(out) == "-"
    written: list[str] = []
    figures: dict[str, str] = {}
    path = None if to_stdout else Path(out)
    if path is not None:
        if path.is_dir():
            raise InputError("the output path is a directory", where=str(path),
                             hint="give a file name, e.g. -o report.md")
        if not path.parent.exists():
            raise InputError("the output directory does not exist", where=str(path.parent),
                             hint="create it first")
    if fmt == "md" and path is not None and data.figure is not None and data.figure.points:
        name = figure_name(data)
        fig_path = path.with_name(f"{path.stem}-{name}.png")
        _write_bytes(fig_path, rank_figure_png(data.figure))
        figures[name] = fig_path.name
        written.append(str(fig_path))
    text = render(data, fmt, figures)
    if path is not None:
        _write_bytes(path, text.encode("utf-8"))
    report = WrittenReport(path="-" if path is None else str(path), format=fmt,
                           figures=tuple(written), sections=data.sections(),
                           bytes=len(text.encode("utf-8")))
    return report, text


def _write_bytes(path: Path, payload: bytes) -> None:
    """Write atomically: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(payload)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the report: {exc.strerror or exc}", where=str(path),
                         hint="check the directory exists and is writable") from None
