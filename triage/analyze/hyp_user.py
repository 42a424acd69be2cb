"""A user's own hypothesis, written in YAML, compiled into causes of units the model scores.

    name: kernel bug plus a bad host
    note: the NaNs on v2 look like the reduction bug; node-17 has had ECC errors
    causes:
      - id: kernel
        signatures: [sig1:3f2a, sig1:9c01]     # full ids or unique prefixes ("sig1:" is safest:
                                              # YAML reads 0123 as a number)
        where: ["version=v2"]                 # optional: only these incidents of them
        only: "version>=v2"                   # optional claim: this cause never fires elsewhere
      - id: host
        signatures: [sig1:77aa]
        only: "host=node-17"

Conditions are `key OP value` with OP one of `=`, `!=`, `>=`, `<=`, `>`, `<`; `=`/`!=` take
comma-separated values. Keys are run labels (seed, version, mitigation, ...), `host` and `step`.
Ordering compares numbers as numbers and other values by natural order (v2 < v10).

The file is user-written: loaded with yaml.safe_load, validated by pydantic with
`extra="forbid"`, every error naming the file and the cause. Incidents of a signature that no
cause claims stay in a cause of their own ("the rest of S"), so every hypothesis explains all
incidents. An incident claimed by two causes is an error, not a silent choice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from triage.analyze.hyp_evidence import IncidentObs, RunObs, Tables, Unit
from triage.analyze.hyp_model import Claim
from triage.errors import InputError

_COND = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(!=|>=|<=|=|>|<)\s*(.+?)\s*$")


class CauseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    signatures: list[str] = Field(min_length=1)
    where: list[str] = Field(default_factory=list)
    only: str | None = None

    @field_validator("where", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("signatures", mode="before")
    @classmethod
    def _ids_as_text(cls, v):
        # an all-digit id prefix such as 23402850 reads as a YAML integer; take it as written
        if isinstance(v, list):
            return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        return v


class HypothesisSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    note: str = ""
    causes: list[CauseSpec] = Field(min_length=1)


def parse_spec(text: str, where: str) -> HypothesisSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{where}:{mark.line + 1}" if mark else where
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=loc,
                         hint="see docs/hypotheses.md for the format") from None
    if not isinstance(data, dict):
        raise InputError("a hypothesis file is a mapping with name, note and causes", where=where,
                         hint="see docs/hypotheses.md for an example")
    try:
        spec = HypothesisSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{loc}: {first['msg']}", where=where,
                         hint="fields: name, note, causes[id, signatures, where, only]") from None
    ids = [c.id for c in spec.causes]
    if len(set(ids)) != len(ids):
        raise InputError("two causes share an id", where=where, hint="give each cause its own id")
    for c in spec.causes:
        for cond in c.where + ([c.only] if c.only else []):
            parse_condition(cond, f"{where}: cause {c.id}")
    return spec


def load_spec(path: Path) -> tuple[HypothesisSpec, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path),
                         hint="give the path of a hypothesis YAML file") from None
    return parse_spec(text, str(path)), text


def _natural(v: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", v) if p)


def parse_condition(text: str, where: str) -> tuple[str, Callable[[str], bool]]:
    m = _COND.match(text or "")
    if not m:
        raise InputError(f"cannot read condition {text!r}", where=where,
                         hint="write key OP value, e.g. host=node-17 or version>=v2")
    key, op, raw = m.groups()
    if op in ("=", "!="):
        vals = {v.strip() for v in raw.split(",") if v.strip()}
        return key, (lambda x: x in vals) if op == "=" else (lambda x: x not in vals)
    ref = _natural(raw)
    cmp = {">=": lambda a: a >= ref, "<=": lambda a: a <= ref,
           ">": lambda a: a > ref, "<": lambda a: a < ref}[op]
    return key, lambda x: cmp(_natural(x))


def _incident_value(key: str, inc: IncidentObs, runs: Mapping[str, RunObs]) -> str | None:
    if key == "host":
        return inc.host
    if key == "step":
        return None if inc.step is None else str(inc.step)
    if key == "rank":
        return None if inc.rank is None else str(inc.rank)
    return runs[inc.run].labels.get(key)


def resolve_signature(ref: str, known: Sequence[str], where: str) -> str:
    if ref in known:
        return ref
    hits = [s for s in known if s.startswith(ref) or s.startswith("sig1:" + ref)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InputError(f"no signature {ref!r} among the incidents", where=where,
                         hint="list them with: triage signatures")
    raise InputError(f"{ref!r} matches {len(hits)} signatures", where=where,
                     hint="give more characters of the id")


def compile_spec(spec: HypothesisSpec, tables: Tables, where: str
                 ) -> tuple[list[list[Unit]], list[Claim | None], int]:
    """(causes as units, claims, number of split signatures) for `spec` on these tables."""
    runs = {r.name: r for r in tables.runs}
    n = len(tables.incidents)
    owner = np.full(n, -1)
    causes: list[list[Unit]] = []
    claims: list[Claim | None] = []
    for ci, c in enumerate(spec.causes):
        at = f"{where}: cause {c.id}"
        sel = np.zeros(n, dtype=bool)
        sigs = sorted({resolve_signature(s, tables.signatures, at) for s in c.signatures})
        conds = [parse_condition(w, at) for w in c.where]
        units = []
        for sig in sigs:
            mask = tables.sig_index == tables.signatures.index(sig)
            for key, pred in conds:
                ok = np.array([(v := _incident_value(key, inc, runs)) is not None and pred(v)
                               for inc in tables.incidents], dtype=bool)
                mask &= ok
            if not mask.any():
                continue
            clash = mask & (owner >= 0)
            if clash.any():
                other = spec.causes[int(owner[np.flatnonzero(clash)[0]])].id
                raise InputError(f"incident {tables.incidents[int(np.flatnonzero(clash)[0])].id}"
                                 f" is claimed by causes {other} and {c.id}", where=at,
                                 hint="narrow one cause with where: [...]")
            owner[mask] = ci
            sel |= mask
            label = sig if not c.where else f"{sig}|{';'.join(c.where)}"
            units.append(Unit(label, sig, mask))
        if not units:
            raise InputError("this cause explains no incident", where=at,
                             hint="check its signatures and where: conditions")
        claim = None
        if c.only:
            key, pred = parse_condition(c.only, at)
            dim = next((d for d in tables.dims if d.name == key), None)
            if dim is None:
                raise InputError(f"cannot check a claim on {key!r}: no such condition varies in "
                                 "the evidence", where=at,
                                 hint="conditions: " + ", ".join(d.name for d in tables.dims))
            claim = Claim(key, frozenset(v for v in dim.values if pred(v)))
        causes.append(units)
        claims.append(claim)
    for si, sig in enumerate(tables.signatures):
        left = (tables.sig_index == si) & (owner < 0)
        if left.any():
            whole = bool(left.sum() == (tables.sig_index == si).sum())
            causes.append([Unit(sig if whole else f"{sig}|rest", sig, left)])
            claims.append(None)
    per_sig: dict[str, int] = {}
    for units in causes:
        for u in units:
            per_sig[u.signature] = per_sig.get(u.signature, 0) + 1
    n_split = sum(1 for v in per_sig.values() if v > 1)
    return causes, claims, n_split
