"""Open the HTML report in headless Chromium: the page renders its sections and its figure.

Debian's `chromium` runs as root with --no-sandbox and a fresh profile, no network features.
`--dump-dom` gives the DOM Chromium built (sections present, figure an embedded PNG);
`--screenshot` renders the page, saved as a test artefact under out/test-artefacts/report/
(or $TRIAGE_TEST_ARTEFACTS), and its pixels must show the figure (the grey progress bars and
the root-cause colour are only drawn by the figure).

Skips only when chromium is absent and not under CI; under CI=true its absence fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.report.factories import advice, incident, write_log
from triage.report import from_scan, render_html

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (CI installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")
    return exe


def _artefacts() -> Path:
    path = Path(os.environ.get("TRIAGE_TEST_ARTEFACTS", ROOT / "out" / "test-artefacts")) / "report"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.imgs: list[dict] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    exe = _chromium()
    tmp = tmp_path_factory.mktemp("chromium")
    log_dir = tmp / "logs"
    log_dir.mkdir()
    write_log(log_dir, payload=' <script>alert("x")</script>')
    old = os.getcwd()
    os.chdir(log_dir)
    try:
        data = from_scan(incident(payload=' <script>alert("x")</script>'),
                         now="2026-11-23T01:00:00Z", advice=advice)
    finally:
        os.chdir(old)
    page = tmp / "report.html"
    page.write_text(render_html(data), encoding="utf-8")
    url = page.as_uri()
    dom = _run(exe, tmp / "profile-dom", "--dump-dom", url)
    shot = tmp / "report-screenshot.png"
    pic = _run(exe, tmp / "profile-shot", "--window-size=1280,4200", f"--screenshot={shot}", url)
    if shot.exists():  # the artefact: copied whole (xdist workers may both write it)
        staged = _artefacts() / f".report-screenshot.{os.getpid()}.png"
        shutil.copyfile(shot, staged)
        staged.replace(_artefacts() / "report-screenshot.png")
    return data, dom, pic, shot


def test_dom_has_every_section_and_the_figure(rendered):
    data, dom, _, _ = rendered
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    for section in data.sections():
        assert section in parsed.ids, f"section {section} missing from the rendered DOM"
    assert parsed.scripts == 0
    figs = [i for i in parsed.imgs if i.get("id") == "fig-rank-by-step"]
    assert figs and figs[0]["src"].startswith("data:image/png;base64,")
    assert "&lt;script&gt;alert" in dom.stdout  # the payload is text in the DOM


def test_screenshot_shows_the_figure(rendered):
    _, _, pic, shot = rendered
    assert pic.returncode == 0, pic.stderr[-2000:]
    assert shot.exists(), f"no screenshot written; stderr: {pic.stderr[-2000:]}"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 4200)
    px = np.asarray(img.resize((640, 2100))).reshape(-1, 3).astype(int)
    # the progress bars' grey is drawn by the figure only
    bars = int((np.abs(px - np.array([0xE3, 0xE6, 0xEA])).max(axis=1) <= 3).sum())
    assert bars > 2000, f"figure progress bars not visible ({bars} px)"
    distinct = len({tuple(p) for p in px[::7]})
    assert distinct > 200, "the page looks blank"
