"""Run metadata a user writes: `triage-run.yaml` beside the logs and `--label key=value`.

The YAML file is user-written, so it is loaded with a safe loader that also rejects duplicate
keys, and validated by a pydantic model with `extra="forbid"` (a typo is an error naming the
file and field, not a silently ignored key). Labels are free-form strings; `seed` and `version`
are also copied into columns of their own because analyses condition on them.

Precedence, later wins: what the logs show < triage-run.yaml < --label.

Example triage-run.yaml:

    seed: 3
    version: 9f2c1e7
    world_size: 64
    steps: 12000            # steps completed, when the logs do not show them
    started: 2026-11-20T10:00:00Z
    ended: 2026-11-20T14:30:00Z
    hosts: {0: node-a, 1: node-a, 2: node-b}
    labels: {mitigation: NCCL_ALGO=Ring, cluster: west}
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from triage.errors import InputError, UsageError

RUN_FILE = "triage-run.yaml"
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present: 10x faster) that refuses duplicate keys."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

Scalar = str | int | float | bool


class RunFile(BaseModel):
    """The schema of triage-run.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    seed: Scalar | None = None
    version: Scalar | None = None
    world_size: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=0)
    started: datetime | None = None
    ended: datetime | None = None
    seconds: float | None = Field(default=None, ge=0)
    hosts: dict[int, str] = Field(default_factory=dict)
    labels: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _keys(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        for k in v:
            if not _LABEL_KEY.match(k):
                raise ValueError(f"label key {k!r} must be a short identifier")
        return v

    def duration(self) -> float | None:
        if self.seconds is not None:
            return self.seconds
        if self.started and self.ended:
            started, ended = self.started, self.ended
            if (started.tzinfo is None) != (ended.tzinfo is None):
                return None
            return max(0.0, (ended - started).total_seconds())
        return None

    def label_map(self) -> dict[str, str]:
        out = {k: _text(v) for k, v in self.labels.items()}
        if self.seed is not None:
            out["seed"] = _text(self.seed)
        if self.version is not None:
            out["version"] = _text(self.version)
        return out


def _text(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def load_run_file(path: Path) -> RunFile:
    """Load and validate one triage-run.yaml; InputError with file:line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read run metadata: {exc}", where=str(path),
                         hint="fix or remove the file") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML: {problem}", where=where,
                         hint="see docs/case.md for the triage-run.yaml format") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("run metadata must be a mapping (key: value lines)", where=str(path),
                         hint="see docs/case.md for the triage-run.yaml format")
    try:
        return RunFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise InputError(f"{field}: {first['msg']}", where=str(path),
                         hint="allowed keys: " + ", ".join(RunFile.model_fields)) from None


def find_run_file(paths: list[Path]) -> Path | None:
    """The triage-run.yaml inside a given folder or beside a given file; the first one wins."""
    for p in paths:
        candidate = (p if p.is_dir() else p.parent) / RUN_FILE
        if candidate.is_file():
            return candidate
    return None


def parse_label(text: str) -> tuple[str, str]:
    """`key=value` -> (key, value). UsageError naming --label otherwise."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _LABEL_KEY.match(key):
        raise UsageError(f"label {text!r} is not key=value", where="--label",
                         hint="e.g. --label seed=3 --label mitigation=NCCL_ALGO=Ring")
    return key, value.strip()


def parse_labels(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, v = parse_label(item)
        out[k] = v
    return out


def as_dict(model: RunFile) -> dict[str, Any]:
    return model.model_dump(exclude_none=True)
