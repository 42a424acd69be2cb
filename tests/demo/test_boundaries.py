"""Library code of this area never imports typer or rich (the CLI is its only renderer), and
importing the probe or the launcher does not import torch (a disabled probe costs nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    return set(out.split())


def test_library_modules_do_not_import_the_cli_stack():
    mods = _modules_after("import triage.probe, triage.analyze.diverge, triage.demo.launch, "
                          "triage.demo.pipeline, triage.demo.samples, triage.demo.train")
    assert not {m for m in mods if m.split(".")[0] in ("typer", "rich")}


def test_probe_and_launcher_import_without_torch():
    mods = _modules_after("import triage.probe, triage.demo.launch, triage.analyze.diverge")
    assert "torch" not in mods
