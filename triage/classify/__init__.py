"""classify: playbook rules, rule matching, signatures, root cause vs symptom.

The playbook library (`triage.classify.playbook`) is the public entry point for rules:
`load_playbooks()` returns a `Playbook` whose `classify(line)` names the best matching rule.
"""

from triage.classify.playbook import (  # noqa: F401
    Cause,
    Playbook,
    PlaybookErrors,
    Rule,
    builtin_dir,
    load_playbooks,
)
