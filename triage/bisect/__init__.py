"""Bisection of a flaky distributed-training failure: by step, by seed, by rank or host.

Public API (library first; `triage/cli/bisect.py` is a thin client):

    from triage.bisect import (Outcome, OrderedSearch, SetSearch, SeedSearch,
                               start_step, start_seed, start_ranks, Session, from_probe)

    s = start_step(store, template="./repro.sh {step}", good="0", bad="5000",
                   confidence=0.99, max_trials=200, jobs=1, timeout=600, signature=None)
    answer = s.run(progress=callback)          # the triage.bisect/1 object
    Session.load(store, sid).run()             # resume
    Session.load(store, sid).result()          # replay: recompute from stored trials

The searches are ask/tell objects that never run anything themselves (`ordered.py`,
`sets.py`, `seeds.py`); `trial.py` is the only place that starts processes; the case tables are
written only through `triage.case.bisect.BisectDAO`.
"""

from triage.bisect.ordered import OrderedSearch, OrderedState, binary_search, channel_capacity
from triage.bisect.outcome import Outcome, TrialRecord
from triage.bisect.seeds import SeedSearch, SeedVerdict
from triage.bisect.session import (BISECT_SCHEMA, Session, from_probe, sessions, start_ranks,
                                   start_seed, start_step)
from triage.bisect.sets import SetSearch
from triage.bisect.trial import Template

__all__ = ["BISECT_SCHEMA", "OrderedSearch", "OrderedState", "Outcome", "SeedSearch",
           "SeedVerdict", "Session", "SetSearch", "Template", "TrialRecord", "binary_search",
           "channel_capacity", "from_probe", "sessions", "start_ranks", "start_seed", "start_step"]
