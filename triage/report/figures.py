"""The report's figures, drawn with matplotlib's Agg canvas into PNG bytes.

`rank_figure_png(fig)` draws where failures appeared: one row per rank, x = training step
(else seconds since the first failure, else discovery order). Grey bars show how far each rank
got (its last reported step), so a rank that stopped early stands out even without an error
line. Colour says the failure family, the marker says the role (star = root cause, circle =
symptom, diamond = independent).

Design
- `matplotlib.figure.Figure` with `FigureCanvasAgg` directly, never pyplot: no global state,
  no GUI backend, nothing to close, safe in threads and under pytest.
- No text from a log is drawn: labels are ranks, numbers and family names (a closed
  vocabulary). The PNG carries no metadata (no software version, no date), so the same data
  gives the same bytes on the same matplotlib.
- Thousands of ranks: ticks thin out automatically, markers shrink, and the bars are one
  `PolyCollection` (not one artist per rank), so drawing stays around a second.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from triage.records import FAMILIES
from triage.report.model import RankFigure

# One colour per family, dark enough for white chip text; neighbours that often appear
# together (an OOM and the timeouts it causes) get contrasting hues.
_COLOURS = {
    "collective_timeout": "#0072B2", "collective_mismatch": "#3C8DBC", "comm_error": "#009E73",
    "rendezvous": "#7A7A1F", "cuda_oom": "#D55E00", "host_oom": "#B36B00",
    "cuda_illegal_access": "#CC3D8F", "cuda_device_assert": "#882255", "cuda_other": "#AA4499",
    "gpu_hardware": "#222222", "nonfinite": "#C0392B", "loss_scale": "#2A9D8F",
    "dataloader": "#117733", "signal": "#332288", "checkpoint_io": "#4A6FA5",
    "python_exception": "#8C564B", "hang": "#6B6B6B", "other": "#555555",
}
_MARKERS = {"root": "*", "culprit": "X", "symptom": "o", "independent": "D"}
_X_LABEL = {"step": "training step", "time": "seconds after the first failure",
            "order": "order found by the scan"}


def family_colour(family: str) -> str:
    return _COLOURS.get(family, "#555555")


def rank_figure_png(data: RankFigure, *, dpi: int = 144) -> bytes:
    ranks = sorted({p.rank for p in data.points} | {r for r, _ in data.progress})
    n = max(1, len(ranks))
    height = min(6.5, 1.6 + 0.28 * min(n, 16) + (0.02 * min(n, 200) if n > 16 else 0))
    fig = Figure(figsize=(8.0, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    if data.progress:  # one collection for all bars: thousands of ranks draw in one go
        verts = [((0, r - 0.3), (0, r + 0.3), (max(last, 0), r + 0.3), (max(last, 0), r - 0.3))
                 for r, last in data.progress]
        ax.add_collection(PolyCollection(verts, facecolors="#e3e6ea", edgecolors="none",
                                         zorder=1))

    size = 60 if n <= 64 else 24 if n <= 512 else 8
    families = sorted({p.family for p in data.points},
                      key=lambda f: (FAMILIES.index(f) if f in FAMILIES else 99, f))
    for family in families:
        for role, marker in _MARKERS.items():
            pts = [p for p in data.points if p.family == family and p.role == role]
            if not pts:
                continue
            big = role in ("root", "culprit")
            # the root cause stays big whatever the number of ranks: it is what to look at
            ax.scatter([p.x for p in pts], [p.rank for p in pts], marker=marker,
                       s=max(size * 3.2, 160) if big else size, c=family_colour(family),
                       edgecolors="#222222" if big else "white",
                       linewidths=0.8 if big else (0.4 if n <= 64 else 0.0),
                       zorder=5 if role == "root" else 4 if big else 3)

    ax.set_xlabel(_X_LABEL.get(data.axis, data.axis))
    ax.set_ylabel(data.row_label)
    if data.row_labels and n <= 40:
        ax.set_yticks(ranks, [data.row_labels[r] if r < len(data.row_labels) else str(r)
                              for r in ranks], fontsize=8 if n > 16 else None)
    elif n <= 24:
        ax.set_yticks(ranks)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=16, integer=True))
    ax.set_ylim(max(ranks) + 0.7 if ranks else 1, (min(ranks) if ranks else 0) - 0.7)
    xs = [p.x for p in data.points] + [float(last) for _, last in data.progress]
    if xs:
        lo, hi = min(0.0, min(xs)), max(xs)
        pad = max(1.0, (hi - lo) * 0.04)
        ax.set_xlim(lo - pad, hi + pad)
    if data.axis in ("step", "order"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    handles = [Line2D([], [], linestyle="", marker="s", markersize=8,
                      color=family_colour(f), label=f) for f in families]
    roles = sorted({p.role for p in data.points}, key=lambda r: list(_MARKERS).index(r)
                   if r in _MARKERS else 9)
    handles += [Line2D([], [], linestyle="", marker=_MARKERS.get(r, "o"),
                       markersize=11 if r in ("root", "culprit") else 7, color="#555555",
                       label={"root": "root cause", "culprit": "hang culprit (last step)"}
                       .get(r, r)) for r in roles]
    if data.progress:
        handles.append(Line2D([], [], color="#d5d9de", linewidth=6, label="steps reported"))
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=8)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
