"""Fixtures for the scanner's format, golden and property tests.

`scan_fixtures` is a private copy of tests/scan/fixtures with every mtime set to FIXED_MTIME:
formats without a year (glog `E1123 ...`, syslog `Nov 23 ...`) take the year from the file's
mtime, so a checkout made in another year must not change the answers or the goldens.
"""

from __future__ import annotations

import calendar
import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
REPO = HERE.parent.parent
FIXED_MTIME = calendar.timegm((2026, 11, 23, 8, 0, 0, 0, 0, 0))


def copy_fixtures(dest: Path, mtime: float = FIXED_MTIME) -> Path:
    shutil.copytree(FIXTURES, dest)
    for root, _dirs, files in os.walk(dest):
        for name in files:
            os.utime(os.path.join(root, name), (mtime, mtime))
    return dest


@pytest.fixture(scope="session")
def scan_fixtures(tmp_path_factory) -> Path:
    return copy_fixtures(tmp_path_factory.mktemp("scan") / "fixtures")


def fixture_lines(path: Path) -> list[str]:
    """The lines of a fixture as the scanner numbers them (split on \\n only), decoded leniently."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    return data.decode("utf-8", "replace").split("\n")


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based number of the nth line of `path` that contains `needle` (asserts it exists)."""
    hits = [i + 1 for i, line in enumerate(fixture_lines(path)) if needle in line]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} time(s) in {path.name}"
    return hits[nth - 1]
