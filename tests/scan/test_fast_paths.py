"""The scanner's fast paths give the answers of the general paths they shortcut.

- Per-rank files: the step line just above a failure is taken without the keyword search, and
  the step found for a failure is taken as the file's last step without reading the tail again
  (`worker.SHORTCUTS`). Random per-rank logs (step lines in several trainer formats, ANSI codes,
  carriage returns, prefixes of other ranks, tqdm bars, failures anywhere, files with no trailing
  newline) are scanned with and without the shortcuts: the JSON must be identical.
- `parse_timestamp` (cheap pre-checks, minute cache) against the plain reference implementation
  it replaced, on generated stamps in every format and on arbitrary text.
- `discover`'s cached rank of a file name against the patterns themselves.
"""

from __future__ import annotations

import calendar
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.ingest.discover import _RANK_NAME_RES, rank_hint
from triage.parse.timestamps import parse_timestamp
from triage.scan import scan
from triage.scan import worker

SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FAST = settings(max_examples=300, deadline=None)

_STEP_LINES = [
    "2026-11-23 02:13:{s:02d},001 INFO trainer: step {n} | loss 2.49 | host node-7",
    " iteration      {n}/  500000 | consumed samples: 12 | lm loss: 2.3",
    "{{'step': {n}, 'loss': 2.31}} step={n}, skipped=0",
    "\x1b[32mstep {n}\x1b[0m | loss 1.0",
    "{n}/900 [00:10<00:12, 4.5it/s, loss=2.3]",
    "{n}/900 [00:10<00:12, loss=2.3]",
    "[rank{r}]: step {n} | loss 2.2",
    "progress\rstep {n} done",
    "Step: {n}",
    "epoch 1 iter {n}",
    "step 0.{n} is not a step",
    "step\t{n} | tab",
    "step\x1c{n} | a control character str patterns read as a space, bytes ones do not",
    "step \u0663{n} | an Arabic-Indic digit",
]
_FAILURES = [
    "[E1123 02:26:{s:02d}.123456 ProcessGroupNCCL.cpp:616] [Rank {r}] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum={n}, OpType=ALLREDUCE, NumelIn=4096, NumelOut=4096, "
    "Timeout(ms)=600000) ran for 600021 milliseconds before timing out.",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "2026-11-23 02:14:{s:02d},500 ERROR trainer: loss is nan at step {n}",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "[rank{r}]: RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error",
    # shapes for the line plans (triage.parse.blind): a host before the tag, torchrun's tag
    # before torch's, an srun label, two records on one line, a caseless rule, rules whose
    # patterns name digits (never planned), an elastic block line
    "node-{r}: [rank{r}]: RuntimeError: CUDA error: an illegal memory access was encountered",
    "[default{r}]:[rank{n}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {n}.00 MiB",
    "{r}: RuntimeError: CUDA error: an illegal memory access was encountered",
    "[rank{r}]: step {n} [rank{s}]: RuntimeError: CUDA error: an illegal memory access was encountered",
    "[rank{r}]: LOSS IS NAN at iteration {n}",
    "torch.distributed.elastic.multiprocessing.api: [ERROR] failed (exitcode: {r}) local_rank: {s} (pid: {n}) of binary: python",
    "OSError: [Errno 28] No space left on device: '/ckpt/step_{n}.pt'",
    "  exitcode  : -{s} (pid: {n})",
]
_OTHER = ["INFO data loader ready", "", "Traceback (most recent call last):",
          '  File "train.py", line 12, in <module>', "NCCL INFO Bootstrap : Using eth0",
          "warning: iterating slowly"]


@st.composite
def per_rank_file(draw):
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["step", "step", "step", "fail", "other"]))
        pool = {"step": _STEP_LINES, "fail": _FAILURES, "other": _OTHER}[kind]
        tmpl = draw(st.sampled_from(pool))
        lines.append(tmpl.format(n=draw(st.integers(0, 9999)), r=draw(st.integers(0, 64)),
                                 s=draw(st.integers(0, 59))))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text += "\n"
    return text


def _scan_json(paths) -> dict:
    """Everything a scan answers: the JSON contract and what the case store and report read."""
    r = scan(paths, jobs=1)
    res = r.to_json()
    res["stats"]["seconds"] = 0.0
    res["extra"] = [r.start_time, r.end_time, r.max_step, r.world_size, list(r.warnings),
                    [repr(x) for x in r.ranks], [repr(o) for o in r.occurrences]]
    return res


@SLOW
@given(st.lists(per_rank_file(), min_size=1, max_size=4))
def test_per_rank_shortcuts_change_nothing(tmp_path_factory, files):
    d = tmp_path_factory.mktemp("ranks")
    for i, text in enumerate(files):
        (d / f"rank_{i}.log").write_bytes(text.encode("utf-8"))
    fast = _scan_json([d])
    worker.SHORTCUTS = False
    try:
        slow = _scan_json([d])
    finally:
        worker.SHORTCUTS = True
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)


# ---- timestamps: the reference implementation the fast parser replaced ----------------------

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_ISO = re.compile(
    r"\[?(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T _](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?\]?")
_GLOG = re.compile(r"\[?(?P<lvl>[IWEF])(?P<mo>\d{2})(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
                   r"(?:\.(?P<frac>\d{1,9}))?")
_SYSLOG = re.compile(r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<d>\d{1,2}) "
                     r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})")


def _ref_build(y, mo, d, h, mi, s, frac, tz, end, has_year):
    if not (0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 60):
        return None
    if not (1 <= mo <= 12 and 1970 <= y <= 2999 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        return None
    day = float(calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0)))
    s = min(s, 59)
    iso = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
    fsec = 0.0
    if frac:
        frac6 = (frac + "000000")[:6]
        iso += "." + frac6
        fsec = int(frac6) / 1e6
    key = day + (h * 3600 + mi * 60 + s) + fsec
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        key -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        iso += f"{tz[0]}{digits[:2]}:{digits[2:]}"
    elif tz == "Z":
        iso += "Z"
    return (iso, key, end, has_year)


def _ref_parse(text, default_year=1970):
    head = text[:88]
    m = _ISO.search(head)
    if m is not None and m.start() <= 48:
        g = m.groupdict()
        st_ = _ref_build(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]),
                         int(g["s"]), g["frac"], g["tz"], m.end(), True)
        if st_ is not None:
            return st_
    m = _GLOG.search(head)
    if m is not None and m.start() <= 48:
        g = m.groupdict()
        st_ = _ref_build(default_year, int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]),
                         int(g["s"]), g["frac"], None, m.end(), False)
        if st_ is not None:
            return st_
    m = _SYSLOG.search(head)
    if m is not None and m.start() <= 48:
        g = m.groupdict()
        return _ref_build(default_year, _MONTHS[g["mon"].lower()], int(g["d"]), int(g["h"]),
                          int(g["mi"]), int(g["s"]), None, None, m.end(), False)
    return None


d2 = st.integers(0, 99).map(lambda v: f"{v:02d}")
stamps = st.one_of(
    st.builds(lambda y, mo, d, h, mi, s, sep, frac, tz: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{tz}",
              st.integers(1960, 3001), d2, d2, d2, d2, d2, st.sampled_from("T _"),
              st.sampled_from(["", ".5", ",123", ".123456789"]),
              st.sampled_from(["", "Z", "+02:00", "-0530"])),
    st.builds(lambda lvl, mo, d, h, mi, s: f"{lvl}{mo}{d} {h}:{mi}:{s}.123456 1 x.cc:1]",
              st.sampled_from("IWEFX"), d2, d2, d2, d2, d2),
    st.builds(lambda mon, d, h, mi, s: f"{mon} {d} {h}:{mi}:{s} host kernel:",
              st.sampled_from(["Jan", "Feb", "Nov", "Dec", "Foo"]), st.integers(0, 40), d2, d2, d2),
)


@FAST
@given(st.text(max_size=30), stamps, st.text(max_size=40), st.integers(1970, 2999))
def test_parse_timestamp_matches_reference(before, stamp, after, year):
    text = before + stamp + after
    got = parse_timestamp(text, year)
    assert (tuple(got) if got is not None else None) == _ref_parse(text, year)


@FAST
@given(st.text(max_size=120), st.integers(1970, 2999))
def test_parse_timestamp_matches_reference_on_any_text(text, year):
    got = parse_timestamp(text, year)
    assert (tuple(got) if got is not None else None) == _ref_parse(text, year)


def _ref_rank_of_name(name):
    for rx in _RANK_NAME_RES:
        m = rx.search(name)
        if m:
            return int(m.group(1))
    return None


@FAST
@given(st.lists(st.sampled_from(["rank", "RANK", "worker", "slurm", "_", "-", ".", "log", "out",
                                 "7", "12", "0", "1234567", "12345678", "a", "é", "٣"]),
                max_size=8).map("".join))
def test_cached_rank_of_a_name_matches_the_patterns(name):
    for n in (name, name + ".log", name.replace("7", "3")):  # same shapes, other digits
        assert rank_hint(n)[0] == _ref_rank_of_name(n)


def test_short_reads_are_read_on(tmp_path, monkeypatch):
    """A file system that returns less than asked before the end (FUSE mounts do) is read on to
    the size the file was listed with: the same answers as whole reads."""
    for i in range(3):
        body = "".join(f"2026-11-23 02:13:{s:02d},001 INFO trainer: step {s} | loss 2.4\n"
                       for s in range(40))
        body += (f"[E1123 02:26:51.123456 ProcessGroupNCCL.cpp:616] [Rank {i}] Watchdog caught "
                 "collective operation timeout: WorkNCCL(SeqNum=41, OpType=ALLREDUCE, "
                 "Timeout(ms)=600000) ran for 600021 milliseconds before timing out.\n")
        (tmp_path / f"rank_{i}.log").write_text(body)
    whole = _scan_json([tmp_path])
    real = worker._RawFile.readinto

    def short(self, mv):
        return real(self, mv[:97])

    monkeypatch.setattr(worker._RawFile, "readinto", short)
    assert _scan_json([tmp_path]) == whole
    assert whole["failures"] and whole["stats"]["lines"] == 3 * 41


@FAST
@given(st.lists(st.floats(min_value=1.0, max_value=4.1e9), min_size=1, max_size=20))
def test_cached_year_of_a_file_matches_gmtime(mtimes):
    import time

    from triage.ingest.discover import InputSpec

    for t in mtimes + [m + 1e-3 for m in mtimes]:
        spec = InputSpec(0, "x", "x", "log", 1, None, None, t)
        assert worker._year_of(spec) == time.gmtime(t).tm_year
