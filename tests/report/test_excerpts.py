"""Excerpts are read back verbatim from the inputs, with file:line, and degrade gracefully."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.records import SourceRef
from triage.report.excerpts import CUT_MARK, MAX_LINE, ExcerptRequest, read_excerpts


def _req(path, line, message):
    return ExcerptRequest(title="t", source=SourceRef(str(path), line), message=message)


def test_context_around_the_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    (x,) = read_excerpts([_req(log, 50, "line 50")], before=6, after=3)
    assert x.first_line == 44 and x.lines[0] == "line 44" and x.lines[-1] == "line 53"
    assert [n for n, _, hit in x.numbered if hit] == [50]


def test_interleaved_console_keeps_the_failing_ranks_lines(tmp_path):
    log = tmp_path / "console.log"
    lines = []
    for i in range(30):
        lines.append(f"[default{i % 4}]: step {i}")
    lines.append("[default2]: Traceback (most recent call last):")
    lines.append("[default1]: step 99")
    lines.append("[default2]: ValueError: bad batch")
    log.write_text("\n".join(lines) + "\n")
    (x,) = read_excerpts([_req(log, 33, "[default2]: ValueError: bad batch")], before=3)
    assert [n for n, _, _ in x.numbered] == [23, 27, 31, 33]  # real numbers, gaps shown
    assert all(t.startswith("[default2]:") for _, t, _ in x.numbered)
    assert "[default2]:" in x.title


def test_start_of_file_and_gzip(tmp_path):
    log = tmp_path / "a.log.gz"
    with gzip.open(log, "wt") as f:
        f.write("boom\nsecond\n")
    (x,) = read_excerpts([_req(log, 1, "boom")])
    assert x.first_line == 1 and x.lines == ("boom", "second")


def test_missing_or_changed_file_falls_back_to_the_scanned_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("other\n")
    changed, missing = read_excerpts([_req(log, 1, "RuntimeError: x"),
                                      _req(tmp_path / "gone.log", 7, "RuntimeError: y")])
    assert changed.lines == ("RuntimeError: x",) and "could not be re-read" in changed.title
    assert missing.lines == ("RuntimeError: y",) and missing.first_line == 7


def test_long_lines_are_cut_and_bad_bytes_replaced(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 5000 + b"\n\xff\xfeerror here\n")
    a, b = read_excerpts([_req(log, 1, "x" * 5000), _req(log, 2, "\ufffd\ufffderror here")])
    assert a.lines[0].endswith(CUT_MARK) and len(a.lines[0]) == MAX_LINE + len(CUT_MARK)
    assert b.lines[-1] == "\ufffd\ufffderror here"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                               blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                        max_size=30), min_size=1, max_size=40), st.data())
def test_excerpt_lines_are_the_file_lines(tmp_path_factory, lines, data):
    log = tmp_path_factory.mktemp("ex") / "a.log"
    log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    n = data.draw(st.integers(1, len(lines)))
    (x,) = read_excerpts([_req(log, n, lines[n - 1])])
    for number, text, _ in x.numbered:
        assert text == lines[number - 1]
    assert any(hit and number == n for number, _, hit in x.numbered) or not lines[n - 1].strip()
