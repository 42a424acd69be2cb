"""Storing runs: identity by content, metadata merge, exposure, signatures across runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.case import CaseStore
from triage.case.ingest import collect_inputs, content_hash, ingest_run, record_run
from triage.case.meta import load_run_file, parse_label, parse_labels
from triage.errors import CaseError, InputError, UsageError

from tests.case.factories import SIG_IMA, SIG_NAN, SIG_PEER, scan_result


@pytest.fixture
def store(tmp_path):
    with CaseStore.open(tmp_path / "c.db") as s:
        yield s


def _logs(tmp_path, name="run", text="hello\n", yaml_text=None):
    d = tmp_path / name
    d.mkdir()
    (d / "rank0.log").write_text(text)
    (d / "sub").mkdir()
    (d / "sub" / "rank1.log").write_text("world\n")
    if yaml_text is not None:
        (d / "triage-run.yaml").write_text(yaml_text)
    return d


def _scanner(result):
    calls = []

    def scan(paths, jobs=None):
        calls.append(paths)
        return result
    scan.calls = calls
    return scan


def test_same_files_again_add_nothing(store, tmp_path):
    d = _logs(tmp_path)
    scan = _scanner(scan_result(root=(SIG_NAN, 3, 40)))
    first = ingest_run(store, [d], run="a", labels={"seed": "1"}, scanner=scan)
    assert first.created and first.failed and first.occurrences == 8
    again = ingest_run(store, [d], run="b", labels={"seed": "2"}, scanner=scan)
    assert not again.created and again.run == "a" and again.run_id == first.run_id
    assert len(scan.calls) == 1  # the second time nothing was even scanned
    copy = tmp_path / "elsewhere"
    import shutil
    shutil.copytree(d, copy)
    assert not ingest_run(store, [copy], run="c", scanner=scan).created
    assert [r.name for r in store.runs()] == ["a"]
    assert store.run("a").labels == {"seed": "1"}
    assert store.integrity_check() == []


def test_changed_content_is_another_run_and_names_are_unique(store, tmp_path):
    d1 = _logs(tmp_path, "one", "x\n")
    d2 = _logs(tmp_path, "two", "y\n")
    assert content_hash(collect_inputs([d1])) != content_hash(collect_inputs([d2]))
    ingest_run(store, [d1], run="a", scanner=_scanner(scan_result()))
    with pytest.raises(CaseError, match="already exists with other files") as exc:
        ingest_run(store, [d2], run="a", scanner=_scanner(scan_result()))
    assert exc.value.where == "--run"
    assert ingest_run(store, [d2], run="b", scanner=_scanner(scan_result())).created


def test_content_hash_depends_on_names_and_bytes_not_order(tmp_path):
    d = _logs(tmp_path)
    a = collect_inputs([d])
    assert [i.name for i in a] == ["rank0.log", "sub/rank1.log"]
    assert content_hash(a) == content_hash(list(reversed(a)))
    (d / "rank0.log").rename(d / "rank9.log")
    assert content_hash(collect_inputs([d])) != content_hash(a)


def test_missing_or_empty_input(store, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        ingest_run(store, [tmp_path / "nope"], run="a", scanner=_scanner(scan_result()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no files"):
        ingest_run(store, [tmp_path / "empty"], run="a", scanner=_scanner(scan_result()))


def test_metadata_from_logs_yaml_and_labels(store, tmp_path):
    d = _logs(tmp_path, yaml_text=(
        "seed: 7\nversion: abc123\nworld_size: 4\nsteps: 50\nseconds: 3600\n"
        "hosts: {0: h-a, 1: h-a, 2: h-b, 3: h-b}\nlabels: {mitigation: ring, cluster: west}\n"))
    res = scan_result(world=4, hosts={}, root=None)  # the logs show no hosts
    ingest_run(store, [d], run="r", labels={"mitigation": "tree"}, scanner=_scanner(res))
    run = store.run("r")
    assert run.seed == "7" and run.version == "abc123" and run.world_size == 4
    assert run.labels == {"seed": "7", "version": "abc123", "mitigation": "tree", "cluster": "west"}
    assert run.hosts == {0: "h-a", 1: "h-a", 2: "h-b", 3: "h-b"}
    assert run.steps_completed == 50 and run.seconds == 3600
    assert run.gpu_steps == 4 * 100  # each rank's last step from the logs wins over `steps`
    assert run.host_steps == {"h-a": 200, "h-b": 200}
    assert run.gpu_hours == pytest.approx(4.0)
    assert not run.failed


def test_exposure_fills_ranks_the_logs_did_not_show(store):
    res = scan_result(world=2, root=None, steps=30)
    from dataclasses import replace
    res = replace(res, world_size=4)
    record_run(store, res, name="r", content_hash="h1")
    run = store.run("r")
    assert [r.rank for r in run.ranks] == [0, 1, 2, 3]
    assert run.gpu_steps == 4 * 30


def test_signatures_are_shared_across_runs(store):
    record_run(store, scan_result(root=(SIG_NAN, 1, 10)), name="r1", content_hash="h1")
    record_run(store, scan_result(root=(SIG_NAN, 5, 70)), name="r2", content_hash="h2")
    record_run(store, scan_result(root=(SIG_IMA, 2, 30)), name="r3", content_hash="h3")
    record_run(store, scan_result(root=None), name="r4", content_hash="h4")
    sigs = {s.id: s for s in store.signatures()}
    assert set(sigs) == {SIG_NAN, SIG_IMA, SIG_PEER}
    assert (sigs[SIG_NAN].runs, sigs[SIG_NAN].root_runs, sigs[SIG_NAN].ranks) == (2, 2, (1, 5))
    assert sigs[SIG_PEER].root_runs == 0 and sigs[SIG_PEER].runs == 3
    incs = store.incidents()
    assert [(i.run, i.root.signature, i.root.rank, i.root.step) for i in incs] == [
        ("r1", SIG_NAN, 1, 10), ("r2", SIG_NAN, 5, 70), ("r3", SIG_IMA, 2, 30)]
    assert all(len(i.symptoms) == 7 for i in incs)
    assert incs[0].signatures == (SIG_NAN, SIG_PEER)
    assert [r.failed for r in store.runs()] == [True, True, True, False]
    assert store.signature("sig1:nan").id == SIG_NAN  # unique prefix
    assert store.signature("nan0000").id == SIG_NAN  # without the sig1: prefix
    with pytest.raises(CaseError, match="matches 4 signatures|matches"):
        store.signature("sig1:")
    with pytest.raises(CaseError, match="no signature"):
        store.signature("sig1:zzz")
    occ = store.occurrences(signature=SIG_NAN)
    assert [(o.run, o.rank, o.path, o.line) for o in occ] == [
        ("r1", 1, "rank1.log", 10), ("r2", 5, "rank5.log", 10)]


def test_run_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "triage-run.yaml"
    p.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(InputError, match="duplicate key 'seed'") as exc:
        load_run_file(p)
    assert exc.value.where == f"{p}:2"
    p.write_text("sede: 1\n")
    with pytest.raises(InputError, match="sede: Extra inputs are not permitted"):
        load_run_file(p)
    p.write_text("world_size: many\n")
    with pytest.raises(InputError, match="world_size"):
        load_run_file(p)
    p.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_run_file(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_run_file(p)
    p.write_text("started: 2026-01-01T00:00:00Z\nended: 2026-01-01T01:30:00Z\n")
    assert load_run_file(p).duration() == 5400


def test_labels():
    assert parse_label("mitigation=NCCL_ALGO=Ring") == ("mitigation", "NCCL_ALGO=Ring")
    assert parse_labels(["seed=1", "seed=2", "v = x "]) == {"seed": "2", "v": "x"}
    for bad in ("noequals", "=x", "bad key=1"):
        with pytest.raises(UsageError):
            parse_label(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=30))
def test_label_parser_never_crashes(text):
    try:
        k, v = parse_label(text)
    except UsageError:
        return
    assert f"{k}={v}".strip() == text.strip() or "=" in text


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.dictionaries(st.sampled_from(["seed", "version", "world_size", "steps", "hosts", "labels",
                                     "seconds", "started", "name", "bogus"]),
                    st.one_of(st.integers(-5, 10**6), st.text(max_size=12), st.none(),
                              st.dictionaries(st.integers(0, 9) | st.text(max_size=5),
                                              st.text(max_size=5) | st.integers()),
                              st.lists(st.integers(), max_size=3)),
                    max_size=6).map(lambda d: __import__("yaml").safe_dump(d)),
))
def test_run_file_loader_accepts_or_rejects_cleanly(tmp_path_factory, text):
    """Whatever a user writes, the loader returns a validated model or raises InputError."""
    p = tmp_path_factory.mktemp("rf") / "triage-run.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        rf = load_run_file(p)
    except InputError as exc:
        assert exc.where and exc.where.startswith(str(p))
        return
    assert all(isinstance(v, str) for v in rf.label_map().values())


def test_library_never_imports_the_terminal():
    """triage.case and the analyses are libraries: no typer, no rich (STYLE: thin CLI)."""
    import ast
    root = Path(__file__).parents[2] / "triage"
    files = list((root / "case").glob("*.py")) + [root / "analyze" / "rates.py",
                                                  root / "analyze" / "suspects.py"]
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("typer", "rich") for n in names), f


def test_same_logs_with_other_metadata_are_refused(store, tmp_path):
    d = _logs(tmp_path, yaml_text="seed: 1\n")
    ingest_run(store, [d], run="a", scanner=_scanner(scan_result()))
    (d / "triage-run.yaml").write_text("seed: 2\n")
    with pytest.raises(CaseError, match="already in the case as run 'a'"):
        ingest_run(store, [d], run="b", scanner=_scanner(scan_result()))
    assert [r.name for r in store.runs()] == ["a"]


def test_mostly_overlapping_inputs_warn(store, tmp_path):
    d = _logs(tmp_path)
    ingest_run(store, [d], run="a", scanner=_scanner(scan_result()))
    (d / "extra.log").write_text("more\n")  # the same attempt, one file more
    res = ingest_run(store, [d], run="b", scanner=_scanner(scan_result()))
    assert res.created and len(res.warnings) == 1
    assert "2 of 3 input files are already in run 'a'" in res.warnings[0]


def test_failures_take_the_host_of_their_rank(store, tmp_path):
    d = _logs(tmp_path, yaml_text="hosts: {0: h0, 1: h0, 2: h1, 3: h1}\n")
    ingest_run(store, [d], run="r", scanner=_scanner(
        scan_result(world=4, hosts={}, root=(SIG_NAN, 2, 5))))
    root = store.incidents()[0].root
    assert (root.rank, root.host) == (2, "h1")
    assert {o.rank: o.host for o in store.occurrences()} == {0: "h0", 1: "h0", 2: "h1", 3: "h1"}
