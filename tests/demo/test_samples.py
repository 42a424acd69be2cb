"""samples/ is what `python -m triage.demo.samples` wrote, and says what it contains."""

from __future__ import annotations

import json

from triage.analyze.diverge import find_divergence
from triage.demo.launch import REPO_ROOT
from triage.demo.samples import SAMPLE

SAMPLE_DIR = REPO_ROOT / "samples" / SAMPLE["name"]


def test_the_sample_has_the_documented_layout():
    assert (SAMPLE_DIR / "console.log").is_file()
    assert sorted(p.name for p in (SAMPLE_DIR / "logs" / "run" / "attempt_0").iterdir()) == ["0", "1", "2", "3"]
    assert sorted(p.name for p in (SAMPLE_DIR / "probe").iterdir()) == [f"rank{r}.jsonl" for r in range(4)]
    assert not (SAMPLE_DIR / "truth").exists()  # the truth stays out of the logs
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert 5_000 < total < 200_000


def test_no_path_of_the_generating_machine_leaks():
    for path in SAMPLE_DIR.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert str(REPO_ROOT) not in text, path
            assert "/tmp/" not in text, path


def test_the_readme_truth_is_what_the_probe_shows():
    job = json.loads((SAMPLE_DIR / "job.json").read_text())
    first = job["injected"][0]
    assert (first["fault"], first["kind"]) == ("reduce_bug", "bitflip")
    result = find_divergence([SAMPLE_DIR / "probe"])
    assert result.first_bad_step == first["step"] and result.bad_ranks == (first["rank"],)
    readme = (REPO_ROOT / "samples" / "README.md").read_text()
    assert f"on rank {first['rank']} at step {first['step']}" in readme
