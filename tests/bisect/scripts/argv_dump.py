"""Writes its argv (after the script name) as JSON to the file named by $ARGV_OUT; exit 0."""
import json
import os
import sys

with open(os.environ["ARGV_OUT"], "w") as fh:
    json.dump(sys.argv[1:], fh)
