"""Signature fingerprints: the same failure gets the same id in every run.

A signature is `sig<version>:<12 hex>` over (family, rule id, template). The template is the
failure message with its launcher prefix and leading log header (timestamp, glog header, level)
removed and the masks of playbooks/masks.yaml applied (numbers, addresses, paths, hosts' digits,
times). The masks file's `version` is part of the id, so a change in normalisation shows as new
ids instead of silently merging or splitting a case.

Invariants: `template(m)` is idempotent on its own output and never raises; the id depends only on
(family, rule id, template, masks version).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from triage.errors import PlaybookError
from triage.parse.blind import MASK
from triage.parse.timestamps import stamp_end

TEMPLATE_MAX = 400

_HEADER_RE = re.compile(
    r"^\s*(?:\d+\s+[\w./+-]+:\d+\]\s*"  # rest of a glog header: "1234 path/file.cc:12] "
    r"|[\w./+-]+\.(?:cpp|cc|cu|c|h|hpp|py):\d+\]\s*)?"  # torch C++ / elastic: "api.py:897] "
    r"(?:[-|:\]]\s*)*(?:(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b[:\s|-]*)?"
)
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Masks:
    version: int
    rules: tuple[tuple[str, re.Pattern, str], ...]

    def apply(self, text: str) -> str:
        for _name, rx, rep in self.rules:
            text = rx.sub(rep, text)
        return text


def _masks_path() -> Path:
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_playbooks" / "masks.yaml"
    return packaged if packaged.exists() else here.parent / "playbooks" / "masks.yaml"


@lru_cache(maxsize=1)
def load_masks(path: str | None = None) -> Masks:
    p = Path(path) if path else _masks_path()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        version = int(data["version"])
        rules = []
        for i, item in enumerate(data["masks"]):
            rules.append((str(item["name"]), re.compile(str(item["pattern"])), str(item["replace"])))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, re.error) as exc:
        raise PlaybookError(f"invalid masks file: {exc}", where=str(p),
                            hint="masks.yaml needs `version` and a list `masks` of name/pattern/replace") from exc
    return Masks(version, tuple(rules))


def strip_header(message: str) -> str:
    """The message without its leading timestamp, glog/C++ header and log level."""
    # By shape, not by date: the template must not depend on the digits' values, or one
    # line's invalid date (Feb 29 read as 1970) would decide the template of every line of its
    # shape that the cache below serves.
    end = stamp_end(message)
    if end is not None and end <= 60:
        message = message[end:]
    m = _HEADER_RE.match(message)
    if m is not None and m.end() > 0:
        message = message[m.end():]
    return message.strip()


_CACHE: dict = {}


def template(message: str, masks: Masks | None = None) -> str:
    """The message with its header stripped and the masks applied (cached: messages that differ
    only in their digits have the same template, so 100,000 ranks' timeouts cost one)."""
    key = None
    if masks is None and "0x" not in message and "0X" not in message:
        # same length, same character classes; bytes.translate is a C table lookup
        key = message.encode("utf-8", "surrogatepass").translate(MASK)
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
    text = (masks or load_masks()).apply(strip_header(message))
    text = _SPACE_RE.sub(" ", text).strip()[:TEMPLATE_MAX]
    if key is not None:
        if len(_CACHE) > 50000:
            _CACHE.clear()
        _CACHE[key] = text
    return text


_SIG_CACHE: dict = {}


def signature_id(family: str, rule_id: str | None, tmpl: str, masks: Masks | None = None) -> str:
    masks = masks or load_masks()
    key = (family, rule_id, tmpl, masks.version)
    got = _SIG_CACHE.get(key)
    if got is None:
        h = hashlib.blake2b(f"{family}\x1f{rule_id or ''}\x1f{tmpl}".encode("utf-8", "replace"),
                            digest_size=6).hexdigest()
        got = f"sig{masks.version}:{h}"
        if len(_SIG_CACHE) > 50000:
            _SIG_CACHE.clear()
        _SIG_CACHE[key] = got
    return got
