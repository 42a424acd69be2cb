"""Fails when the given comma list of ranks/hosts contains every element of $BAD_SET.

usage: ranks_fail.py LIST [P] [STATE_DIR]   (flaky like fail_at.py when P < 1)
"""
import hashlib
import os
import sys

given = set(sys.argv[1].split(","))
p = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
state = sys.argv[3] if len(sys.argv) > 3 else None
n = 0
if state:
    path = os.path.join(state, "calls")  # one line per invocation, appended atomically
    n = os.path.getsize(path) // 2 if os.path.exists(path) else 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"x\n")
    os.close(fd)
bad = set(os.environ["BAD_SET"].split(","))
u = int(hashlib.sha256(f"{n}:{sys.argv[1]}".encode()).hexdigest()[:8], 16) / 2**32
sys.exit(1 if bad <= given and u < p else 0)
