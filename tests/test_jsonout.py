"""triage.jsonout writes exactly what json.dumps(indent=2, ensure_ascii=False) writes."""

from __future__ import annotations

import io
import json
import math

from hypothesis import given, settings, strategies as st

from triage.jsonout import dumps, write_json

_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
            | st.text(max_size=20))
_keys = st.text(max_size=8) | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
_json = st.recursive(
    _scalars,
    lambda children: (st.lists(children, max_size=6)
                      | st.tuples(children, children)
                      | st.dictionaries(_keys, children, max_size=6)),
    max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_same_text_as_the_standard_library(obj):
    assert dumps(obj) == json.dumps(obj, indent=2, ensure_ascii=False)


def test_streams_in_pieces_and_keeps_odd_values():
    obj = {"ranks": list(range(200_000)), "inputs": [{"path": f"r{i}\u00e9\x00\"", "n": i}
                                                     for i in range(1000)],
           "x": [math.inf, -math.inf, 1e300, -0.0, True, None, [], {}], 3: "k", None: [[1], {}]}
    buf = io.StringIO()
    write_json(obj, buf)
    assert buf.getvalue() == json.dumps(obj, indent=2, ensure_ascii=False)


def test_rejects_what_json_rejects():
    import pytest

    for bad in ({"a": {1, 2}}, [object()], {(1, 2): 3}):
        with pytest.raises(TypeError):
            dumps(bad)
        with pytest.raises(TypeError):
            json.dumps(bad, indent=2)


_flat = st.dictionaries(st.sampled_from(["path", "bytes", "lines", 7, None]), _scalars, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(_flat | st.fixed_dictionaries({"path": st.text(max_size=5), "n": st.integers()})
                | st.dictionaries(st.text(max_size=3), st.lists(st.integers(), max_size=3), max_size=2),
                max_size=8))
def test_lists_of_records(rows):
    """Lists of dicts take their own path (cached key texts): the same text still."""
    assert dumps({"inputs": rows}) == json.dumps({"inputs": rows}, indent=2, ensure_ascii=False)


_row_keys = st.lists(st.sampled_from(["path", "bytes", "lines", "a%s", "%", "é", "{x}"]),
                     unique=True, max_size=4)


@settings(max_examples=300, deadline=None)
@given(_row_keys.flatmap(lambda keys: st.tuples(
    st.just(keys),
    st.lists(st.tuples(*[_scalars | st.lists(st.integers(), max_size=2) for _ in keys])
             | st.tuples(*[_scalars for _ in keys[:-1]]), max_size=6))))
def test_rows_encode_as_their_dicts(keys_rows):
    """Rows (tuples under one key tuple) give the text of the list of dicts they stand for,
    rows with containers or missing values included."""
    from triage.jsonout import Rows

    keys, tuples = keys_rows
    as_dicts = [dict(zip(keys, t)) for t in tuples]
    rows = Rows(tuple(keys), tuples)
    assert dumps({"inputs": rows, "n": 1}) == json.dumps({"inputs": as_dicts, "n": 1},
                                                         indent=2, ensure_ascii=False)
    assert list(rows) == as_dicts and rows == as_dicts and len(rows) == len(as_dicts)
