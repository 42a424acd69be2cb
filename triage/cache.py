"""Rebuildable caches in the user's cache directory (compiled rules, validated rules files).

Everything here can be thrown away: a missing, damaged or foreign entry costs a rebuild, never a
wrong answer or an error. Each entry is named by a hash of everything that shapes it and carries
the SHA-256 of its own body, so a truncated or edited file is ignored. Nothing here is ever
unpickled: entries are JSON or Hyperscan's own serialised databases.

Where: `$TRIAGE_CACHE_DIR`, else `$XDG_CACHE_HOME/triage`, else `~/.cache/triage`.
`TRIAGE_CACHE_DIR=` (empty) turns caching off.
"""

from __future__ import annotations

import hashlib
import os
import threading

_MAGIC = b"triage-cache/1\n"
MAX_ENTRY = 64 << 20
KEEP = 256  # entries kept; the oldest go first


def cache_dir() -> str | None:
    """Where triage keeps rebuildable caches, or None when caching is off."""
    env = os.environ.get("TRIAGE_CACHE_DIR")
    if env is not None:
        return env or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "triage")


def entry_name(kind: str, *parts: bytes) -> str:
    """A file name for an entry of `kind` shaped by `parts` (any bytes; order matters)."""
    from triage import __version__

    h = hashlib.sha256(_MAGIC + kind.encode() + b"\0" + __version__.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return f"{kind}-{h.hexdigest()[:32]}.bin"


def read(name: str) -> bytes | None:
    """The body of entry `name`, or None (no cache, missing, damaged)."""
    root = cache_dir()
    if root is None:
        return None
    try:
        with open(os.path.join(root, name), "rb") as fh:
            blob = fh.read(MAX_ENTRY + 1)
    except OSError:
        return None
    if len(blob) > MAX_ENTRY or not blob.startswith(_MAGIC):
        return None
    digest, body = blob[len(_MAGIC):len(_MAGIC) + 32], blob[len(_MAGIC) + 32:]
    if hashlib.sha256(body).digest() != digest:
        return None
    return body


def write(name: str, body: bytes) -> None:
    """Store entry `name` whole or not at all (a read-only home or a full disk: no cache)."""
    root = cache_dir()
    if root is None or len(body) > MAX_ENTRY:
        return
    path = os.path.join(root, name)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(root, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC + hashlib.sha256(body).digest() + body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    _prune(root)


def _prune(root: str) -> None:
    """Keep the newest KEEP entries: every edit of a rules file makes new ones."""
    try:
        entries = [e for e in os.scandir(root) if e.name.endswith(".bin") and e.is_file()]
        if len(entries) <= KEEP:
            return
        entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for e in entries[KEEP:]:
            os.unlink(e.path)
    except OSError:
        pass
