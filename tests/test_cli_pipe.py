"""`triage ... | head`: a reader that leaves early gets no traceback and no 'internal error'.

The reader is gone before triage writes (its end of the pipe is closed first), so every write
meets a broken pipe, as the tail of a long output does under `| head`.
"""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [["playbooks", "list"], ["playbooks", "list", "--json"],
                                  ["scan", "{log}", "--json"], ["scan", "{log}"]])
def test_closed_stdout_is_quiet(tmp_path, args):
    log = tmp_path / "rank_0.log"
    log.write_text("step 3 | loss 2.0\nRuntimeError: CUDA error: an illegal memory access was "
                   "encountered\n", encoding="utf-8")
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "triage", *[a.format(log=log) for a in args]],
                              stdout=w, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    err = proc.stderr.decode()
    assert "internal error" not in err and "Traceback" not in err, err
    assert proc.returncode == 141, (proc.returncode, err)  # as a shell reports SIGPIPE
