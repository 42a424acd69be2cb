"""The timeline's step-to-column mapping: fixed width, and a failure is never hidden by scaling."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.case.timeline import Mark, Row

roles = st.sampled_from(["root", "symptom", "independent"])


@settings(max_examples=300, deadline=None)
@given(st.integers(10, 200), st.integers(0, 10**6), st.data())
def test_cells_keep_width_and_show_the_root(width, max_step, data):
    steps = data.draw(st.none() | st.integers(0, max_step))
    marks = tuple(Mark(data.draw(st.none() | st.integers(0, max_step)), data.draw(roles), "f", "s")
                  for _ in range(data.draw(st.integers(0, 5))))
    cells = Row("r", None, steps, marks).cells(width, max_step)
    assert len(cells) == width
    assert set(cells) <= set(" -Xxo")
    if any(m.role == "root" for m in marks):
        assert "X" in cells
    if steps is not None and not marks:
        assert cells.rstrip(" ") == "-" * len(cells.rstrip(" "))
        assert cells.startswith("-")
