"""Playbooks: YAML rules that name a failure, say whether it is a root cause or a symptom, and
say what to do next.

A playbook directory holds `*.yaml` files, each a mapping with one key, `rules`, a list of rules
(schema in docs/playbooks.md). This module loads them into frozen `Rule`s, validates every field
with a message naming file, line, rule id and field, and matches log lines against them.

Design
- YAML is read with a strict safe loader: duplicate keys, anchors/aliases and every tag that
  would construct an object are rejected; each mapping and list remembers the line it starts
  on, so pydantic's validation errors (models with `extra="forbid"`) map back to a line.
- Patterns are RE2 (google-re2): matching runs in time linear in the line, so no user pattern
  can backtrack catastrophically. What RE2 refuses (lookaround, backreferences) is rejected at
  load with one line saying why. Program size is capped (`MAX_PROGRAM`, `MAX_MEM`) so a
  monster pattern is rejected too, and RE2's own error logging is off (stderr stays clean).
- Patterns are unanchored searches in one log line whose launcher prefix and ANSI codes were
  removed (timestamps and log levels remain). Anchors (`^`, `$`, `\\A`, `\\z`), inline flags
  (use `ignore_case`), `\\Q..\\E`, `\\C`, `\\p{..}`, a leading `.*` and patterns that match the
  empty string are rejected: each either breaks the scanner's multi-pattern prefilter or makes
  it match every line.
- `Rule.prefilter_patterns()` rewrites `any` into the dialect both RE2 sets and Hyperscan
  accept (every group non-capturing). Because of the restrictions above, a line passes the
  prefilter exactly when one `any` pattern matches it; `all`/`none` are checked afterwards,
  on candidates only.
- Rule order: built-in rules first (files sorted by name), then `TRIAGE_PLAYBOOKS` directories,
  then explicit directories. A later rule with an existing id is an error naming both places,
  unless it says `override: true`, in which case it replaces the earlier rule in place.
  `classify` returns the matching rule with the highest `priority`, ties broken by that order.

Invariants
- Every loaded rule compiled, has at least one positive example, and its `family`, `severity`,
  `role` and cause categories are in their closed vocabularies.
- Named groups are drawn from `GROUP_NAMES`, so consumers can rely on their meaning.

Limits
- A rule sees one line: multi-line context (a traceback's last line naming a deeper cause)
  is the scanner's business.
- The example checks (`check_examples`) exercise rules on their own examples only; they say
  nothing about lines nobody wrote down.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import re2
import yaml

from triage.classify.fastre import FastRegex
from triage.errors import PlaybookError, UsageError
from triage.records import FAMILIES

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
ROLES: tuple[str, ...] = ("root", "symptom")
CAUSE_CATEGORIES: tuple[str, ...] = (
    "hardware", "network", "framework", "user_code", "data", "configuration", "infrastructure",
)
# Named groups a pattern may capture, and what each holds (the scanner and the hang analysis
# read them by these names).
GROUP_NAMES: dict[str, str] = {
    "rank": "rank of the process that logged the message, as the message states it",
    "host": "host name or address of the process that logged the message",
    "peer": "the other side the message names: a peer's host/address or a rank it blames",
    "culprit": "the global rank the failure belongs to, when another rank reports it (probe checks)",
    "step": "training step / iteration",
    "seq": "collective sequence number (SeqNum)",
    "op": "collective op type (ALLREDUCE, BROADCAST, recv, ...)",
    "pg": "process group name or id",
    "numel_in": "input element count",
    "numel_out": "output element count",
    "timeout_ms": "timeout in milliseconds",
    "bytes": "a size, as written (e.g. '20.00 MiB')",
    "total": "GPU total capacity, as written",
    "free": "free memory, as written",
    "allocated": "memory allocated by the framework, as written",
    "reserved": "memory reserved by the framework, as written",
    "xid": "NVIDIA Xid code",
    "exit_code": "process exit code",
    "signal": "signal name or number",
    "pid": "process id",
    "gpu": "GPU index or PCI bus id",
    "exc": "exception type",
    "status": "library status/error code (cuBLAS, cuDNN, NCCL result)",
    "path": "a file path",
    "key": "a state-dict key or store key",
    "errno": "an OS error number or name",
}
ENV_VAR = "TRIAGE_PLAYBOOKS"
SKIP_FILES = frozenset({"masks.yaml"})  # not rules: the signature masks (triage.classify)
MAX_FILE_BYTES = 4 << 20
MAX_PATTERN_CHARS = 2000
MAX_MEM = 1 << 20  # RE2's memory budget per pattern
MAX_PROGRAM = 4000  # RE2 program instructions per pattern
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*(?:\.[a-z0-9][a-z0-9_-]*)+$")

# Launcher prefixes and ANSI codes, for example lines written as they appear in a console log
# (`[rank3]:`, `[default3]:`, `3: `, `[1,3]<stderr>:`). The scanner strips these with its own
# parser; this is only for examples.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PREFIX_RE = re.compile(r"^(?:\[(?:rank|default)\d+\]:|\d+: |\[\d+,\d+\]<std(?:out|err)>:)")


def strip_example(line: str) -> str:
    """Remove ANSI codes and one launcher prefix, as the scanner does before matching."""
    line = _ANSI_RE.sub("", line)
    return _PREFIX_RE.sub("", line, count=1)


# --------------------------------------------------------------------------------------------
# The records


@dataclass(frozen=True)
class Cause:
    category: str  # one of CAUSE_CATEGORIES
    text: str


def _options(ignore_case: bool) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = MAX_MEM
    opts.case_sensitive = not ignore_case
    return opts


def _group_items(groups: dict[str, str] | None) -> list[tuple[str, str]] | None:
    return None if groups is None else list(groups.items())


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    family: str  # one of triage.records.FAMILIES
    severity: str  # low | medium | high | critical
    role: str  # root | symptom
    priority: int
    any: tuple[str, ...]
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    ignore_case: bool = False
    causes: tuple[Cause, ...] = ()
    next_steps: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    examples_match: tuple[str, ...] = ()
    examples_no_match: tuple[str, ...] = ()
    path: str = "<memory>"
    line: int = 0
    override: bool = False

    @functools.cached_property
    def _compiled(self) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
        opts = _options(self.ignore_case)
        return (
            tuple(FastRegex(re2.compile(p, opts)) for p in self.any),
            tuple(FastRegex(re2.compile(p, opts)) for p in self.all),
            tuple(FastRegex(re2.compile(p, opts)) for p in self.none),
        )

    def __getstate__(self) -> dict[str, Any]:
        # Compiled patterns are a cache: rebuilt on first use after unpickling (scan workers).
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

    def search(self, text: str | bytes) -> dict[str, str] | None:
        """None when the rule does not match `text`; else the named groups that matched.

        An empty dict is a match without named groups: test the result with `is not None`.
        `text` may be str or UTF-8 bytes (what the scanner has in hand); the answer is the same.
        """
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if self.native:
            got = self._pairs(data, lambda rx: rx.spans(data))
            if got is None:
                return None
            return {name: data[s:e].decode("utf-8", "replace") for name, s, e in got}
        got = self._pairs(data, lambda rx: _group_items(rx.groups(data)))
        return None if got is None else dict(got)

    def search_spans(self, data: bytes) -> list[tuple[str, int, int]] | None:
        """`search` on UTF-8 bytes as spans: [(group, start, end)] in the order `search`'s dict
        has them, or None. Only for a `native` rule."""
        return self._pairs(data, lambda rx: rx.spans(data))

    def _pairs(self, data: bytes, get) -> list | None:
        """The match of `any`, then `all` (groups not already named added), unless `none`
        matches: the named groups as `get(regex)` gives them, (name, ...) tuples."""
        any_re, all_re, none_re = self._compiled
        for rx in any_re:
            got = get(rx)
            if got is not None:
                break
        else:
            return None
        for rx in all_re:
            more = get(rx)
            if more is None:
                return None
            for item in more:
                if all(item[0] != have[0] for have in got):
                    got.append(item)
        for rx in none_re:
            if rx.matches(data):
                return None
        return got

    @functools.cached_property
    def native(self) -> bool:
        """Whether every pattern runs through the RE2 binding (so `search_spans` works)."""
        return all(rx.native for group in self._compiled for rx in group)

    @functools.cached_property
    def digit_blind(self) -> bool:
        """Whether every pattern of the rule treats all digits alike (triage.parse.blind): then
        the rule matches a line exactly when it matches the line with its digits masked, at the
        same spans."""
        from triage.parse.blind import digit_blind

        return self.native and all(digit_blind(p) for p in (*self.any, *self.all, *self.none))

    def prefilter_patterns(self) -> tuple[str, ...]:
        """The `any` patterns with every group non-capturing and no inline flags.

        Compile them case-insensitively when `ignore_case` is true. A line matches one of
        them exactly when it matches one of the `any` patterns.
        """
        return tuple(_to_prefilter(p) for p in self.any)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}: rule {self.id}"

    def to_json(self) -> dict[str, Any]:
        """The rule as a user wrote it (the YAML schema), plus where it was defined."""
        return {
            "id": self.id, "title": self.title, "family": self.family,
            "severity": self.severity, "role": self.role, "priority": self.priority,
            "match": {"any": list(self.any), "all": list(self.all), "none": list(self.none),
                      "ignore_case": self.ignore_case},
            "causes": [{"category": c.category, "text": c.text} for c in self.causes],
            "next_steps": list(self.next_steps), "references": list(self.references),
            "examples": {"match": list(self.examples_match),
                         "no_match": list(self.examples_no_match)},
            "override": self.override, "path": self.path, "line": self.line,
        }


@dataclass(frozen=True)
class Playbook:
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        index: dict[str, Rule] = {}
        for r in self.rules:
            index.setdefault(r.id, r)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.rules)

    def __getstate__(self) -> dict[str, Any]:
        # RE2 sets cannot be pickled; they are a cache rebuilt on first use (scan workers).
        return {k: v for k, v in self.__dict__.items() if k != "_sets"}

    def get(self, rule_id: str) -> Rule:
        """The rule with this id; `UnknownRuleError` (a PlaybookError and a KeyError) if none."""
        try:
            return self._index[rule_id]  # type: ignore[attr-defined]
        except KeyError:
            close = difflib.get_close_matches(rule_id, list(self._index), n=3)  # type: ignore[attr-defined]
            hint = f"did you mean {', '.join(close)}?" if close else "see `triage playbooks list`"
            raise UnknownRuleError(f"no rule with id {rule_id!r}", hint=hint) from None

    @functools.cached_property
    def _sets(self) -> list[tuple[Any, list[int]]]:
        """RE2 sets over every `any` pattern (one per case mode), each with index -> rule."""
        sets = []
        for ignore_case in (False, True):
            owners: list[int] = []
            s = re2.Set.SearchSet(_options(ignore_case))
            for i, r in enumerate(self.rules):
                if r.ignore_case != ignore_case:
                    continue
                for p in r.prefilter_patterns():
                    s.Add(p)
                    owners.append(i)
            if owners:
                s.Compile()
                sets.append((s, owners))
        return sets

    def candidates(self, text: str) -> list[Rule]:
        """Rules whose `any` patterns match `text`, best first (priority, then rule order)."""
        hit: set[int] = set()
        for s, owners in self._sets:
            for j in s.Match(text) or ():
                hit.add(owners[j])
        order = sorted(hit, key=lambda i: (-self.rules[i].priority, i))
        return [self.rules[i] for i in order]

    def classify(self, text: str) -> tuple[Rule, dict[str, str]] | None:
        """The highest-priority rule matching `text` (ties: rule order) and its named groups."""
        for rule in self.candidates(text):
            groups = rule.search(text)
            if groups is not None:
                return rule, groups
        return None

    def matching(self, text: str) -> list[tuple[Rule, dict[str, str]]]:
        """Every rule matching `text`, best first."""
        out = []
        for rule in self.candidates(text):
            groups = rule.search(text)
            if groups is not None:
                out.append((rule, groups))
        return out


class UnknownRuleError(PlaybookError, KeyError):
    """`Playbook.get` found no rule with that id."""


class PlaybookErrors(PlaybookError):
    """Several playbook problems at once (`load_playbooks(collect_all=True)`); `.errors` lists
    each as a PlaybookError, in file order."""

    def __init__(self, errors: list[PlaybookError]):
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
            if len(errors) > 1 else ""
        super().__init__(first.message + more, where=first.where, hint=first.hint)
        self.errors = errors


# --------------------------------------------------------------------------------------------
# Pattern checks and the prefilter rewrite


def _scan_pattern(pattern: str, anchors: bool = False) -> tuple[str, str | None]:
    """Walk an RE2 pattern once: return (prefilter rewrite, problem or None).

    `anchors` allows ^, $, \\A and \\z (in `all`/`none`, which never reach the prefilter).
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return "", "ends with a lone backslash"
            e = pattern[i + 1]
            if e in "QE":
                return "", "\\Q...\\E quoting is not supported by the prefilter; escape each character"
            if e in "pP":
                return "", "Unicode classes (\\p{..}) are not supported by the prefilter"
            if e == "C":
                return "", "\\C is not supported"
            if e in "Az" and not anchors:
                return "", ("anchors (\\A, \\z) are not allowed: a pattern is searched anywhere in "
                            "a line that may carry a timestamp or prefix")
            if e.isdigit() and e != "0":
                return "", "RE2 does not support backreferences; rewrite without them"
            out.append(pattern[i:i + 2])
            i += 2
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\":
                    j += 2
                    continue
                if pattern.startswith("[:", j):
                    end = pattern.find(":]", j + 2)
                    if end != -1:
                        j = end + 2
                        continue
                j += 1
            if j >= n:
                return "", "unterminated character class"
            cls = pattern[i:j + 1]
            if "\\p" in cls or "\\P" in cls:
                return "", "Unicode classes (\\p{..}) are not supported by the prefilter"
            out.append(cls)
            i = j + 1
        elif c == "(":
            if pattern.startswith("(?P<", i) or (pattern.startswith("(?<", i)
                                                  and not pattern.startswith("(?<=", i)
                                                  and not pattern.startswith("(?<!", i)):
                end = pattern.find(">", i)
                if end == -1:
                    return "", "unterminated group name"
                out.append("(?:")
                i = end + 1
            elif pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif pattern.startswith("(?=", i) or pattern.startswith("(?!", i):
                return "", "RE2 does not support lookahead; rewrite without it"
            elif pattern.startswith("(?<=", i) or pattern.startswith("(?<!", i):
                return "", "RE2 does not support lookbehind; rewrite without it"
            elif pattern.startswith("(?", i):
                return "", ("inline flags such as (?i) are not allowed; use `ignore_case: true` "
                            "for the whole rule")
            else:
                out.append("(?:")
                i += 1
        elif c in "^$" and not anchors:
            return "", ("anchors (^, $) are not allowed: a pattern is searched anywhere in a line "
                        "that may carry a timestamp or prefix")
        else:
            out.append(c)
            i += 1
    return "".join(out), None


@functools.lru_cache(maxsize=4096)
def _to_prefilter(pattern: str) -> str:
    rewritten, problem = _scan_pattern(pattern)
    if problem:
        raise ValueError(problem)
    return rewritten


def check_pattern(pattern: str, *, ignore_case: bool = False, prefilter: bool = True) -> str | None:
    """Why `pattern` cannot be used in a rule, or None when it can."""
    if not pattern:
        return "is empty"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"is {len(pattern)} characters long (limit {MAX_PATTERN_CHARS})"
    _, problem = _scan_pattern(pattern, anchors=not prefilter)
    if problem:
        return problem
    try:
        rx = re2.compile(pattern, _options(ignore_case))
    except re2.error as exc:
        msg = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        if "too large" in msg:
            return f"is too large for RE2's memory budget ({MAX_MEM} bytes); simplify it"
        return f"RE2 rejects it: {msg}"
    size = rx._regexp.ProgramSize()
    if size > MAX_PROGRAM:
        return f"compiles to {size} RE2 instructions (limit {MAX_PROGRAM}); simplify it"
    for name in rx.groupindex:
        if name not in GROUP_NAMES:
            close = difflib.get_close_matches(name, list(GROUP_NAMES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"uses unknown group name {name!r}{hint}; known: {', '.join(GROUP_NAMES)}"
    if rx.search("") is not None:
        return "matches the empty string, so it would match every line"
    if prefilter and (pattern.startswith(".*") or pattern.startswith(".+")):
        return "starts with .* or .+: patterns are searched anywhere already; drop it"
    return None


# --------------------------------------------------------------------------------------------
# YAML: strict, safe, with line numbers


class _LineDict(dict):
    line: int = 0
    key_lines: dict[str, int]


class _LineList(list):
    line: int = 0
    item_lines: list[int]


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that rejects aliases and duplicate keys and records line numbers.

    Built on libyaml's parser where installed (20x faster than the pure-Python composer, which
    cost most of a CLI start); the checks live in the constructor, so they hold for both.
    """

    def construct_object(self, node, deep=False):  # type: ignore[override]
        # An alias is the same node met a second time: refuse it before it can expand.
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.MarkedYAMLError(None, None, "anchors and aliases are not allowed",
                                       node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        out = _LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.MarkedYAMLError(None, None, f"keys must be strings, not {key!r}",
                                           key_node.start_mark)
            if key in out:
                raise yaml.MarkedYAMLError(None, None, f"duplicate key {key!r}",
                                           key_node.start_mark)
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node, deep=False):  # type: ignore[override]
        out = _LineList(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:seq", _StrictLoader.construct_sequence)


def _read_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PlaybookError(f"file is {size} bytes (limit {MAX_FILE_BYTES})", where=str(path),
                                hint="split it into several files")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError(f"not UTF-8 text ({exc.reason})", where=str(path)) from None
    except OSError as exc:
        raise PlaybookError(f"cannot read: {exc.strerror}", where=str(path)) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - strict safe loader above
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in problem:
            problem = "YAML tags that construct objects are not allowed" + problem[
                problem.find(" for the tag"):]
        raise PlaybookError(problem, where=f"{path}{line}",
                            hint="rules files are plain YAML: mappings, lists and strings") from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"invalid YAML: {exc}", where=str(path)) from None


def _line_of(data: Any, loc: tuple[Any, ...], default: int) -> int:
    """The line of the deepest node of `loc` found in the raw YAML data."""
    line = default
    node = data
    for part in loc:
        if isinstance(node, _LineDict) and isinstance(part, str) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def _rule_from(raw: Any, path: Path, index: int, line: int) -> Rule:
    rule_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    label = f"rule {rule_id}" if rule_id else f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise PlaybookError(f"{label}: a rule must be a mapping", where=f"{path}:{line}")
    from pydantic import ValidationError

    from triage.classify._schema import RuleSpec, pydantic_message as _pydantic_message

    try:
        spec = RuleSpec.model_validate(raw)
    except ValidationError as exc:
        _raise_all([PlaybookError(f"{label}: {_pydantic_message(err)}",
                                  where=f"{path}:{_line_of(raw, tuple(err['loc']), line)}",
                                  hint="see docs/playbooks.md for the rule schema")
                    for err in exc.errors()])
    problems = []
    if not _ID_RE.match(spec.id):
        problems.append(PlaybookError(f"{label}: field 'id': must be lowercase dotted words, "
                                      f"like 'nccl.watchdog_timeout'",
                                      where=f"{path}:{_line_of(raw, ('id',), line)}"))
    for part in ("any", "all", "none"):
        for k, pat in enumerate(getattr(spec.match, part)):
            problem = check_pattern(pat, ignore_case=spec.match.ignore_case,
                                    prefilter=(part == "any"))
            if problem:
                at = _line_of(raw, ("match", part, k), line)
                problems.append(PlaybookError(
                    f"{label}: field 'match.{part}[{k}]': pattern {problem}", where=f"{path}:{at}"))
    _raise_all(problems)
    return Rule(
        id=spec.id, title=spec.title, family=spec.family, severity=spec.severity,
        role=spec.role, priority=spec.priority,
        any=tuple(spec.match.any), all=tuple(spec.match.all), none=tuple(spec.match.none),
        ignore_case=spec.match.ignore_case,
        causes=tuple(Cause(c.category, c.text.strip()) for c in spec.causes),
        next_steps=tuple(s.strip() for s in spec.next_steps),
        references=tuple(spec.references),
        examples_match=tuple(spec.examples.match),
        examples_no_match=tuple(spec.examples.no_match),
        path=str(path), line=line, override=spec.override,
    )


def _raise_all(problems: list[PlaybookError]) -> None:
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise PlaybookErrors(problems)


def load_file(path: Path, errors: list[PlaybookError] | None = None) -> list[Rule]:
    """The rules of one file. With `errors`, bad rules are appended there and skipped.

    A file that validated whole is remembered in the user's cache (triage.cache), keyed by its
    bytes and by the validator's own code: the next load rebuilds its rules from JSON without
    YAML parsing or pydantic (a quarter of a second off every command)."""
    key = _rules_cache_key(path)
    if key is not None:
        got = _rules_from_cache(key, path)
        if got is not None:
            return got
    before = len(errors) if errors is not None else 0
    rules = _load_file(path, errors)
    if key is not None and (errors is None or len(errors) == before):
        _rules_to_cache(key, rules)
    return rules


_RULE_FIELDS = ("id", "title", "family", "severity", "role", "priority", "any", "all", "none",
                "ignore_case", "causes", "next_steps", "references", "examples_match",
                "examples_no_match", "line", "override")


def _rules_cache_key(path: Path) -> str | None:
    from triage import cache

    if cache.cache_dir() is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        stamp = _validator_stamp()
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        return None
    return cache.entry_name("rules", stamp, data)


@functools.lru_cache(maxsize=1)
def _validator_stamp() -> bytes:
    """Size and mtime of the code that validates a rules file (once per process): a changed
    validator re-validates every cached file."""
    code = [Path(__file__), Path(__file__).with_name("_schema.py"),
            Path(__file__).parent.parent / "records.py"]
    return repr([(os.path.getmtime(c), os.path.getsize(c)) for c in code]).encode()


def _rules_from_cache(key: str, path: Path) -> list[Rule] | None:
    import json

    from triage import cache

    body = cache.read(key)
    if body is None:
        return None
    try:
        rows = json.loads(body.decode("utf-8"))
        rules = []
        for row in rows:
            if not isinstance(row, dict) or set(row) != set(_RULE_FIELDS):
                return None
            f = dict(row)
            for name in ("any", "all", "none", "next_steps", "references", "examples_match",
                         "examples_no_match"):
                if not isinstance(f[name], list) or not all(isinstance(x, str) for x in f[name]):
                    return None
                f[name] = tuple(f[name])
            f["causes"] = tuple(Cause(str(c), str(t)) for c, t in f["causes"])
            if not (isinstance(f["id"], str) and isinstance(f["priority"], int)
                    and isinstance(f["line"], int) and f["family"] in FAMILIES):
                return None
            rules.append(Rule(path=str(path), **f))
        return rules
    except (ValueError, TypeError, KeyError):
        return None


def _rules_to_cache(key: str, rules: list[Rule]) -> None:
    import json

    from triage import cache

    rows = []
    for r in rules:
        row = {name: getattr(r, name) for name in _RULE_FIELDS}
        row["causes"] = [[c.category, c.text] for c in r.causes]
        rows.append(row)
    cache.write(key, json.dumps(rows, ensure_ascii=False).encode("utf-8"))


def _load_file(path: Path, errors: list[PlaybookError] | None = None) -> list[Rule]:
    data = _read_yaml(path)
    if data is None:
        data = _LineDict()
        data.line, data.key_lines = 1, {}
    from pydantic import ValidationError

    from triage.classify._schema import FileSpec, pydantic_message as _pydantic_message

    try:
        FileSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        at = _line_of(data, tuple(err["loc"]), getattr(data, "line", 1))
        raise PlaybookError(_pydantic_message(err), where=f"{path}:{at}",
                            hint="a rules file is a mapping with one key, `rules`, a list of rules") \
            from None
    raw_rules = data["rules"]
    rules = []
    for i, raw in enumerate(raw_rules):
        line = raw_rules.item_lines[i] if isinstance(raw_rules, _LineList) else 1
        try:
            rules.append(_rule_from(raw, path, i, line))
        except PlaybookError as exc:
            if errors is None:
                raise
            errors.extend(exc.errors if isinstance(exc, PlaybookErrors) else [exc])
    return rules


# --------------------------------------------------------------------------------------------
# Directories


def builtin_dir() -> Path:
    """The built-in playbooks: `triage/_playbooks` in an installed wheel, else the repo's."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_playbooks"
    if packaged.is_dir():
        return packaged
    return here.parent / "playbooks"


def _files_in(d: Path) -> list[Path]:
    if d.is_file():
        return [d]
    if not d.is_dir():
        raise PlaybookError("no such playbook directory", where=str(d),
                            hint=f"check --playbooks and {ENV_VAR}")
    return sorted(p for p in d.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.name not in SKIP_FILES and p.is_file())


def playbook_dirs(dirs: Iterable[str | os.PathLike[str]] = (), *, builtin: bool = True,
                  use_env: bool = True) -> list[Path]:
    """The directories `load_playbooks` reads, in order."""
    out: list[Path] = [builtin_dir()] if builtin else []
    if use_env:
        out += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    out += [Path(d) for d in dirs]
    seen: set[Path] = set()
    unique = []
    for d in out:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def load_playbooks(dirs: Iterable[str | os.PathLike[str]] = (), *, builtin: bool = True,
                   use_env: bool = True, collect_all: bool = False) -> Playbook:
    """Load the built-in rules, then `TRIAGE_PLAYBOOKS`, then `dirs` (files or directories).

    Raises PlaybookError naming file, line, rule id and field. With `collect_all`, loading goes
    on past problems and raises one `PlaybookErrors` listing them all (a linter's mode).
    """
    errors: list[PlaybookError] | None = [] if collect_all else None
    rules: list[Rule] = []
    where_of: dict[str, int] = {}
    for d in playbook_dirs(dirs, builtin=builtin, use_env=use_env):
        try:
            files = _files_in(d)
        except PlaybookError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        for f in files:
            try:
                loaded = load_file(f, errors)
            except PlaybookError as exc:
                if errors is None:
                    raise
                errors.append(exc)
                continue
            for rule in loaded:
                problem = _place(rule, rules, where_of)
                if problem is not None:
                    if errors is None:
                        raise problem
                    errors.append(problem)
    if errors:
        raise PlaybookErrors(errors)
    return Playbook(tuple(rules))


def _place(rule: Rule, rules: list[Rule], where_of: dict[str, int]) -> PlaybookError | None:
    if rule.id in where_of:
        old = rules[where_of[rule.id]]
        if rule.override:
            rules[where_of[rule.id]] = rule
            return None
        return PlaybookError(
            f"rule {rule.id}: duplicate id, already defined at {old.path}:{old.line}",
            where=f"{rule.path}:{rule.line}",
            hint="rename it, or add `override: true` to replace the earlier rule")
    if rule.override:
        return PlaybookError(f"rule {rule.id}: `override: true` but no earlier rule has this id",
                             where=f"{rule.path}:{rule.line}",
                             hint="check the id against `triage playbooks list`")
    where_of[rule.id] = len(rules)
    rules.append(rule)
    return None


# --------------------------------------------------------------------------------------------
# Example checks (`triage playbooks test`)


@dataclass(frozen=True)
class ExampleResult:
    rule: str
    kind: str  # "match" | "no_match"
    index: int
    text: str
    ok: bool
    problem: str | None  # why it failed
    shadowed_by: str | None = None  # a positive won by another rule of the same family

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "index": self.index, "text": self.text,
                "ok": self.ok, "problem": self.problem, "shadowed_by": self.shadowed_by}


@functools.lru_cache(maxsize=8192)
def _prefilter_re(pattern: str, ignore_case: bool) -> Any:
    return re2.compile(_to_prefilter(pattern), _options(ignore_case))


def check_examples(playbook: Playbook, rule_ids: Iterable[str] | None = None) -> list[ExampleResult]:
    """Run every example of every rule (or of `rule_ids`).

    A positive example must pass the rule's prefilter patterns on the raw line (the scanner's
    first stage sees prefixed lines), match the rule on the stripped line, and be classified by
    the whole playbook into the rule's family; if another rule of that family wins, the result
    is ok but `shadowed_by` names the winner. A negative example must not match its rule.
    """
    wanted = None if rule_ids is None else set(rule_ids)
    results = []
    for rule in playbook.rules:
        if wanted is not None and rule.id not in wanted:
            continue
        for i, raw in enumerate(rule.examples_match):
            text = strip_example(raw)
            problem = shadow = None
            if not any(_prefilter_re(p, rule.ignore_case).search(raw) for p in rule.any):
                problem = "does not pass the rule's prefilter patterns"
            elif rule.search(text) is None:
                problem = "does not match the rule"
            else:
                won = playbook.classify(text)
                assert won is not None  # the rule itself matches
                if won[0].id != rule.id:
                    if won[0].family != rule.family:
                        problem = (f"classified as {won[0].id} (family {won[0].family}, "
                                   f"priority {won[0].priority})")
                    else:
                        shadow = won[0].id
            results.append(ExampleResult(rule.id, "match", i, raw, problem is None, problem,
                                         shadow))
        for i, raw in enumerate(rule.examples_no_match):
            ok = rule.search(strip_example(raw)) is None
            results.append(ExampleResult(rule.id, "no_match", i, raw, ok,
                                         None if ok else "matches the rule"))
    return results


def require_rule_ids(playbook: Playbook, ids: Iterable[str]) -> None:
    """Raise a usage error for the first id not in the playbook."""
    for rule_id in ids:
        try:
            playbook.get(rule_id)
        except UnknownRuleError as exc:
            raise UsageError(exc.message, hint=exc.hint) from None
