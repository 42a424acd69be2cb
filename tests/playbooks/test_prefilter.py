"""The prefilter rewrite (`Rule.prefilter_patterns`): same language, no captures, no flags.

Property: for any pattern built from the syntax rules use and any text, the rewritten pattern
matches exactly when the original does. The built-in library must also compile into one
Hyperscan database (the scanner's fast path) and route every positive example to its rule.
"""

from __future__ import annotations

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.classify.playbook import check_pattern, load_playbooks, strip_example, _to_prefilter

ALPHABET = "ab:1 ]["
_ATOMS = st.sampled_from(["a", "b", ":", "1", r"\d", r"\w", r"\s", r"\]", r"\[", "[ab]", "[^a]",
                          "[]a]", "[^]b]", r"[\]1]", "[[:digit:]]", "."])


def _regex(children):
    return st.one_of(
        st.tuples(children, children).map("".join),
        st.tuples(children, children).map(lambda t: f"{t[0]}|{t[1]}"),
        st.tuples(st.sampled_from(["rank", "seq", "op", "host"]), children)
          .map(lambda t: f"(?P<{t[0]}>{t[1]})"),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"(?:{c})"),
        st.tuples(children, st.sampled_from(["*", "+", "?", "{1,2}", "*?", "+?"]))
          .map(lambda t: f"(?:{t[0]}){t[1]}"),
    )


REGEXES = st.recursive(_ATOMS, _regex, max_leaves=8)


def _dedupe_names(pattern: str) -> str:
    # RE2 rejects duplicate group names; number them.
    out, n = [], 0
    for part in pattern.split("(?P<"):
        if out:
            n += 1
            name, rest = part.split(">", 1)
            part = f"{name}{n}>{rest}"
        out.append(part)
    return "(?P<".join(out)


@settings(max_examples=300, deadline=None)
@given(REGEXES, st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=5))
def test_rewrite_preserves_the_language(pattern, texts):
    pattern = _dedupe_names(pattern)
    original = re2.compile(pattern)
    rewritten = re2.compile(_to_prefilter(pattern))
    assert rewritten.groups == 0
    assert "(?P" not in rewritten.pattern
    for text in texts:
        assert (original.search(text) is None) == (rewritten.search(text) is None), (pattern, text)


@given(st.text(max_size=40))
def test_check_pattern_never_crashes(pattern):
    problem = check_pattern(pattern)
    assert problem is None or isinstance(problem, str)


@given(st.sampled_from(["[rank3]:", "[default12]:", "3: ", "[1,3]<stderr>:", "[0,0]<stdout>:"]),
       st.text(st.characters(blacklist_characters="\x1b"), max_size=200))
def test_strip_example_removes_exactly_one_launcher_prefix(prefix, line):
    assert strip_example(prefix + line) == line
    assert strip_example("\x1b[31m" + prefix + line + "\x1b[0m") == line


def test_builtin_library_compiles_into_one_hyperscan_database():
    hs = __import__("pytest").importorskip("hyperscan")
    pb = load_playbooks(use_env=False)
    patterns, owners, flags = [], [], []
    for rule in pb.rules:
        for p in rule.prefilter_patterns():
            patterns.append(p.encode())
            owners.append(rule.id)
            flags.append(hs.HS_FLAG_SINGLEMATCH | (hs.HS_FLAG_CASELESS if rule.ignore_case else 0))
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(expressions=patterns, ids=list(range(len(patterns))), elements=len(patterns),
               flags=flags)
    for rule in pb.rules:
        for example in rule.examples_match:
            hits: set[str] = set()
            db.scan(example.encode(), match_event_handler=lambda i, *_: hits.add(owners[i]))
            assert rule.id in hits, (rule.id, example)


BENIGN = [
    "2026-11-23 00:41:02,118 INFO step 1200 loss 2.3183 lr 3.0e-04 grad_norm 0.91 tokens/s 81234",
    "[rank3]:[I1123 00:41:02.118 ProcessGroupNCCL.cpp:938] [PG ID 0 PG GUID 0 Rank 3] ProcessGroupNCCL initialization options: size: 8, global rank: 3, TIMEOUT(ms): 600000",
    "node-12:4242:4300 [3] NCCL INFO Channel 00/0 : 3[3] -> 4[4] via P2P/CUMEM/read",
    "Epoch 2: 45%|####5     | 450/1000 [01:02<01:16, 7.21it/s, loss=1.93]",
    "Saving checkpoint to /ckpt/step_1200 ... done in 12.3 s",
    "W1123 00:41:02.118000 4242 torch/distributed/run.py:793] Setting OMP_NUM_THREADS environment variable for each process to be 1 in default",
    "INFO:torch.distributed.elastic.agent.server.api:[default] Starting worker group",
    "validation: accuracy 0.913 error rate 0.087 (no errors in 12000 samples)",
    "Downloading shards: 100%|##########| 4/4 [00:00<00:00, 12.1it/s]",
    "NCCL version 2.21.5+cuda12.4",
    "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |",
    "dataloader: 8 workers, prefetch_factor 2, pin_memory True",
]


def test_no_rule_fires_on_ordinary_training_lines():
    pb = load_playbooks(use_env=False)
    fired = {line: [r.id for r, _ in pb.matching(strip_example(line))] for line in BENIGN}
    assert not {k: v for k, v in fired.items() if v}
