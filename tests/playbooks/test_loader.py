"""The loader: strict YAML, schema errors naming file/line/rule/field, RE2-only patterns,
user directories, overrides and duplicate ids."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from triage.classify.playbook import (
    PlaybookErrors,
    UnknownRuleError,
    builtin_dir,
    load_playbooks,
)
from triage.errors import EXIT_PLAYBOOK, PlaybookError

GOOD_RULE = """\
rules:
  - id: site.fs_stale
    title: Stale NFS file handle
    family: checkpoint_io
    severity: medium
    role: root
    priority: 60
    match:
      any:
        - 'Stale file handle: ''(?P<path>[^'']+)'''
    causes:
      - category: infrastructure
        text: The NFS server restarted.
    next_steps:
      - Remount the share.
    examples:
      match:
        - "OSError: [Errno 116] Stale file handle: '/ckpt/step_100.pt'"
      no_match:
        - "saved /ckpt/step_100.pt"
"""


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    d = tmp_path / "pb"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return d


def load_user(d: Path, **kw):
    return load_playbooks([d], builtin=False, use_env=False, **kw)


def error_of(d: Path) -> PlaybookError:
    with pytest.raises(PlaybookError) as info:
        load_user(d)
    assert info.value.exit_code == EXIT_PLAYBOOK
    return info.value


def test_good_rule_loads_and_matches(tmp_path):
    pb = load_user(write(tmp_path, GOOD_RULE))
    rule = pb.get("site.fs_stale")
    assert rule.line == 2 and rule.path.endswith("site.yaml")
    assert rule.search("OSError: [Errno 116] Stale file handle: '/ckpt/a.pt'") == {
        "path": "/ckpt/a.pt"}
    assert rule.search("all good") is None


def test_builtin_dir_is_the_repo_playbooks():
    assert builtin_dir() == Path(__file__).resolve().parents[2] / "playbooks"


@pytest.mark.parametrize("bad, line, needle", [
    (GOOD_RULE.replace("family: checkpoint_io", "family: disk"), 4, "field 'family': must be"),
    (GOOD_RULE.replace("severity: medium", "severity: medium\n    colour: red"), 6,
     "field 'colour': unknown field"),
    (GOOD_RULE.replace("    priority: 60\n", ""), 2, "field 'priority': required field missing"),
    (GOOD_RULE.replace("priority: 60", "priority: '60'"), 7, "field 'priority'"),
    (GOOD_RULE.replace("category: infrastructure", "category: cosmic_rays"), 12,
     "field 'causes.0.category'"),
    (GOOD_RULE.replace("id: site.fs_stale", "id: Site Stale"), 2, "field 'id'"),
])
def test_schema_errors_name_file_line_rule_and_field(tmp_path, bad, line, needle):
    err = error_of(write(tmp_path, bad))
    assert err.where.endswith(f"site.yaml:{line}"), err.where
    assert needle in err.message, err.message
    assert "rule " in err.message


@pytest.mark.parametrize("pattern, why", [
    ("Stale(?=x)", "RE2 does not support lookahead; rewrite without it"),
    ("(?<!x)Stale", "RE2 does not support lookbehind"),
    (r"(Stale) \1", "RE2 does not support backreferences"),
    ("(?i)stale", "inline flags"),
    ("^Stale", "anchors"),
    (".*Stale", "starts with .*"),
    ("x*", "matches the empty string"),
    ("(?P<color>Stale)", "unknown group name 'color'"),
    ("(?P<rnk>Stale)", "did you mean rank?"),
    (r"Stale[", "unterminated character class"),
    ("Stale)", "RE2 rejects it"),
    (r"(\w+\s?){1000}Stale", "RE2"),
])
def test_bad_patterns_are_rejected_with_a_reason(tmp_path, pattern, why):
    text = GOOD_RULE.replace("""'Stale file handle: ''(?P<path>[^'']+)'''""", repr(pattern).replace("\\\\", "\\"))
    err = error_of(write(tmp_path, text))
    assert why in err.message, err.message
    assert "rule site.fs_stale: field 'match.any[0]': pattern" in err.message
    assert err.where.endswith("site.yaml:10")


def test_re2_errors_do_not_reach_stderr(tmp_path, capfd):
    error_of(write(tmp_path, GOOD_RULE.replace("(?P<path>", "(?P<path")))
    assert capfd.readouterr().err == ""


def test_catastrophic_pattern_is_linear_time(tmp_path):
    # (a+)+$-style nesting backtracks exponentially in a backtracking engine; RE2 is linear.
    text = GOOD_RULE.replace("""'Stale file handle: ''(?P<path>[^'']+)'''""", r"'(?:\w+\s?)+!'")
    text = text.replace('''        - "OSError: [Errno 116] Stale file handle: '/ckpt/step_100.pt'"''',
                        '''        - "oops!"''')
    pb = load_user(write(tmp_path, text))
    rule = pb.get("site.fs_stale")
    line = "a" * 200_000 + "#"  # a backtracking engine needs ~2**n steps (n=22: seconds)
    start = time.perf_counter()
    assert rule.search(line) is None
    assert pb.classify(line) is None  # the RE2 set used by classify, too
    assert rule.prefilter_patterns() == (r"(?:\w+\s?)+!",)
    assert time.perf_counter() - start < 2.0


def test_yaml_duplicate_keys_rejected(tmp_path):
    err = error_of(write(tmp_path, GOOD_RULE.replace("    role: root\n", "    role: root\n    role: symptom\n")))
    assert "duplicate key 'role'" in err.message and err.where.endswith("site.yaml:7")


def test_yaml_object_tags_rejected(tmp_path):
    err = error_of(write(tmp_path, GOOD_RULE.replace("title: Stale NFS file handle",
                                                     "title: !!python/object/apply:os.system ['true']")))
    assert "tags that construct objects are not allowed" in err.message
    assert err.where.endswith("site.yaml:3")


def test_yaml_aliases_rejected(tmp_path):
    text = GOOD_RULE.replace("title: Stale NFS file handle", "title: &t Stale").replace(
        "      - Remount the share.", "      - *t")
    assert "anchors and aliases are not allowed" in error_of(write(tmp_path, text)).message


def test_yaml_syntax_error_has_a_line(tmp_path):
    err = error_of(write(tmp_path, GOOD_RULE.replace("    severity: medium", "  severity: [medium")))
    assert err.where.startswith(str(tmp_path)) and ":" in err.where


def test_top_level_must_be_rules(tmp_path):
    err = error_of(write(tmp_path, "- id: x\n"))
    assert "rules" in (err.hint or "")


def test_masks_file_is_skipped(tmp_path):
    d = write(tmp_path, GOOD_RULE)
    (d / "masks.yaml").write_text("masks:\n  - {name: NUM, pattern: '\\d+'}\n")
    assert len(load_user(d)) == 1


def test_duplicate_id_names_both_files(tmp_path):
    d = write(tmp_path, GOOD_RULE, "a.yaml")
    write(tmp_path, GOOD_RULE, "b.yaml")
    err = error_of(d)
    assert err.where.endswith("b.yaml:2")
    assert "a.yaml:2" in err.message and "override: true" in err.hint


def test_override_replaces_builtin_in_place(tmp_path):
    builtin = load_playbooks(use_env=False)
    first = builtin.rules[0]
    text = GOOD_RULE.replace("id: site.fs_stale", f"id: {first.id}").replace(
        "    priority: 60\n", "    priority: 60\n    override: true\n")
    merged = load_playbooks([write(tmp_path, text)], use_env=False)
    assert len(merged) == len(builtin)
    assert merged.rules[0].title == "Stale NFS file handle"
    assert merged.rules[0].override


def test_override_of_nothing_is_an_error(tmp_path):
    text = GOOD_RULE.replace("    priority: 60\n", "    priority: 60\n    override: true\n")
    assert "no earlier rule has this id" in error_of(write(tmp_path, text)).message


def test_env_var_adds_directories(tmp_path, monkeypatch):
    d = write(tmp_path, GOOD_RULE)
    monkeypatch.setenv("TRIAGE_PLAYBOOKS", str(d))
    assert load_playbooks(builtin=False).get("site.fs_stale")
    assert len(load_playbooks(builtin=False, use_env=False)) == 0


def test_missing_directory_is_a_playbook_error(tmp_path):
    err = error_of(tmp_path / "nope")
    assert "no such playbook directory" in err.message


def test_collect_all_reports_every_problem(tmp_path):
    bad1 = GOOD_RULE.replace("family: checkpoint_io", "family: disk")
    bad2 = GOOD_RULE.replace("id: site.fs_stale", "id: site.other").replace("Stale file", "Stale(?=x)")
    d = write(tmp_path, bad1, "a.yaml")
    write(tmp_path, bad2, "b.yaml")
    with pytest.raises(PlaybookErrors) as info:
        load_user(d, collect_all=True)
    assert [e.where.rsplit("/", 1)[-1] for e in info.value.errors] == ["a.yaml:4", "b.yaml:10"]
    assert "(and 1 more problem)" in str(info.value)


def test_unknown_rule_id_suggests(tmp_path):
    pb = load_user(write(tmp_path, GOOD_RULE))
    with pytest.raises(UnknownRuleError) as info:
        pb.get("site.fs_stal")
    assert "site.fs_stale" in info.value.hint
    with pytest.raises(KeyError):
        pb.get("nothing.here")


def test_playbook_pickles_after_use(tmp_path):
    # Scan workers receive the playbook by pickle; compiled caches must not travel.
    import pickle

    pb = load_user(write(tmp_path, GOOD_RULE))
    line = "OSError: [Errno 116] Stale file handle: '/ckpt/a.pt'"
    assert pb.classify(line)[0].id == "site.fs_stale"
    copy = pickle.loads(pickle.dumps(pb))
    assert copy.classify(line) == (copy.get("site.fs_stale"), {"path": "/ckpt/a.pt"})
    assert copy == pb


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _mutated_rule_files(draw):
    lines = GOOD_RULE.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "junk", "indent", "char"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "junk":
            lines.insert(i, draw(st.text(max_size=30)) + "\n")
        elif op == "indent":
            lines[i] = " " + lines[i]
        elif op == "char" and lines[i].strip():
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.sampled_from(list("[]{}:'\"&*!|>-#\\(?"))) + lines[i][j + 1:]
    return "".join(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mutated_rule_files())
def test_any_damaged_file_loads_or_gives_a_playbook_error(tmp_path, text):
    d = tmp_path / "fuzz"
    d.mkdir(exist_ok=True)
    (d / "site.yaml").write_text(text, encoding="utf-8")
    try:
        load_user(d, collect_all=True)
    except PlaybookErrors as exc:
        for e in exc.errors:
            assert e.where and str(d) in e.where and e.message
    except PlaybookError as exc:
        assert exc.where and str(d) in exc.where


def test_collect_all_reports_every_problem_of_one_rule(tmp_path):
    text = GOOD_RULE.replace("family: checkpoint_io", "family: disk").replace(
        "severity: medium", "severity: huge")
    with pytest.raises(PlaybookErrors) as info:
        load_user(write(tmp_path, text), collect_all=True)
    assert [(e.where.rsplit(":", 1)[-1], e.message.split(": ", 2)[1]) for e in info.value.errors] \
        == [("4", "field 'family'"), ("5", "field 'severity'")]
    text = GOOD_RULE.replace("""'Stale file handle: ''(?P<path>[^'']+)'''""",
                             "'Stale(?=x)'\n        - '(?P<colour>x)'")
    with pytest.raises(PlaybookErrors) as info:
        load_user(write(tmp_path / "b", text), collect_all=True)
    assert len(info.value.errors) == 2


def test_library_does_not_import_the_cli_stack():
    import subprocess
    import sys

    code = ("import sys, triage.classify.playbook as p; p.load_playbooks(use_env=False); "
            "bad = [m for m in ('typer', 'rich', 'click') if m in sys.modules]; "
            "print(*bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"library imported {done.stdout} {done.stderr}"
