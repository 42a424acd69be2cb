"""The rank-by-step figure: a real PNG, deterministic, and fast with many ranks."""

from __future__ import annotations

import io
import time

from PIL import Image

from triage.report.figures import rank_figure_png
from triage.report.model import FigurePoint, RankFigure


def _fig(n_ranks: int) -> RankFigure:
    pts = [FigurePoint(rank=r, x=float(100 + r % 7), family="collective_timeout", role="symptom")
           for r in range(1, n_ranks)]
    pts.append(FigurePoint(rank=0, x=97.0, family="cuda_oom", role="root"))
    return RankFigure(axis="step", points=tuple(pts),
                      progress=tuple((r, 96 + r % 5) for r in range(n_ranks)))


def test_png_is_deterministic_and_sized():
    a, b = rank_figure_png(_fig(8)), rank_figure_png(_fig(8))
    assert a == b
    img = Image.open(io.BytesIO(a))
    assert img.format == "PNG" and img.size[0] >= 1000
    assert b"Software" not in a[:400]


def test_root_cause_colour_is_drawn():
    img = Image.open(io.BytesIO(rank_figure_png(_fig(4)))).convert("RGB")
    colours = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    assert (0xD5, 0x5E, 0x00) in colours  # cuda_oom's star


def test_many_ranks_stay_fast():
    t0 = time.perf_counter()
    png = rank_figure_png(_fig(2048))
    assert time.perf_counter() - t0 < 15  # ~1.3 s here; generous for a shared CI machine
    assert png[:4] == b"\x89PNG"


def test_time_and_run_rows():
    fig = RankFigure(axis="time", points=(FigurePoint(0, 0.0, "nonfinite", "root"),
                                          FigurePoint(1, 12.5, "hang", "symptom")),
                     row_label="run", row_labels=("attempt-1", "attempt-2"))
    assert rank_figure_png(fig)[:4] == b"\x89PNG"
