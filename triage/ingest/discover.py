"""Inputs: from the paths a user typed to a sorted list of things to read.

Accepted: files, directories (recursive), globs, `.gz` files and `-` for stdin. Inside a
directory every file is taken except known binary artefacts (checkpoints, images, core files);
flight-recorder dumps and probe records are listed with their own kind (the scan does not read
them as text; hang analysis and `triage diverge` do), and other JSON/JSONL files are passed over
(run metadata, structured records). A file named on the command line is always read as text,
whatever its name.

Layouts recognised for rank attribution (`rank_hint`):
    rank_3.log  rank3.out  rank-3.err  worker-3.log  *_3.txt     per-rank files
    attempt_0/3/stdout.log  attempt_0/3/stderr.log  .../3/error.json   torchrun --log-dir
Slurm outputs (`slurm-1234.out`, `slurm-1234_5.out`) carry job ids, not ranks: no hint.

Never raises for a damaged tree: a missing path is an `InputError` (the user typed it); an
unreadable file, a symlink loop or a vanished file is a warning naming the path. Output order is
deterministic: the user's order, then a natural sort (rank_2 before rank_10) inside directories.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from typing import Iterator, NamedTuple

from triage.errors import InputError
from triage.parse.blind import MASK

KIND_LOG = "log"
KIND_GZ = "gz"
KIND_STDIN = "stdin"
KIND_ERROR_JSON = "error_json"
KIND_FR_DUMP = "fr_dump"
KIND_PROBE = "probe"

TEXT_KINDS = (KIND_LOG, KIND_GZ, KIND_STDIN, KIND_ERROR_JSON)

_SKIP_SUFFIXES = {
    ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".npy", ".npz", ".png", ".jpg", ".jpeg",
    ".gif", ".pdf", ".so", ".o", ".a", ".pyc", ".whl", ".zip", ".tar", ".db", ".sqlite",
    ".db-wal", ".db-shm", ".html", ".svg", ".parquet", ".arrow",
}
_RANK_NAME_RES = (
    re.compile(r"(?:^|[^a-z])rank[_\-.]?(\d{1,7})(?!\d)", re.I),
    re.compile(r"^(?!slurm)[A-Za-z][\w]*?[-_](\d{1,7})\.(?:log|out|err|txt)(?:\.gz)?$"),
)
_TORCHRUN_RE = re.compile(r"(?:^|/)(?:attempt_(\d+)/)?(\d{1,7})/(?:stdout|stderr)\.log(?:\.gz)?$")
_ERRFILE_RE = re.compile(r"(?:^|/)(?:attempt_(\d+)/)?(\d{1,7})/[^/]*error[^/]*\.json$")
_NATURAL_RE = re.compile(r"(\d+)")


class InputSpec(NamedTuple):  # a tuple: 100,000 are built before a scan starts, and sent to workers
    index: int
    path: str  # as shown to the user (relative where it was given relative)
    real: str | None  # filesystem path; None for stdin
    kind: str
    size: int
    rank_hint: int | None = None
    attempt: int | None = None
    mtime: float | None = None


def _pad_number(m: re.Match) -> str:
    return "\x00" + m.group().zfill(20)


def natural_key(s: str) -> str:
    """rank_2 before rank_10. Numbers become NUL + 20 digits, so plain string comparison orders
    them by value and orders the text around them as the text itself (NUL sorts below every
    character a path can hold): the order of comparing (text, number, text, ...) tuples, at a
    third of the cost (100,000 files are sorted before the scan starts)."""
    return _NATURAL_RE.sub(_pad_number, s)


def rank_hint(path: str) -> tuple[int | None, int | None]:
    """(rank, attempt) that a file's place in a layout implies, else (None, None)."""
    p = path.replace(os.sep, "/")
    m = None
    if "std" in p or "error" in p:  # torchrun's stdout/stderr.log or an error file
        m = _TORCHRUN_RE.search(p) or _ERRFILE_RE.search(p)
    if m:
        return int(m.group(2)), (int(m.group(1)) if m.group(1) else None)
    name = p.rsplit("/", 1)[-1]
    # Names that differ only in their digits match the same way (the patterns treat every digit
    # alike), so the span of the rank is cached by the name's shape: 100,000 rank_N.log files
    # cost one regex search per shape.
    shape = name.encode("utf-8", "surrogatepass").translate(MASK)
    span = _SHAPES.get(shape, False)
    if span is False:
        span = None
        for rx in _RANK_NAME_RES:
            m = rx.search(name)
            if m:
                span = m.span(1)
                break
        if len(_SHAPES) > 4096:
            _SHAPES.clear()
        _SHAPES[shape] = span
    if span is None:
        return None, None
    return int(name[span[0]:span[1]]), None


_SHAPES: dict = {}


_SNIFF = "sniff"  # a .jsonl file outside a probe folder: probe records or not, its start says
_PROBE_MARK = re.compile(rb'"schema"\s*:\s*"triage\.probe/1"')


def _holds_probe_records(path: str) -> bool:
    """Whether the start of a .jsonl file (64 KB) holds a probe record (triage.probe/1)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return _PROBE_MARK.search(head) is not None


def _kind_of(path: str, explicit: bool) -> str | None:
    name = path[path.rfind(os.sep) + 1:].lower()
    if name.endswith(".log") and "trace" not in name and not name.startswith("core."):
        return KIND_LOG  # the common case, decided early (what follows cannot apply to it)
    if name.endswith(".gz"):
        return KIND_GZ
    if name.endswith(".json") and "error" in name:
        return KIND_ERROR_JSON
    if name.endswith(".jsonl"):  # probe records: in a probe folder, or known by their records
        folder = os.path.basename(os.path.dirname(path)).lower()
        return KIND_PROBE if "probe" in folder else _SNIFF
    if explicit:
        return KIND_LOG
    suffix = os.path.splitext(name)[1]
    if suffix in (".pkl", ".pickle") or "fr_trace" in name or "nccl_trace" in name:
        return KIND_FR_DUMP
    if suffix in (".json", ".jsonl"):
        return None  # metadata and structured records, not console text (name them to scan them)
    if suffix in _SKIP_SUFFIXES or name.startswith("core.") or name == "core":
        return None
    if name == "triage-run.yaml":
        return None
    return KIND_LOG


def discover(paths: list[str]) -> tuple[list[InputSpec], list[str]]:
    """Expand `paths` into input specs. Returns (specs, warnings)."""
    warnings: list[str] = []
    specs = list(specs_from(expand(paths), warnings))
    return specs, warnings


# What `expand` lists, in the order the inputs will have: a file (path, named on the command line?),
# stdin, or a warning about a directory, in its place among the files.
FILE, STDIN, WARN = "file", "stdin", "warn"


def expand(paths: list[str]) -> list[tuple]:
    """List what `paths` name, in order, without looking at the files themselves (no stat of a
    file yet): directories walked and naturally sorted, globs expanded. Raises InputError for a
    path that does not exist or a glob that matches nothing; everything else is a WARN item.
    Cheap next to `specs_from`, so a scan can start its workers on the first files while the
    rest are still being looked at."""
    items: list[tuple] = []
    stdin_used = False

    def walk(root: str) -> None:
        visited: set[tuple[int, int]] = set()
        stack = [root]
        files: list[str] = []
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d)
            except OSError as exc:
                items.append((WARN, f"{d}: cannot read ({exc.strerror or exc}); skipped"))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in visited:
                items.append((WARN, f"{d}: directory symlink loop; not followed again"))
                continue
            visited.add(ident)
            try:
                entries = list(os.scandir(d))
            except OSError as exc:
                items.append((WARN, f"{d}: cannot list ({exc.strerror or exc}); skipped"))
                continue
            subdirs = []
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=True):
                        subdirs.append(e.path)
                    else:
                        files.append(e.path)
                except OSError:
                    files.append(e.path)
            stack.extend(sorted(subdirs, key=natural_key, reverse=True))
        # Every path starts with `root` + separator: the natural order of the rest is the
        # natural order of the whole (no number spans the separator), at a fraction of the cost.
        cut = len(root)
        items.extend((FILE, f, False) for f in sorted(files, key=lambda f: natural_key(f[cut:])))

    for raw in paths:
        if raw == "-":
            if not stdin_used:
                stdin_used = True
                items.append((STDIN,))
            continue
        if os.path.isdir(raw):
            walk(raw)
        elif os.path.lexists(raw):
            items.append((FILE, raw, True))
        elif any(ch in raw for ch in "*?["):
            matches = sorted(glob.glob(raw, recursive=True), key=natural_key)
            if not matches:
                raise InputError("no file matches this pattern", where=raw,
                                 hint="check the glob, or quote it so the shell does not expand it")
            for m in matches:
                walk(m) if os.path.isdir(m) else items.append((FILE, m, True))
        else:
            raise InputError("no such file or directory", where=raw,
                             hint="pass log files, directories, globs, .gz files or - for stdin")
    return items


def specs_from(items: list[tuple], warnings: list[str], *, first: int | None = None,
               seen: set[int] | None = None, idents: list[int] | None = None) -> Iterator[InputSpec]:
    """The input specs of `expand`'s items, in order, numbered from 0: each file looked at
    (stat, kind, rank hint) as it is reached. Problems are appended to `warnings` in order.

    For a slice of the items looked at elsewhere (a scan's worker): `first` numbers each spec by
    its item's position instead (first + position: the same order, with gaps), `seen` is the
    set of files already taken (updated), and `idents` receives each spec's file identity."""
    seen_files: set[int] = set() if seen is None else seen  # (device, inode) as one int
    index = 0
    for pos, item in enumerate(items):
        if first is not None:
            index = first + pos
        if item[0] == WARN:
            warnings.append(item[1])
            continue
        if item[0] == STDIN:
            yield InputSpec(index, "<stdin>", None, KIND_STDIN, 0)
            index += 1
            continue
        _, path, explicit = item
        try:
            st = os.stat(path)
        except OSError as exc:
            warnings.append(f"{path}: cannot read ({exc.strerror or exc}); skipped")
            continue
        if not stat.S_ISREG(st.st_mode):
            if explicit:
                warnings.append(f"{path}: not a regular file; skipped")
            continue
        ident = (st.st_dev << 64) | st.st_ino
        if ident in seen_files:
            continue
        kind = _kind_of(path, explicit)
        if kind is _SNIFF:
            kind = KIND_PROBE if _holds_probe_records(path) else (KIND_LOG if explicit else None)
        if kind is None:
            continue
        # Readable by everyone needs no access() call (100,000 files: a tenth of a second).
        if st.st_mode & 0o444 != 0o444 and not os.access(path, os.R_OK):
            warnings.append(f"{path}: permission denied; skipped")
            continue
        seen_files.add(ident)
        if idents is not None:
            idents.append(ident)
        rank, attempt = rank_hint(path)
        yield InputSpec(index, path, path, kind, st.st_size, rank, attempt, st.st_mtime)
        index += 1
