"""The compiled scanner: one multi-pattern prefilter over raw bytes, full rules on candidates.

Shape (why it is fast): a scan reads big chunks of bytes into one reused buffer and runs one
prefilter compiled from every playbook rule's patterns plus a few structural ones (step lines,
elastic exit records). Only the lines the prefilter flags are decoded, stripped of launcher
prefixes and ANSI codes, and matched against the full rules (RE2: linear time, so no pattern can
backtrack catastrophically). A line-by-line Python loop would be several times slower than grep;
this shape is about as fast as grep and does the attribution grep cannot.

Prefilter backends, best first: Hyperscan (`hyperscan` package, prefilter mode so every RE2
pattern compiles) and RE2 (`google-re2`: one alternation to find candidate lines, then an RE2 set
to tell which patterns hit). Both are exact supersets of the rules' `any` patterns on one line;
the full rules decide.

Pattern ids: rule patterns first (owner rule index in `pattern_owner`), then the structural
ones (elastic exit records, world size), each with its kind in `pattern_kind`.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field

from triage import cache
from triage.classify.playbook import Playbook
from triage.parse.elastic import EXIT_PREFILTER
from triage.parse.runinfo import WORLD_PREFILTER

try:  # optional fast path
    import hyperscan  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    hyperscan = None

import re2  # google-re2

KIND_RULE = 0
KIND_STEP = 1
KIND_EXIT = 2
KIND_WORLD = 3
KIND_STEPKEY = 4  # a step keyword somewhere in a large chunk (reported once: presence only)
SMALL_CHUNK = 64 << 10  # at most this many bytes are scanned without the step-keyword pattern

# Every step-line shape (triage.parse.steps) contains one of these.
STEP_KEYS = (b"tep", b"iter", b"Iter", b"it/s")


def _stop(*_args) -> bool:
    return True  # a Hyperscan match handler that ends the scan at the first match


def _re2_options(ignore_case: bool = False):
    opts = re2.Options()
    opts.log_errors = False
    opts.case_sensitive = not ignore_case
    opts.max_mem = 256 << 20
    return opts


@dataclass
class Engine:
    """A playbook compiled for scanning. Build once per process; reuse for every chunk."""

    playbook: Playbook
    backend: str
    pattern_kind: list[int]
    pattern_owner: list[int]  # rule index for KIND_RULE patterns, -1 otherwise
    _db: object = None
    _scratch: object = None
    _alt: object = None
    _sets: object = None
    _db_small: object = None  # the same patterns without the step keywords
    _scratch_small: object = None
    _step_db: object = None
    _step_scratch: object = None
    step_pid: int | None = None  # the id of the step-keyword pattern in `_db`
    # Line plans of this engine's rules, by (digit-masked line, rule ids): triage.scan.worker.
    plans: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, playbook: Playbook, backend: str | None = None) -> "Engine":
        patterns: list[tuple[str, bool]] = []
        kinds: list[int] = []
        owners: list[int] = []
        for i, rule in enumerate(playbook.rules):
            for p in rule.prefilter_patterns():
                patterns.append((p, rule.ignore_case))
                kinds.append(KIND_RULE)
                owners.append(i)
        # Step lines are not in the prefilter: in per-rank logs nearly every line is one, and any
        # per-line work would dominate. Steps are read lazily, backwards from the few lines that
        # need one (triage.scan.worker).
        for kind, pats in ((KIND_EXIT, EXIT_PREFILTER), (KIND_WORLD, WORLD_PREFILTER)):
            for p in pats:
                patterns.append((p, False))
                kinds.append(kind)
                owners.append(-1)
        if backend is None:
            backend = "hyperscan" if hyperscan is not None else "re2"
        eng = cls(playbook, backend, kinds, owners)
        if backend == "hyperscan":
            if hyperscan is None:
                raise RuntimeError("hyperscan is not installed")
            eng._compile_hyperscan(patterns)
        else:
            eng._compile_re2(patterns)
        return eng

    def has_step_key(self, buf, n: int) -> bool | None:
        """Whether buf[:n] holds a step keyword (STEP_KEYS); None where there is no cheap way
        to tell (the RE2 backend). Step lines tell which step a failure happened at; an input
        without any skips every lookup.

        A large chunk gets the answer from its prefilter pass (the step-keyword pattern in
        `_db`). A small one is scanned without that pattern (in per-rank logs "step" is on
        every line: it cost a fifth of the pass) and asks here, once, only when a lookup
        comes: a trainer's log answers in its first line, a 64 KB file without one costs a
        few microseconds (Hyperscan stops at the first keyword)."""
        if buf.find(b"tep", 0, min(n, 4096)) >= 0:
            return True
        if self._step_db is None:
            return None
        try:
            self._step_db.scan(memoryview(buf)[:n], match_event_handler=_stop,
                               scratch=self._step_scratch)
        except hyperscan.ScanTerminated:
            return True
        return False

    def _compile_step_keys(self) -> None:
        try:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=list(STEP_KEYS), ids=list(range(len(STEP_KEYS))),
                       elements=len(STEP_KEYS),
                       flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(STEP_KEYS))
            self._step_db, self._step_scratch = db, hyperscan.Scratch(db)
        except Exception:  # pragma: no cover - only an optimisation
            self._step_db = self._step_scratch = None

    def _compile_hyperscan(self, patterns: list[tuple[str, bool]]) -> None:
        exprs, flags = [], []
        for p, icase in patterns:
            exprs.append(p.encode("utf-8"))
            f = hyperscan.HS_FLAG_PREFILTER
            if icase:
                f |= hyperscan.HS_FLAG_CASELESS
            flags.append(f)
        try:
            small = _hyperscan_db(exprs, flags)
            full = _hyperscan_db(exprs + [b"|".join(STEP_KEYS)],
                                 flags + [hyperscan.HS_FLAG_SINGLEMATCH])
        except Exception:
            # One odd pattern must not cost the fast path for all: let the RE2 backend take the
            # whole set if any pattern is refused.
            self.backend = "re2"
            self._compile_re2(patterns)
            return
        self._db_small, self._scratch_small = small, hyperscan.Scratch(small)
        self._db, self._scratch = full, hyperscan.Scratch(full)
        self.step_pid = len(exprs)
        self.pattern_kind = self.pattern_kind + [KIND_STEPKEY]
        self.pattern_owner = self.pattern_owner + [-1]
        self._compile_step_keys()

    def _compile_re2(self, patterns: list[tuple[str, bool]]) -> None:
        parts = [("(?i:%s)" % p) if icase else ("(?:%s)" % p) for p, icase in patterns]
        self._alt = re2.compile("|".join(parts), _re2_options())
        sets = []
        for icase in (False, True):
            s = re2.Set.SearchSet(_re2_options(icase))
            ids = []
            for pid, (p, ic) in enumerate(patterns):
                if ic == icase:
                    s.Add(p)
                    ids.append(pid)
            if ids:
                s.Compile()
                sets.append((s, ids))
        self._sets = sets

    def hits(self, buf, n: int) -> list[tuple[int, int]]:
        """(end offset, pattern id) of every prefilter hit in buf[:n], in offset order. Over
        SMALL_CHUNK bytes (Hyperscan), the step-keyword pattern `step_pid` is among them, once."""
        out: list[tuple[int, int]] = []
        if n <= 0:
            return out
        if self._db is not None:
            app = out.append

            def on_match(pid, _frm, to, _flags, _ctx):
                app((to, pid))

            if n <= SMALL_CHUNK:
                self._db_small.scan(memoryview(buf)[:n], match_event_handler=on_match,
                                    scratch=self._scratch_small)
            else:
                self._db.scan(memoryview(buf)[:n], match_event_handler=on_match,
                              scratch=self._scratch)
            out.sort()
            return out
        data = bytes(memoryview(buf)[:n])
        pos = 0
        for m in self._alt.finditer(data):
            end = m.end()
            if end <= pos:
                continue
            ls = data.rfind(b"\n", 0, max(m.start(), 0)) + 1 if m.start() > 0 else 0
            le = data.find(b"\n", end)
            le = n if le < 0 else le
            line = data[ls:le]
            for s, ids in self._sets:
                for j in s.Match(line) or ():
                    out.append((le, ids[j]))
            pos = le
        out.sort()
        return out


# ---- compiled-database cache -------------------------------------------------------------------
# Compiling ~100 rules into one Hyperscan database takes ~0.35 s, every run: a third of a small
# scan's wall time. The compiled database is kept in the user's cache directory (triage.cache),
# named by a hash of everything that shapes it (patterns, flags, Hyperscan version, machine). An
# entry that fails a check, or that this CPU refuses, is ignored and the database compiled again.
# Only Hyperscan's own deserializer reads it.


def _db_name(exprs: list[bytes], flags: list[int]) -> str:
    return cache.entry_name("hsdb", repr(getattr(hyperscan, "__version__", "?")).encode(),
                            platform.machine().encode(), repr(flags).encode(), *exprs)


def _hyperscan_db(exprs: list[bytes], flags: list[int]):
    """A compiled block-mode database, from the cache when it holds one (raises if a pattern is
    refused)."""
    db = _load_cached_db(exprs, flags)
    if db is None:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs),
                   flags=flags)
        _store_cached_db(exprs, flags, db)
    return db


def _load_cached_db(exprs: list[bytes], flags: list[int]):
    body = cache.read(_db_name(exprs, flags))
    if body is None:
        return None
    try:
        db = hyperscan.loadb(bytes(body), hyperscan.HS_MODE_BLOCK)
        db.scan(b"probe\n", match_event_handler=lambda *a: None,  # refuses a foreign CPU's
                scratch=hyperscan.Scratch(db))
        return db
    except Exception:  # not a database, or built for another machine
        return None


def _store_cached_db(exprs: list[bytes], flags: list[int], db) -> None:
    try:
        body = bytes(hyperscan.dumpb(db))
    except Exception:  # pragma: no cover - a binding without serialisation
        return
    cache.write(_db_name(exprs, flags), body)


_EXC_LINE_RE = re.compile(r"^\s*[A-Za-z_][\w.]*(?:Error|Exception|Failure|Interrupt|Exit)\b")


def looks_like_exception(msg: str) -> bool:
    return _EXC_LINE_RE.match(msg) is not None
