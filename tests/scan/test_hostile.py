"""Hostile input: what crashed machines leave behind. Scan what is readable, warn naming the path,
never a traceback, never hang."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from triage.scan import scan

ERR = "[rank3]: RuntimeError: CUDA error: an illegal memory access was encountered\n"


def run_cli(*args, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "triage", *args], capture_output=True,
                          input=input, timeout=timeout)


def test_invalid_utf8_nul_and_binary_junk(tmp_path):
    p = tmp_path / "junk.log"
    p.write_bytes(b"\xff\xfe\x00\x00garbage\x80\x81\n" + os.urandom(20000) + b"\n" + ERR.encode()
                  + b"\x00\x00\xc3\x28 tail\n")
    r = scan([p], jobs=1)
    assert r.root_cause is not None and r.root_cause.rank == 3
    line = p.read_bytes().split(b"\n")[r.root_cause.source.line - 1]
    assert line.decode("utf-8", "replace").endswith("illegal memory access was encountered")


def test_one_enormous_line(tmp_path):
    p = tmp_path / "huge.log"
    with open(p, "wb") as fh:
        fh.write(b"[rank1]: ")
        fh.write(b"x" * (12 << 20))
        fh.write(b" RuntimeError: CUDA error: an illegal memory access was encountered ")
        fh.write(b"y" * (12 << 20))
        fh.write(b"\n" + ERR.encode())
    r = scan([p], jobs=1)
    fams = {(f.family, f.rank) for f in r.failures}
    assert ("cuda_illegal_access", 3) in fams
    big = [o for o in r.occurrences if o.source.line == 1]
    assert big, "the hit inside the 24 MB line is found"
    assert len(big[0].message) < 20000  # cut to a window, not held whole
    assert r.stats.lines == 2


def test_crlf_and_lone_cr(tmp_path):
    p = tmp_path / "crlf.log"
    p.write_bytes(b"[rank0]: step 5\r\n[rank0]: step 6\r\n" + ERR.replace("\n", "\r\n").encode())
    r = scan([p], jobs=1)
    assert r.root_cause.rank == 3 and r.root_cause.source.line == 3
    assert not r.root_cause.message.endswith("\r")
    q = tmp_path / "cr.log"
    q.write_bytes(b"progress 10%\rprogress 20%\r" + ERR.encode())
    r = scan([q], jobs=1)
    assert r.root_cause.rank == 3


def test_truncated_and_corrupt_gz(tmp_path):
    good = gzip.compress(("[rank0]: step 1\n" * 5000 + ERR).encode())
    t = tmp_path / "trunc.log.gz"
    t.write_bytes(good[: len(good) // 2])
    c = tmp_path / "corrupt.log.gz"
    c.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(4000))
    ok = tmp_path / "ok.log"
    ok.write_text(ERR)
    r = scan([tmp_path], jobs=1)
    joined = "\n".join(r.warnings)
    assert str(t) in joined and str(c) in joined
    assert r.root_cause is not None and r.root_cause.rank == 3
    proc = run_cli("scan", "--json", str(tmp_path))
    assert proc.returncode == 0
    assert b"Traceback" not in proc.stderr
    assert str(t).encode() in proc.stderr
    json.loads(proc.stdout)


def test_empty_files_symlink_loop_and_dangling_link(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "empty.log").write_bytes(b"")
    (d / "rank_3.log").write_text("RuntimeError: CUDA error: an illegal memory access was encountered\n")
    os.symlink(d, d / "loop")
    os.symlink(tmp_path / "missing", d / "dangling.log")
    r = scan([d], jobs=1)
    assert r.root_cause.rank == 3  # from the file name
    assert any("loop" in w for w in r.warnings)
    assert any("dangling.log" in w for w in r.warnings)


def test_many_small_files(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    n = 5000
    for i in range(n):
        text = f"step {i % 7}\n"
        if i == 4321:
            text += "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
        (d / f"rank_{i}.log").write_text(text)
    r = scan([d], jobs=2)
    assert len(r.inputs) == n
    assert r.root_cause.rank == 4321 and r.root_cause.family == "cuda_oom"


def test_file_growing_while_read(tmp_path):
    p = tmp_path / "growing.log"
    p.write_text("[rank0]: step 1\n" * 200000 + ERR)
    stop = threading.Event()

    def grow():
        with open(p, "a") as fh:
            while not stop.is_set():
                fh.write("[rank1]: step 2\n" * 1000)
                fh.flush()
                time.sleep(0.001)

    th = threading.Thread(target=grow)
    th.start()
    try:
        r = scan([p], jobs=1)
    finally:
        stop.set()
        th.join()
    assert r.root_cause is not None and r.root_cause.rank == 3
    assert r.stats.lines >= 200001


def test_stdin(tmp_path):
    proc = run_cli("scan", "--json", "-", input=("[rank0]: step 4\n" + ERR).encode())
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["root_cause"]["rank"] == 3 and d["root_cause"]["source"]["path"] == "<stdin>"
    assert d["root_cause"]["source"]["line"] == 2 and d["root_cause"]["step"] == 4


@pytest.mark.parametrize("args,code,text", [
    (["scan", "/no/such/path"], 3, b"no such file or directory"),
    (["scan", "--jobs", "zero", "x"], 2, b"Invalid value"),
    (["scan", "--jobs", "0", "."], 2, b"--jobs"),
    (["scan", "/no/such/*.log"], 3, b"no file matches"),
])
def test_bad_arguments_one_line_error(args, code, text):
    proc = run_cli(*args)
    assert proc.returncode == code
    assert text in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_invalid_playbook_dir_is_a_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    family: not_a_family\n")
    log = tmp_path / "a.log"
    log.write_text(ERR)
    proc = run_cli("scan", str(log), "--playbooks", str(tmp_path))
    assert proc.returncode == 4
    assert b"bad.yaml" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_markup_and_control_characters_are_not_interpreted(tmp_path):
    p = tmp_path / "markup.log"
    p.write_text("[rank2]: RuntimeError: [bold red]boom[/] \x1b]0;pwned\x07 [/nope]\n")
    proc = run_cli("scan", str(p))
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b]0;" not in proc.stdout
    assert b"[bold red]boom[/]" in proc.stdout
