"""A trial that fails at and after a culprit step, deterministically or with a set probability.

usage: fail_at.py STEP CULPRIT [P] [STATE_DIR]
Exit 1 (bad) when STEP >= CULPRIT and the trial "fires"; else exit 0. With P < 1 whether it
fires comes from a counter kept in STATE_DIR (hash of the counter and the step), so a test is
reproducible while the failure is flaky. Every invocation is counted in STATE_DIR/calls.
Also: exit 125 (skip) when STEP is listed in $SKIP_STEPS; a false alarm before the culprit
with probability $FALSE_ALARM.
"""
import hashlib
import os
import sys

step, culprit = int(sys.argv[1]), int(sys.argv[2])
p = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
state = sys.argv[4] if len(sys.argv) > 4 else None
n = 0
if state:
    path = os.path.join(state, "calls")  # one line per invocation, appended atomically
    n = os.path.getsize(path) // 2 if os.path.exists(path) else 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"x\n")
    os.close(fd)
if str(step) in os.environ.get("SKIP_STEPS", "").split(","):
    sys.exit(125)
u = int(hashlib.sha256(f"{n}:{step}".encode()).hexdigest()[:8], 16) / 2**32
if step >= culprit:
    sys.exit(1 if u < p else 0)
sys.exit(1 if u < float(os.environ.get("FALSE_ALARM", "0")) else 0)
