"""Property tests for the scanner's structural parsers and for the scan itself on damaged input.

Parsers: `split_prefix` (launcher prefixes), `parse_timestamp`, `parse_step`, and the signature
`template`. Each is checked for a round trip on generated well-formed input and for never raising
on arbitrary text. The scan is run on random bytes and on random mutations of real fixture lines:
no exception may escape, and every reported source line must exist in that input and contain the
reported message (after ANSI stripping; the message may be one record of a flattened line).

Examples are capped so that each test stays within a few seconds on a shared 2-core machine.
"""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.scan.conftest import FIXTURES
from triage.classify.signature import template
from triage.parse.prefix import split_prefix, strip_ansi
from triage.parse.steps import parse_step
from triage.parse.timestamps import parse_timestamp

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ranks = st.integers(min_value=0, max_value=999_999)
# a message that cannot itself be read as (part of) a prefix: starts with a letter, one line
messages = st.builds(lambda a, b: a + b, st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=80))
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


@st.composite
def prefixed(draw):
    """(line, rank, host, offset) for each launcher prefix style of triage.parse.prefix."""
    r = draw(ranks)
    style = draw(st.sampled_from(["rank", "Rank", "default", "role", "mpi", "srun", "tee+rank", "host"]))
    host = None
    if style == "rank":
        p = f"[rank{r}]: "
    elif style == "Rank":
        p = f"[Rank {r}]:"
    elif style == "default":
        p = f"[default{r}]:"
    elif style == "role":
        p = f"[{draw(st.sampled_from(['trainer', 'worker', 'ps']))}{r}]:"
    elif style == "mpi":
        p = f"[{draw(st.integers(1, 99999))},{r}]<{draw(st.sampled_from(['stdout', 'stderr']))}>:"
    elif style == "srun":
        width = draw(st.integers(len(str(r)), 6))
        p = f"{r:>{width}}: "
    elif style == "tee+rank":
        p = f"[default{draw(st.integers(0, 7))}]:[rank{r}]: "
    else:
        host = draw(hosts)
        p = f"{host}: [rank{r}]: "
    quotes = draw(st.sampled_from(["", "> ", "> > ", ">"]))
    msg = draw(messages)
    return quotes + p + msg, r, host, len(quotes + p), msg


@FAST
@given(prefixed())
def test_split_prefix_round_trip(case):
    line, rank, host, offset, msg = case
    p = split_prefix(line)
    assert p.rank == rank
    assert p.offset == offset
    assert line[p.offset:] == msg
    if host is not None:
        assert p.host == host


@FAST
@given(st.text(max_size=300))
@example("[rank")
@example("[1,]<stderr>:")
@example("> > > ")
@example("9999999: x")
def test_split_prefix_never_raises(text):
    p = split_prefix(text)
    assert 0 <= p.offset <= len(text)
    assert p.rank is None or p.rank >= 0


# --------------------------------------------------------------------------------------------
# timestamps

datetimes = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2999, 12, 30))


def _key(d: dt.datetime, micro: int) -> float:
    return calendar.timegm((d.year, d.month, d.day, d.hour, d.minute, d.second, 0, 0, 0)) + micro / 1e6


@st.composite
def stamped(draw):
    """(text, default_year, expected iso, expected key) in each recognised format."""
    d = draw(datetimes)
    fmt = draw(st.sampled_from(["iso", "isoz", "logging", "elastic", "bracket", "glog", "torchcpp", "syslog"]))
    year = d.year
    ymd = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    hms = f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    us = d.microsecond
    if fmt in ("iso", "isoz"):
        text = f"{ymd}T{hms}.{us:06d}" + ("Z" if fmt == "isoz" else "")
        iso, micro = f"{ymd}T{hms}.{us:06d}" + ("Z" if fmt == "isoz" else ""), us
    elif fmt in ("logging", "bracket"):
        ms = us // 1000
        text = f"{ymd} {hms},{ms:03d}"
        if fmt == "bracket":
            text = f"[{text}] [INFO]"
        iso, micro = f"{ymd}T{hms}.{ms * 1000:06d}", ms * 1000
    elif fmt == "elastic":
        text, iso, micro = f"{ymd}_{hms}", f"{ymd}T{hms}", 0
    elif fmt == "glog":
        lvl = draw(st.sampled_from("IWEF"))
        text = f"{lvl}{d.month:02d}{d.day:02d} {hms}.{us:06d} 4242 api.py:897]"
        iso, micro = f"{ymd}T{hms}.{us:06d}", us
    elif fmt == "torchcpp":
        ns = us * 1000 + draw(st.integers(0, 999))
        text = f"[E{d.month:02d}{d.day:02d} {hms}.{ns:09d} ProcessGroupNCCL.cpp:632]"
        iso, micro = f"{ymd}T{hms}.{us:06d}", us
    else:
        mon = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[d.month - 1]
        text = f"{mon} {d.day:>2} {hms} gpu-b07 kernel:"
        iso, micro = f"{ymd}T{hms}", 0
    return text + " rest of the line", year, iso, _key(d, micro)


@FAST
@given(stamped())
def test_parse_timestamp_round_trip(case):
    text, year, iso, key = case
    got = parse_timestamp(text, default_year=year)
    assert got is not None, text
    assert got.iso == iso
    assert abs(got.key - key) < 1e-6
    assert 0 < got.end <= len(text)


@FAST
@given(st.text(max_size=200), st.integers(min_value=-10**6, max_value=10**6))
@example("2026-02-30 01:02:03", 2026)
@example("E0229 01:02:03.1", 2025)
@example("[9999-99-99 99:99:99]", 2026)
def test_parse_timestamp_never_raises(text, year):
    got = parse_timestamp(text, default_year=year)
    if got is not None:
        assert 0 < got.end <= len(text)
        dt.datetime.fromisoformat(got.iso.replace("Z", "+00:00"))  # always a real date


# --------------------------------------------------------------------------------------------
# step lines

steps = st.integers(min_value=0, max_value=10**12 - 1)


@st.composite
def step_lines(draw):
    n = draw(steps)
    m = draw(st.integers(min_value=max(n, 1), max_value=10**12 - 1))
    fmt = draw(st.sampled_from(["megatron", "deepspeed", "global_step", "pipe", "colon", "bracket",
                                "iter", "iteration", "tqdm"]))
    line = {
        "megatron": f" [2026-11-23 03:01:02] iteration {n:>8d}/{m:>8d} | consumed samples: 1024 | lm loss: 2.1E+00 |",
        "deepspeed": f"[2026-11-23 04:10:01,123] [INFO] [logging.py:128:log_dist] [Rank 0] step={n}, skipped=3, lr=[0.0001]",
        "global_step": f"epoch=0/micro_step=4/global_step={n}, RunningAvgSamplesPerSec=211.7",
        "pipe": f"2026-11-23 01:02:03,456 INFO train: step {n} | loss 2.31 | lr 3.00e-04",
        "colon": f"Step: {n} loss=2.31",
        "bracket": f"[step {n}] loss 2.31",
        "iter": f"iter {n} loss 2.31",
        "iteration": f"iteration {n} loss 2.31",
        "tqdm": f" 45%|####5     | {n}/{m} [00:10<00:12,  4.5it/s, loss=2.3]",
    }[fmt]
    return line, n


@FAST
@given(step_lines())
def test_parse_step_round_trip(case):
    line, n = case
    assert parse_step(line) == n


@FAST
@given(st.text(max_size=200))
def test_parse_step_never_raises(text):
    got = parse_step(text)
    assert got is None or got >= 0


def _ref_parse_step(text):
    """parse_step as first written: each shape's regex over the whole line, in order."""
    from triage.parse.steps import _STEP_RES

    for rx in _STEP_RES:
        m = rx.search(text)
        if m is not None:
            return int(m.group(1))
    return None


_STEP_BITS = st.sampled_from(["step", "Step", "global_step", "iter", "iteration", "Iteration",
                              "tep", "ter", "/", " [", "[0", " ", "|", "=", ":", "\t", "\x1c",
                              "\u0663", ".", ",", "x", "_", "0", "7", "12", "99999", "it/s"])


_STEP_NEAR_MISS = st.tuples(
    st.lists(st.one_of(_STEP_BITS, st.text(max_size=3)), max_size=6).map("".join),
    st.sampled_from(["step", "Step", "global_step", "iter", "iteration", "Iteration", "12", " 3"]),
    st.sampled_from(["=", ":", " ", "  ", "= ", "", "/", "\t", "\x1c"]),
    st.sampled_from(["5", "12", "0.5", "7,", "40/90 [0", "\u0663", "x"]),
    st.lists(_STEP_BITS, max_size=6).map("".join)).map("".join)


_DIGITS = st.integers(1, 13).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
_TQDM_NEAR_MISS = st.tuples(
    st.sampled_from(["", "step 3 ", "x", "a|", "iter 2 and "]),
    st.sampled_from(["", " ", "|", "x", "\t"]), _DIGITS, st.sampled_from(["/", "//", "/x"]),
    _DIGITS, st.sampled_from([" [0", " [", "[0", " [a"])).map("".join)
_SHAPES_IN_ORDER = st.permutations(["step 3 ", "iteration 5/9 ", " 7/8 [0 ", "global_step=4 "]
                                   ).map("".join)


@FAST
@given(st.one_of(st.lists(st.one_of(_STEP_BITS, st.text(max_size=3)), max_size=30).map("".join),
                 _STEP_NEAR_MISS, _TQDM_NEAR_MISS, _SHAPES_IN_ORDER))
@example("x 123456789012/5 [0")  # each shape's literal as far in as its regex allows
@example("ab global_step=4")
@example("step 3 iteration 5/9")
def test_parse_step_matches_the_plain_regex_loop(text):
    """The prechecks and the search start (just before each shape's literal) change nothing."""
    assert parse_step(text) == _ref_parse_step(text)


def test_parse_step_ignores_slurm_step_ids():
    assert parse_step("slurmstepd: error: *** STEP 48213.0 ON gpu-a03 CANCELLED AT 2026-11-23T02:14:41 ***") is None


# --------------------------------------------------------------------------------------------
# signature templates


@FAST
@given(st.text(max_size=300))
@example("W1123 01:30:45.902000 48190 torch/distributed/elastic/multiprocessing/api.py:897] Sending process 1 closing signal SIGTERM")
@example("[rank0]:[E1123 01:19:52.411805213 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught collective operation timeout")
@example("ERROR: <NUM> ERROR: x")
def test_template_idempotent_and_total(text):
    t = template(text)
    assert isinstance(t, str) and len(t) <= 400
    assert template(t) == t


WORDS = st.sampled_from(["Watchdog", "caught", "collective", "timeout", "rank", "peer", "closed",
                         "NCCL", "error", "at", "in", "for", "with", "allocate", "GiB", "failed"])
numbers = st.one_of(st.integers(0, 10**9).map(str),
                    st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.2f}"))
addresses = st.integers(0, 2**48).map(lambda v: f"0x{v:x}")
paths = st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=2, max_size=5).map(
    lambda parts: "/" + "/".join(parts) + ".py")
ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
slots = st.sampled_from(["num", "addr", "path", "ip"])
FILL = {"num": numbers, "addr": addresses, "path": paths, "ip": ips}


@st.composite
def two_instances(draw):
    """The same message skeleton filled twice with different numbers/addresses/paths/IPs."""
    parts = draw(st.lists(st.one_of(WORDS.map(lambda w: ("w", w)), slots.map(lambda s: ("s", s))),
                          min_size=1, max_size=12))
    a, b = [], []
    for kind, v in parts:
        if kind == "w":
            a.append(v)
            b.append(v)
        else:
            a.append(draw(FILL[v]))
            b.append(draw(FILL[v]))
    return " ".join(a), " ".join(b)


@FAST
@given(two_instances())
def test_template_masks_numbers_addresses_paths(pair):
    a, b = pair
    assert template(a) == template(b), pair


host_styles = st.sampled_from(["node{}", "gpu-a{:02d}", "dgx{:03d}", "ip-10-0-3-{}", "gpu-node-{:03d}"])


@FAST
@given(host_styles, st.integers(1, 200), st.integers(1, 200))
def test_template_same_for_hosts_differing_in_digits(style, i, j):
    assume(i != j)
    msg = "NCCL WARN Net : Connection closed by remote peer {}<43021>"
    assert template(msg.format(style.format(i))) == template(msg.format(style.format(j)))


_HEADERS = st.sampled_from(["E{mo:02d}{d:02d} 02:26:51.123456 1234 ProcessGroupNCCL.cpp:616] ",
                            "[I{mo:02d}{d:02d} 01:19:52.411805213 api.py:897] ",
                            "20{y:02d}-{mo:02d}-{d:02d} 02:13:21,001 ERROR trainer: ",
                            "[20{y:02d}-{mo:02d}-{d:02d}T02:13:21.5Z] ", "Nov {d:2d} 01:02:03 host kernel: ",
                            "[rank{d}]: ", ""])


@FAST
@given(_HEADERS, st.text(st.sampled_from(list("ab 7:[]x=.,/-")), max_size=30),
       st.lists(st.tuples(st.integers(0, 99), st.integers(0, 39), st.integers(0, 39)),
                min_size=2, max_size=2))
@example("E{mo:02d}{d:02d} 02:26:51.123456 1234 ProcessGroupNCCL.cpp:616] ", "boom 7",
         [(26, 2, 29), (26, 2, 28)])  # Feb 29, read as 1970 (no year), is not a date
def test_template_does_not_depend_on_digit_values(header, body, dates):
    """Messages that differ only in their digits' values have one template, whichever the
    cache saw first: template() caches by digit shape, so nothing in it may read a value (a
    stamp is stripped by its shape, valid date or not)."""
    from triage.classify import signature

    texts = [header.format(y=y, mo=mo, d=d) + body for y, mo, d in dates]
    shape = [t.encode().translate(bytes.maketrans(b"123456789", b"000000000")) for t in texts]
    assume(len(texts[0]) == len(texts[1]) and shape[0] == shape[1])
    got = []
    for order in (texts, texts[::-1]):
        signature._CACHE.clear()
        got.append([template(t) for t in order])
    assert got[0][0] == got[0][1] == got[1][0] == got[1][1]


def test_template_same_whatever_the_install_path():
    a = "W1123 01:30:45.902000 48190 torch/distributed/elastic/multiprocessing/api.py:897] Sending process 1 closing signal SIGTERM"
    b = ("W1123 01:30:45.902000 48190 /usr/lib/python3/site-packages/torch/distributed/elastic/multiprocessing/api.py:897]"
         " Sending process 1 closing signal SIGTERM")
    assert template(a) == template(b)


# --------------------------------------------------------------------------------------------
# the scan on damaged input


@pytest.fixture(scope="module")
def playbook():
    from triage.classify.playbook import load_playbooks

    return load_playbooks([])


def _lines_of(data: bytes) -> list[str]:
    return [strip_ansi(x.decode("utf-8", "replace")) for x in data.split(b"\n")]


def check_scan(path: Path, playbook):
    from triage.scan import scan

    res = scan([str(path)], playbook=playbook, jobs=1)
    data = path.read_bytes()
    lines = _lines_of(data)
    # counted on the bytes: a last line that is only an escape code is still a line
    nlines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert res.stats.lines == nlines
    for f in list(res.failures) + list(res.occurrences):
        line = f.source.line
        assert 1 <= line <= nlines, (line, nlines)
        core = f.message.strip("…")
        assert core in lines[line - 1], (core, lines[line - 1])
    if res.root_cause is not None:
        assert res.root_cause in res.failures
    return res


@SLOW
@given(st.binary(max_size=4000))
@example(b"\xff\xfe\x00[rank3]: RuntimeError: x\r\n")
@example(b"[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\x1b[0m")
@example(b"\x1b")  # a last line that is only an escape is a line (the test once counted 0)
def test_scan_random_bytes(tmp_path_factory, playbook, data):
    p = tmp_path_factory.mktemp("rb") / "random.log"
    p.write_bytes(data)
    res = check_scan(p, playbook)
    assert res.inputs[0].bytes == len(data)


def _fixture_lines() -> list[bytes]:
    out = []
    for name in ("nccl_hang_8rank.log", "cuda_oom_tee.log", "slurm-48213.out", "megatron_nan.log",
                 "deepspeed_overflow.log", "mpirun_chained.log", "hostile_copy.log"):
        out.extend(x for x in (FIXTURES / name).read_bytes().split(b"\n") if x and not x.startswith(b"#"))
    return out


REAL_LINES = _fixture_lines()
NOISE = st.sampled_from([b"\r", b"\x1b[31m", b"\x1b[0m", b"> ", b"\xff", b"\x00", b"[rank7]:", b"3: ",
                         b"[1,2]<stderr>:", b" ", b"\t", b"\xe2\x96\x88", b"\r\n"])


@st.composite
def mutated_logs(draw):
    lines = draw(st.lists(st.sampled_from(REAL_LINES), min_size=1, max_size=25))
    out = []
    for line in lines:
        op = draw(st.sampled_from(["keep", "cut", "insert", "splice", "dup", "quote"]))
        if op == "cut" and len(line) > 2:
            i = draw(st.integers(0, len(line) - 1))
            j = draw(st.integers(i, len(line)))
            line = line[:i] + line[j:]
        elif op == "insert":
            i = draw(st.integers(0, len(line)))
            line = line[:i] + draw(NOISE) + line[i:]
        elif op == "splice":
            other = draw(st.sampled_from(REAL_LINES))
            i = draw(st.integers(0, len(line)))
            line = line[:i] + other
        elif op == "dup":
            line = line + line
        elif op == "quote":
            line = b"> " + line
        out.append(line)
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    return sep.join(out) + draw(st.sampled_from([b"", sep]))


@SLOW
@given(mutated_logs())
def test_scan_mutated_fixture_lines(tmp_path_factory, playbook, data):
    p = tmp_path_factory.mktemp("mut") / "mutated.log"
    p.write_bytes(data)
    res = check_scan(p, playbook)
    assert res.stats.bytes == len(data)


def test_scan_long_line_cut_at_character_boundary(tmp_path, playbook):
    p = tmp_path / "long.log"
    p.write_bytes("[rank3]: ".encode() + "\u2588".encode() * 30000
                  + b" RuntimeError: CUDA error: an illegal memory access was encountered\n")
    res = check_scan(p, playbook)
    assert res.root_cause is not None and res.root_cause.rank == 3
    assert not res.root_cause.message.strip("…").startswith("\ufffd")


def test_scan_long_ascii_line_is_windowed(tmp_path, playbook):
    """A 140 kB line: the hit is found, its message is a window of the line marked with '…'."""
    from triage.scan import scan

    p = tmp_path / "long.log"
    p.write_bytes(b"[rank3]: " + b"x" * 70000
                  + b" RuntimeError: CUDA error: an illegal memory access was encountered " + b"y" * 70000 + b"\n")
    check_scan(p, playbook)
    rc = scan([str(p)], playbook=playbook, jobs=1).root_cause
    assert rc.family == "cuda_illegal_access" and rc.rank == 3 and rc.source.line == 1
    assert rc.message.startswith("…") and len(rc.message) <= 2 * 4096 + 2
    assert "RuntimeError: CUDA error: an illegal memory access" in rc.message


# -- the windowed backward search for step keywords ----------------------------------------------

_PIECES = st.sampled_from([b"tep", b"iter", b"Iter", b"it/s", b"it/", b"ter", b"\n", b"s", b"x"])
_FILLER = st.integers(1, 3000).map(lambda n: b"a" * n)


@FAST
@given(parts=st.lists(st.one_of(_PIECES, _FILLER), max_size=120), data=st.data())
def test_step_candidates_are_every_keyword_last_first(parts, data):
    """`_step_candidates` searches backwards in growing windows; whatever the window edges cut
    (a keyword across an edge included) it yields exactly the offsets of every keyword that lies
    wholly in data[floor:pos], last first, each once."""
    from triage.scan.engine import STEP_KEYS
    from triage.scan.worker import _has_step_key, _step_candidates

    blob = b"".join(parts)
    floor = data.draw(st.integers(0, len(blob)))
    pos = data.draw(st.integers(floor, len(blob)))
    expected = sorted({i for k in STEP_KEYS for i in range(floor, pos - len(k) + 1)
                       if blob.startswith(k, i)}, reverse=True)
    assert list(_step_candidates(blob, floor, pos)) == expected
    assert _has_step_key(blob, floor, pos) == bool(expected)  # the same keywords, unrolled
