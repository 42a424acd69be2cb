"""The closed vocabulary of bisection: what one trial said, and what one search concluded.

`Outcome` is the verdict of one trial (one run of the user's command at one point of an axis):

- GOOD: exit 0, the failure did not happen.
- BAD: the failure under investigation happened (any non-zero exit other than 125; with a
  `--signature`, only when the scanner finds that signature in the trial's output).
- SKIP: exit 125, as in `git bisect run`: this point cannot be tested (it does not build, the
  step is not reachable). Carries no evidence about the culprit.
- UNRELATED: the trial failed, but not with the signature under investigation. Like Hypothesis'
  shrinker, which only accepts a candidate whose `interesting_origin` equals the target's, a
  search never treats another bug's failure as evidence about this one.
- FLAKY: a conclusion, not a trial outcome: the failure did not replay where it had been seen
  (the full rank set stopped failing, a "bad" end never failed). First-class, never an exception.
- ERROR: the command could not be run at all (not found, not executable). Stops the search.

`TrialRecord` is what the runner hands back and the case stores: one per trial, never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class Outcome(str, Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    UNRELATED = "unrelated"
    FLAKY = "flaky"
    ERROR = "error"

    @property
    def informative(self) -> bool:
        """Whether this outcome is evidence about the failure under investigation."""
        return self in (Outcome.GOOD, Outcome.BAD)


SKIP_EXIT = 125  # git bisect's "cannot test this point"


def outcome_from_exit(code: int | None) -> Outcome:
    """Exit 0 good, 125 skip, anything else (signals, timeouts as None) bad."""
    if code == 0:
        return Outcome.GOOD
    if code == SKIP_EXIT:
        return Outcome.SKIP
    return Outcome.BAD


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial.

    `point` maps placeholder names to the exact strings substituted (`{"step": "120"}`);
    `key` is the point's identity on the axis (a position on an ordered axis, a seed, a sorted
    tuple of rank/host indices), used to group repeated trials of the same point.
    """

    seq: int  # 1-based, in the order trials finished (and were stored)
    key: Any
    point: Mapping[str, str]
    outcome: Outcome
    exit_code: int | None = None  # None: killed on timeout, or never started
    seconds: float = 0.0
    timed_out: bool = False
    output: str | None = None  # path of the captured stdout+stderr, relative to the session dir
    signatures: tuple[str, ...] = ()  # signature ids the scanner found in the output
    note: str | None = None  # why: "timeout after 30 s", "signature not found", ...
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "point": dict(self.point),
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "timed_out": self.timed_out,
            "output": self.output,
            "signatures": list(self.signatures),
            "note": self.note,
        }
