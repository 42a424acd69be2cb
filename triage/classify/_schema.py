"""The schema of a rules file, as users write it (pydantic models, `extra="forbid"`).

Imported only when a rules file is validated: building these models is most of the cost of
importing pydantic, and a scan whose rules come from the validated-rules cache never needs them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from triage.classify.playbook import CAUSE_CATEGORIES, ROLES, SEVERITIES
from triage.records import FAMILIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CauseSpec(_Strict):
    category: Literal[CAUSE_CATEGORIES]  # type: ignore[valid-type]
    text: StrictStr = Field(min_length=1)


class MatchSpec(_Strict):
    any: list[StrictStr] = Field(min_length=1)
    all: list[StrictStr] = Field(default_factory=list)
    none: list[StrictStr] = Field(default_factory=list)
    ignore_case: StrictBool = False


class ExamplesSpec(_Strict):
    match: list[StrictStr] = Field(min_length=1)
    no_match: list[StrictStr] = Field(default_factory=list)


class RuleSpec(_Strict):
    id: StrictStr
    title: StrictStr = Field(min_length=1)
    family: Literal[FAMILIES]  # type: ignore[valid-type]
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    role: Literal[ROLES]  # type: ignore[valid-type]
    priority: StrictInt = Field(ge=0, le=1000)
    match: MatchSpec
    causes: list[CauseSpec] = Field(min_length=1)
    next_steps: list[StrictStr] = Field(min_length=1)
    references: list[StrictStr] = Field(default_factory=list)
    examples: ExamplesSpec
    override: StrictBool = False


class FileSpec(_Strict):
    rules: list[dict[str, Any]]


def pydantic_message(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"field {loc!r}: unknown field"
    if err["type"] == "missing":
        return f"field {loc!r}: required field missing"
    msg = err["msg"]
    if err["type"] == "literal_error":
        msg = "must be " + msg.removeprefix("Input should be ")
    return f"field {loc!r}: {msg}"


