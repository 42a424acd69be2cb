"""Starts a grandchild that sleeps, writes both pids to $PIDS_OUT, then sleeps itself."""
import os
import subprocess
import sys
import time

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(os.environ["PIDS_OUT"], "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
time.sleep(120)
