"""Every built-in rule's examples, run as the scanner would see them (one test per rule).

A positive example must pass the rule's prefilter patterns on the raw line, match the rule on
the prefix-stripped line, and win the whole playbook's classification (no shadowing); a
negative example must not match its rule.
"""

from __future__ import annotations

import pytest

from triage.classify.playbook import check_examples, load_playbooks
from triage.records import FAMILIES

PLAYBOOK = load_playbooks(builtin=True, use_env=False)
RULE_IDS = [r.id for r in PLAYBOOK.rules]


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_examples(rule_id):
    results = check_examples(PLAYBOOK, [rule_id])
    assert results, f"{rule_id} has no examples"
    failures = [f"{r.kind}[{r.index}] {r.problem}: {r.text}" for r in results if not r.ok]
    assert not failures, "\n".join(failures)
    shadowed = [f"match[{r.index}] won by {r.shadowed_by}: {r.text}" for r in results
                if r.shadowed_by]
    assert not shadowed, "\n".join(shadowed)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_has_near_miss(rule_id):
    rule = PLAYBOOK.get(rule_id)
    assert rule.examples_no_match, f"{rule_id}: give at least one near-miss negative example"


def test_library_covers_every_family():
    covered = {r.family for r in PLAYBOOK.rules}
    missing = set(FAMILIES) - covered - {"other"}
    assert not missing, f"no built-in rule for families: {sorted(missing)}"


def test_ids_are_unique_and_grouped_by_file():
    ids = [r.id for r in PLAYBOOK.rules]
    assert len(ids) == len(set(ids))
    for r in PLAYBOOK.rules:
        stem = r.path.rsplit("/", 1)[-1].removesuffix(".yaml")
        assert r.id.split(".")[0] == stem, f"{r.id} lives in {stem}.yaml"
