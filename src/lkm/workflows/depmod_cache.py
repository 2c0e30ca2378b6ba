"""depmod's per-module cache: re-read only the modules that changed.

Each module's facts are stored with the file's identity: device, inode,
size, modification and change time (nanoseconds). The change time cannot
be set from user space, so a rewritten file — even one restored with its
old mtime — is always read again. A module whose identity differs from
the stored one is re-read; the rest come from the cache.

The cache lives under ``$XDG_CACHE_HOME/lkm/depmod`` (``--cache-dir``), one
file per module directory, written through a temporary file and a rename.
It starts with a header naming the format, lkm's version and the module
directory, and a SHA-256 of the payload: a foreign, stale or damaged file
is detected before anything in it is used, and ignored. The payload is
:mod:`marshal` data (fast to load; only ever loaded after the checksum
matched what this code wrote).
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Callable, Sequence

from lkm import __version__
from lkm.system.atomic import replace_file
from lkm.workflows.depmod_discover import FoundModule
from lkm.workflows.depmod_scan import ModuleFacts, ScanFailure, scan

Report = Callable[[str, str], None]
MAGIC = b"lkm-depmod-cache\n"
FORMAT = 1

Identity = tuple[int, int, int, int, int]
Entry = tuple[Identity, tuple[object, ...]]


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lkm", "depmod")


def cache_path(cache_dir: str, moddir: str) -> str:
    digest = hashlib.sha256(os.path.abspath(moddir).encode()).hexdigest()[:24]
    return os.path.join(cache_dir, f"{digest}.cache")


def identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _header(moddir: str) -> bytes:
    return MAGIC + f"{FORMAT} {__version__} {os.path.abspath(moddir)}\n".encode(
        "utf-8", "surrogateescape"
    )


def _load_payload(path: str, moddir: str) -> object:
    """What :func:`_save_payload` stored for ``moddir``, or None if anything
    about the file is wrong (missing, foreign, stale format, damaged)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    header = _header(moddir)
    if not data.startswith(header) or len(data) < len(header) + 32:
        return None
    digest = data[len(header) : len(header) + 32]
    payload = data[len(header) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        return None
    try:
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None


def _save_payload(path: str, moddir: str, value: object) -> None:
    payload = marshal.dumps(value)  # type: ignore[arg-type]
    data = _header(moddir) + hashlib.sha256(payload).digest() + payload
    os.makedirs(os.path.dirname(path), exist_ok=True)
    replace_file(path, data, f"{path}.{os.getpid()}.tmp")


def load(path: str, moddir: str) -> dict[str, Entry]:
    """Entries of a cache file that this lkm wrote for ``moddir``, else {}."""
    entries = _load_payload(path, moddir)
    return entries if isinstance(entries, dict) else {}


def save(path: str, moddir: str, entries: dict[str, Entry]) -> None:
    _save_payload(path, moddir, entries)


# -- rendered outputs --------------------------------------------------------
#
# Rendering the binary indexes is most of an incremental run. When every
# input of rendering is what it was last time — same modules, same facts,
# same built-in lists, same options — the files are the ones written last
# time: keep them (and the messages rendering printed) keyed by a digest
# of those inputs.

Messages = list[tuple[str, str]]


def outputs_key(parts: object) -> bytes:
    """Digest of everything rendering reads (marshal-able data)."""
    return hashlib.sha256(marshal.dumps(parts)).digest()  # type: ignore[arg-type]


def load_outputs(
    cache_dir: str | None, moddir: str, key: bytes
) -> tuple[dict[str, bytes | None], Messages] | None:
    value = _load_payload(cache_path(cache_dir or default_cache_dir(), moddir) + ".out", moddir)
    if not isinstance(value, tuple) or len(value) != 3 or value[0] != key:
        return None
    _, files, messages = value
    if not isinstance(files, dict) or not isinstance(messages, list):
        return None
    if not all(
        isinstance(k, str) and (v is None or isinstance(v, bytes)) for k, v in files.items()
    ):
        return None
    if not all(
        isinstance(m, tuple) and len(m) == 2 and all(isinstance(x, str) for x in m)
        for m in messages
    ):
        return None
    return files, messages


def save_outputs(
    cache_dir: str | None,
    moddir: str,
    key: bytes,
    files: dict[str, bytes | None],
    messages: Messages,
    report: Report,
) -> None:
    location = cache_path(cache_dir or default_cache_dir(), moddir) + ".out"
    try:
        _save_payload(location, moddir, (key, files, messages))
    except OSError as exc:
        report("INFO", f"could not write the lkm cache {location}: {exc.strerror}")


def _facts_from_entry(value: tuple[object, ...]) -> ModuleFacts | None:
    """Rebuild facts, checking every field's shape: a cache is never trusted."""
    try:
        modinfo, exports, needed = value
        facts = ModuleFacts(
            tuple((str(k), str(v)) for k, v in modinfo),  # type: ignore[attr-defined]
            tuple((str(n), int(c)) for n, c in exports),  # type: ignore[attr-defined]
            tuple((str(n), int(c), bool(w)) for n, c, w in needed),  # type: ignore[attr-defined]
        )
    except (TypeError, ValueError):
        return None
    return facts


def _entry_value(facts: ModuleFacts) -> tuple[object, ...]:
    return (facts.modinfo, facts.exports, facts.needed)


def scan_with_cache(
    modules: Sequence[FoundModule],
    use_cache: bool,
    cache_dir: str | None,
    report: Report,
    moddir: str | None = None,
) -> list[ModuleFacts | ScanFailure]:
    """Facts for every module, re-reading only what changed since last time."""
    paths = [m.path for m in modules]
    if not use_cache or not modules:
        return scan(paths)
    directory = moddir or os.path.dirname(paths[0])
    location = cache_path(cache_dir or default_cache_dir(), directory)
    cached = load(location, directory)
    results: list[ModuleFacts | ScanFailure | None] = []
    identities: list[Identity | None] = []
    stale: list[int] = []
    for index, path in enumerate(paths):
        ident = identity(path)
        identities.append(ident)
        entry = cached.get(path)
        facts = None
        if entry is not None and ident is not None and tuple(entry[0]) == ident:
            facts = _facts_from_entry(entry[1])
        results.append(facts)
        if facts is None:
            stale.append(index)
    report("DEBUG", f"lkm cache: read {len(stale)} of {len(paths)} modules")
    if stale:
        for index, fresh in zip(stale, scan([paths[i] for i in stale]), strict=True):
            results[index] = fresh
    final: list[ModuleFacts | ScanFailure] = [r for r in results if r is not None]
    if stale or len(cached) != len(paths):
        entries: dict[str, Entry] = {}
        for path, ident, result in zip(paths, identities, final, strict=True):
            if ident is not None and isinstance(result, ModuleFacts):
                entries[path] = (ident, _entry_value(result))
        try:
            save(location, directory, entries)
        except OSError as exc:
            report("INFO", f"could not write the lkm cache {location}: {exc.strerror}")
    return final
