"""depmod's cache: re-read only the modules that changed, re-render only
the outputs whose inputs changed.

Four files per module directory, under ``depmod/`` in lkm's cache directory
(``--cache-dir``), each written through a temporary file and a rename:

- the *index* (:func:`cache_path`): for every module path, the file's
  identity — device, inode, size, modification and change time
  (nanoseconds) — and where its facts lie in the store. The change time
  cannot be set from user space, so a rewritten file, even one restored
  with its old mtime, is always read again.
- the *store* (``.facts``): each module's facts, one :mod:`marshal` blob
  after another, tagged with a random token the index names; the index
  holds each blob's offset, length and CRC, so one module's facts can be
  read alone and a damaged or foreign blob is never decoded.
- the *outputs* (``.out``): a table — the *basis* of the last rendering
  (store token, module list, built-in lists' identities, options) and, for
  every group of files (see :data:`lkm.workflows.depmod.render.GROUPS`), the
  SHA-256 of exactly the data it was made from, its messages and where its
  files lie — then the files' contents, written out from the one copy
  read.
- the *state* (``.state``, :mod:`lkm.workflows.depmod.state`): what the
  last run that wrote the files read and wrote, so that a run finding
  all of it unchanged writes nothing.

A run stats every module. When every module's facts are the stored ones
(same identity, or read again and equal) and the basis is unchanged, the
outputs are the stored ones: nothing is resolved or rendered, and no
module other than the changed ones is decoded. Otherwise the changed
modules' facts are merged with the stored ones, dependencies resolved,
and each group rendered again only when the digest of its inputs differs.

Every file starts with a header naming the format, its kind, lkm's
version and the module directory, then the payload's length and CRC-32:
a foreign, stale, truncated or damaged file is detected before anything
in it is used, and ignored (marshal data is only ever decoded after its
CRC matched what this code wrote).
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter

from lkm import __version__
from lkm.system import paths
from lkm.system.atomic import replace_file
from lkm.workflows.depmod.facts import ModuleFacts, ScanFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    # Imported where used: a run that finds its files current (see
    # lkm.workflows.depmod.state) loads neither the search nor the renderers.
    from lkm.workflows.depmod.discover import FoundModule
    from lkm.workflows.depmod.render import FileData, Messages, RenderedGroup, Rendering
    from lkm.workflows.depmod.state import TreeState

Report = Callable[[str, str], None]
MAGIC = b"lkm-depmod-cache\n"
FORMAT = 6
_FRAME = struct.Struct(">QI")  # payload length, CRC-32
TOKEN_SIZE = 16

Identity = tuple[int, int, int, int, int]
# Where a module's facts lie in the store: offset, length, CRC-32.
BlobRef = tuple[int, int, int]
# Index entry: the identity the facts were read with, then their blob
# (one flat tuple: quick to check, see _valid_index).
IndexEntry = tuple[int, int, int, int, int, int, int, int]
_ENTRY_SIZE = 8
_BLOB_AT = 5  # entry[:5] is the identity, entry[5:] the blob
# What the last rendering was made from: store token, (name, path,
# relpath) of each module in order, built-in lists' identities, options.
Basis = tuple[bytes, list[tuple[str, str, str | None]], list[Identity | None], tuple[object, ...]]
Result = ModuleFacts | ScanFailure


SYSTEM_CACHE_DIR = "/var/cache/lkm/depmod"  # root's, for the system's own trees
MAX_CACHE_BYTES = 256 << 20  # all trees' files in one cache directory, at most
STALE_TEMPORARY = 3600  # seconds: a temporary file this old is a killed run's


def default_cache_dir(basedir: str = "") -> str | None:
    """Where depmod caches without ``--cache-dir`` (None: nowhere).

    ``LKM_CACHE`` set: its ``depmod/`` (the caller chose lkm's cache).
    Root indexing another root (``-b DIR``, DIR not /): nowhere — an image
    build or a package script for a chroot writes nothing outside the
    image, and into nobody's home; it runs depmod once anyway. Root on the
    system's own tree: :data:`SYSTEM_CACHE_DIR`, as package scripts run
    it. Anyone else: ``depmod/`` in their own cache directory
    (:func:`lkm.system.paths.cache_dir`)."""
    if os.environ.get("LKM_CACHE"):
        return paths.cache_path(paths.DEPMOD)
    if os.geteuid() != 0:
        return paths.cache_path(paths.DEPMOD)
    if basedir.rstrip("/"):
        return None
    return SYSTEM_CACHE_DIR


def cache_path(cache_dir: str, moddir: str) -> str:
    """The index file for ``moddir`` (the store and outputs sit next to it).

    The name only spreads directories over files; the header inside says
    which directory a file is for. CRC-32 and Adler-32 rather than a
    cryptographic hash keep hashlib (and OpenSSL) out of a run that
    changes nothing.
    """
    raw = os.path.abspath(moddir).encode("utf-8", "surrogateescape")
    return os.path.join(cache_dir, f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}.cache")


def canonical(path: str) -> str:
    """``path`` with its leading slashes as one: ``depmod -b /`` (whose
    paths start with ``//``, as kmod's do) indexes the same tree, with
    the same cache, as ``depmod``."""
    return "/" + path.lstrip("/") if path.startswith("//") else path


def identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_identity(st)


def stat_identity(st: os.stat_result) -> Identity:
    """A file's identity: device, inode, size, modification and change times."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _header(kind: str, moddir: str) -> bytes:
    return MAGIC + f"{FORMAT} {kind} {__version__} {os.path.abspath(moddir)}\n".encode(
        "utf-8", "surrogateescape"
    )


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def load_framed(path: str, kind: str, moddir: str) -> object:
    """The value :func:`save_framed` stored, or None when anything about
    the file is wrong (missing, foreign, stale format, truncated, damaged)."""
    data = _read(path)
    header = _header(kind, moddir)
    start = len(header) + _FRAME.size
    if data is None or not data.startswith(header) or len(data) < start:
        return None
    length, crc = _FRAME.unpack_from(data, len(header))
    payload = data[start:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None


def save_framed(path: str, kind: str, moddir: str, value: object) -> None:
    payload = marshal.dumps(value)  # type: ignore[arg-type]
    _write(path, _header(kind, moddir) + _FRAME.pack(len(payload), zlib.crc32(payload)) + payload)


def _write(path: str, data: bytes) -> None:
    if not paths.make_cache_dir(os.path.dirname(path)):
        # Reported as the other cache-write failures: depmod goes on uncached.
        raise OSError(errno.EACCES, "no cache directory to make here (set LKM_CACHE)")
    replace_file(path, data, f".{os.getpid()}.tmp")


def _valid_index(value: object) -> tuple[bytes, dict[str, IndexEntry], bool] | None:
    """The index's (store token, entries, whether the store may hold lean
    facts) after checking every field's shape — a cache is never trusted
    — with C-level passes over the entries (thousands of them, on every
    run)."""
    if not isinstance(value, tuple) or len(value) != 3:
        return None
    token, entries, lean = value
    if not isinstance(token, bytes) or len(token) != TOKEN_SIZE or not isinstance(entries, dict):
        return None
    if not isinstance(lean, bool):
        return None
    rows = entries.values()
    if not (
        set(map(type, entries)) <= {str}
        and set(map(type, rows)) <= {tuple}
        and set(map(len, rows)) <= {_ENTRY_SIZE}
        and set(map(type, chain.from_iterable(rows))) <= {int}
        and min(map(itemgetter(_BLOB_AT), rows), default=0) >= 0
        and min(map(itemgetter(_BLOB_AT + 1), rows), default=0) >= 0
    ):
        return None
    return token, entries, lean


def _facts_from_blob(blob: bytes) -> ModuleFacts | None:
    """Decode a stored module's facts, checking every field's type (in C:
    thousands of modules, hundreds of thousands of values)."""
    try:
        value = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        return None
    if not (isinstance(value, tuple) and len(value) == 5):
        return None
    modinfo, exports, names, crcs, weak = value
    if not all(isinstance(column, tuple) for column in value[1:]):
        return None
    if not (
        isinstance(modinfo, str)
        and set(map(type, exports)) <= {tuple}
        and set(map(len, exports)) <= {2}
        and set(map(type, map(itemgetter(0), exports))) <= {str}
        and set(map(type, map(itemgetter(1), exports))) <= {int}
        and set(map(type, names)) <= {str}
        and set(map(type, crcs)) <= {int}
        and set(map(type, weak)) <= {bool}
        and (len(names) == len(crcs) == len(weak) or len(crcs) == len(weak) == 0)
    ):
        return None
    return ModuleFacts(modinfo, exports, names, crcs, weak)


def _lean(facts: ModuleFacts) -> ModuleFacts:
    """``facts`` as a scan for dependencies only reads them (see
    :func:`~lkm.workflows.depmod.scan.read_facts`): exports without CRCs,
    each needed name once, no CRCs or weak flags."""
    exports = tuple((name, 0) for name, _ in facts.exports)
    names = tuple(dict.fromkeys(facts.needed_names))
    return ModuleFacts(facts.modinfo, exports, names, (), ())


def _blob(facts: ModuleFacts) -> bytes:
    return marshal.dumps(facts.fields())  # type: ignore[arg-type]


class FactsStore:
    """The store file: read whole (``load``) or one blob at a time."""

    def __init__(self, path: str, moddir: str, token: bytes) -> None:
        self.path = path
        self.token = token  # empty: no index, so no store to trust
        self.prefix = _header("facts", moddir) + token
        self.data: bytes | None = None

    def load(self) -> None:
        data = _read(self.path)
        valid = self.token and data is not None and data.startswith(self.prefix)
        self.data = data if valid and data is not None else b""

    def blob(self, ref: BlobRef) -> bytes | None:
        """One module's blob, None when it is not there intact."""
        offset, length, crc = ref
        start = len(self.prefix) + offset
        raw: bytes | None
        if self.data is not None:
            raw = self.data[start : start + length]
        else:
            raw = self._read_range(start, length)
        if raw is None or len(raw) != length or zlib.crc32(raw) != crc:
            return None
        return raw

    def _read_range(self, start: int, length: int) -> bytes | None:
        if not self.token:
            return None
        try:
            with open(self.path, "rb") as f:
                if f.read(len(self.prefix)) != self.prefix:
                    return None
                f.seek(start)
                return f.read(length)
        except OSError:
            return None


class CachedScan:
    """Every module's facts for one run: stored ones where the file is
    unchanged, read again where it is not."""

    def __init__(self, cache: DepmodCache, modules: Sequence[FoundModule]) -> None:
        self.cache = cache
        self.modules = modules
        self.identities = [identity(m.path) for m in modules]
        self.refs: list[BlobRef | None] = []  # the module's stored blob, if still its facts
        self.fresh: dict[int, Result] = {}
        stale: list[int] = []
        for index, (module, ident) in enumerate(zip(modules, self.identities, strict=True)):
            entry = cache.entries.get(canonical(module.path))
            if entry is not None and ident is not None and entry[:5] == ident:
                self.refs.append(entry[5:])
            else:
                self.refs.append(None)
                stale.append(index)
        self.stale_count = len(stale)
        if stale:
            results = _read_modules([modules[i].path for i in stale])
            self.fresh = dict(zip(stale, results, strict=True))
        self.unchanged = all(self._same_as_stored(index) for index in stale)

    def _same_as_stored(self, index: int) -> bool:
        """A module read again still has its stored facts (it was only
        touched): keep pointing at the stored blob."""
        entry = self.cache.entries.get(canonical(self.modules[index].path))
        fresh = self.fresh[index]
        if entry is None or not isinstance(fresh, ModuleFacts):
            return False
        blob = self.cache.store.blob(entry[5:])
        stored = None if blob is None else _facts_from_blob(blob)
        if stored is None or (stored != fresh and not (self.cache.lean and stored == _lean(fresh))):
            return False
        del self.fresh[index]
        self.refs[index] = entry[5:]
        return True

    def results(self) -> list[Result]:
        """Facts (or failures) of every module, in order: decodes the
        stored ones (a damaged blob means reading that module again)."""
        if any(ref is not None for ref in self.refs):
            self.cache.store.load()
        results: list[Result | None] = []
        for index, ref in enumerate(self.refs):
            facts = None
            if ref is not None:
                blob = self.cache.store.blob(ref)
                facts = None if blob is None else _facts_from_blob(blob)
                if facts is None:
                    self.refs[index] = None
            results.append(facts if facts is not None else self.fresh.get(index))
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            unusable = f"{len(missing)} stored facts unusable"
            self.cache.report("DEBUG", f"lkm cache: {unusable}, read again")
            for index, result in zip(
                missing, _read_modules([self.modules[i].path for i in missing]), strict=True
            ):
                self.fresh[index] = results[index] = result
            self.stale_count += len(missing)
        return [r for r in results if r is not None]


class DepmodCache:
    """The cache of one module directory, for one run."""

    def __init__(
        self,
        cache_dir: str,
        moddir: str,
        report: Report,
        max_bytes: int = MAX_CACHE_BYTES,
        full_facts: bool = False,
    ) -> None:
        self.moddir = canonical(moddir)
        self.report = report
        self.cache_dir = cache_dir
        self.max_bytes = max_bytes
        self.index_path = cache_path(cache_dir, self.moddir)
        self.wrote = False  # whether this run wrote a file (then prune)
        index = _valid_index(load_framed(self.index_path, "index", self.moddir))
        self.token, self.entries, self.lean = index if index is not None else (b"", {}, False)
        if self.lean and full_facts:
            # Stored for dependencies only: this run checks CRCs (-e, -v, -P).
            self.token, self.entries, self.lean = b"", {}, False
        self.store = FactsStore(f"{self.index_path}.facts", self.moddir, self.token)

    # -- modules --------------------------------------------------------------

    def scan(self, modules: Sequence[FoundModule]) -> CachedScan:
        scanned = CachedScan(self, modules)
        self.report("DEBUG", f"lkm cache: read {scanned.stale_count} of {len(modules)} modules")
        return scanned

    def save_index(self, scanned: CachedScan) -> None:
        """Record identities (and a new store when facts changed)."""
        entries: dict[str, IndexEntry] = {}
        if scanned.fresh or any(ref is None for ref in scanned.refs):
            self._save_store(scanned)
        for module, ident, ref in zip(
            scanned.modules, scanned.identities, scanned.refs, strict=True
        ):
            if ident is not None and ref is not None:
                entries[canonical(module.path)] = (*ident, *ref)
        if entries == self.entries:
            return
        self._save_index(entries)

    def _save_index(self, entries: dict[str, IndexEntry]) -> None:
        value = (self.token, entries, self.lean)
        self._try(lambda: save_framed(self.index_path, "index", self.moddir, value))
        self.entries = entries

    def _save_store(self, scanned: CachedScan) -> None:
        """Every readable module's blob (stored ones copied as they are)
        under a new token; updates ``scanned.refs`` to point into it."""
        if self.store.data is None:
            self.store.load()
        token = os.urandom(TOKEN_SIZE)
        parts: list[bytes] = []
        offset = 0
        copied = False  # a stored blob kept: the store may stay lean
        for index, ref in enumerate(scanned.refs):
            blob = self.store.blob(ref) if ref is not None else None
            copied = copied or blob is not None
            if blob is None:
                fresh = scanned.fresh.get(index)
                blob = _blob(fresh) if isinstance(fresh, ModuleFacts) else None
            if blob is None:
                scanned.refs[index] = None
                continue
            scanned.refs[index] = (offset, len(blob), zlib.crc32(blob))
            parts.append(blob)
            offset += len(blob)
        if not self._write_store(token, parts):
            scanned.refs = [None] * len(scanned.refs)
        elif not copied:
            self.lean = False

    def _write_store(self, token: bytes, blobs: list[bytes]) -> bool:
        data = _header("facts", self.moddir) + token + b"".join(blobs)
        if not self._try(lambda: _write(self.store.path, data)):
            return False
        self.token = token
        self.store = FactsStore(self.store.path, self.moddir, token)
        self.store.data = data
        return True

    def knows_any(self, modules: Sequence[FoundModule]) -> bool:
        """Whether any module's stored facts are still its own (else the
        run is a first one: :meth:`save_first_run`)."""
        entries = self.entries
        for module in modules:
            entry = entries.get(canonical(module.path))
            if entry is not None and entry[:5] == identity(module.path):
                return True
        return False

    def save_first_run(
        self,
        modules: Sequence[FoundModule],
        results: Sequence[Result],
        identities: Sequence[Identity | None],
        groups: dict[str, tuple[bytes, RenderedGroup]],
        options: tuple[object, ...],
    ) -> None:
        """Cache a run made without the cache (a tree seen the first time,
        on both cores as ``--no-cache`` runs): its facts, read for
        dependencies only (``lean``: a run that checks CRCs reads the
        modules again), each under its module's identity from before the
        run read it, and its groups (those with an empty digest are
        rendered again when the next change needs rendering)."""
        entries: dict[str, IndexEntry] = {}
        blobs: list[bytes] = []
        offset = 0
        for module, facts, ident in zip(modules, results, identities, strict=True):
            if ident is None or not isinstance(facts, ModuleFacts):
                continue
            blob = _blob(facts)
            entries[canonical(module.path)] = (*ident, offset, len(blob), zlib.crc32(blob))
            blobs.append(blob)
            offset += len(blob)
        if not self._write_store(os.urandom(TOKEN_SIZE), blobs):
            return
        self.lean = True
        self._save_index(entries)
        self._save_outputs(self.basis(modules, options), groups)

    def _try(self, write: Callable[[], None]) -> bool:
        try:
            write()
        except OSError as exc:
            self.report("INFO", f"could not write the lkm cache {self.index_path}: {exc.strerror}")
            return False
        self.wrote = True
        return True

    def finish(self) -> None:
        """At the end of a run: mark this tree's files used (least
        recently used trees go first), and after a run that wrote, keep
        the directory bounded (:func:`prune`)."""
        mark_used(self.cache_dir, self.moddir)
        if self.wrote:
            removed = prune(self.cache_dir, self.index_path, self.max_bytes)
            if removed:
                self.report("DEBUG", f"lkm cache: removed {', '.join(removed)}")

    def save_state(self, state: TreeState) -> None:
        """Store the tree's state after a run that wrote every file (see
        :mod:`lkm.workflows.depmod.state`)."""
        from lkm.workflows.depmod.state import state_path

        path = state_path(self.cache_dir, self.moddir)
        self._try(lambda: state.save(path, self.moddir))

    # -- outputs --------------------------------------------------------------

    @property
    def outputs_path(self) -> str:
        return f"{self.index_path}.out"

    def _stored_outputs(self) -> tuple[object, dict[str, tuple[bytes, RenderedGroup]]]:
        """Last run's basis and groups (checked one by one), or (None, {}).

        The files' contents are views of the one copy read from the cache
        file: several megabytes, written out without another copy.
        """
        data = _read(self.outputs_path)
        header = _header("outputs", self.moddir)
        start = len(header) + _FRAME.size
        if data is None or not data.startswith(header) or len(data) < start + _FRAME.size:
            return None, {}
        length, crc = _FRAME.unpack_from(data, len(header))
        payload = memoryview(data)[start:]
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None, {}
        (table_size, _) = _FRAME.unpack_from(payload)
        try:
            table = marshal.loads(payload[_FRAME.size : _FRAME.size + table_size])
        except (EOFError, ValueError, TypeError):
            return None, {}
        if not (isinstance(table, tuple) and len(table) == 2 and isinstance(table[1], dict)):
            return None, {}
        basis, stored = table
        contents = payload[_FRAME.size + table_size :]
        groups = {}
        for name, item in stored.items():
            group = _checked_group(item, contents)
            if isinstance(name, str) and group is not None:
                groups[name] = group
        return basis, groups

    def _save_outputs(self, basis: Basis, groups: dict[str, tuple[bytes, RenderedGroup]]) -> None:
        """A table (basis; per group its digest, where each file's contents
        lie, its messages) and then the contents, one after another."""
        table: dict[str, tuple[bytes, list[tuple[str, int, int]], Messages]] = {}
        contents: list[FileData] = []
        offset = 0
        for name, (digest, (files, messages)) in groups.items():
            places = []
            for filename, content in files.items():
                if content is None:
                    places.append((filename, -1, 0))
                else:
                    places.append((filename, offset, len(content)))
                    contents.append(content)
                    offset += len(content)
            table[name] = (digest, places, messages)
        encoded = marshal.dumps((basis, table))  # type: ignore[arg-type]
        payload = _FRAME.pack(len(encoded), 0) + encoded + b"".join(contents)
        framed = _FRAME.pack(len(payload), zlib.crc32(payload))
        data = _header("outputs", self.moddir) + framed + payload
        self._try(lambda: _write(self.outputs_path, data))

    def basis(self, modules: Sequence[FoundModule], options: tuple[object, ...]) -> Basis:
        """What a rendering with this store, these modules, built-in lists
        and options is made from. Compare only after :meth:`save_index`."""
        builtins = [identity(f"{self.moddir}/{name}") for name in _builtin_files()]
        listed = [(m.name, canonical(m.path), m.relpath) for m in modules]
        return (self.token, listed, builtins, options)

    def reuse_outputs(self, basis: Basis) -> dict[str, RenderedGroup] | None:
        """Last run's groups when they were rendered from exactly ``basis``."""
        from lkm.workflows.depmod.render import GROUPS

        stored_basis, groups = self._stored_outputs()
        if not self.token or stored_basis != basis or set(groups) != set(GROUPS):
            return None
        return {name: group for name, (_, group) in groups.items()}

    def render(self, rendering: Rendering, basis: Basis) -> dict[str, RenderedGroup]:
        """Every group: reused when the digest of its inputs is the stored
        one, rendered otherwise; all stored with ``basis``."""
        from lkm.workflows.depmod.render import GROUPS, render_groups

        _, stored = self._stored_outputs()
        digests = {name: input_digest(rendering, name) for name in GROUPS}
        groups = {
            name: stored[name][1]
            for name, digest in digests.items()
            if name in stored and stored[name][0] == digest
        }
        todo = [name for name in GROUPS if name not in groups]
        self.report("DEBUG", f"lkm cache: render {len(todo)} of {len(GROUPS)} output groups")
        groups.update(render_groups(rendering, todo))
        self._save_outputs(basis, {name: (digests[name], groups[name]) for name in GROUPS})
        return {name: groups[name] for name in GROUPS}


def mark_used(cache_dir: str, moddir: str) -> None:
    """Mark a tree's cache files used: the least recently used trees are
    pruned first (by their index's modification time)."""
    # No index (nothing cached) or not ours to touch: nothing to mark.
    with contextlib.suppress(OSError):
        os.utime(cache_path(cache_dir, moddir))


def input_digest(rendering: Rendering, group: str) -> bytes:
    """The digest of exactly the data ``group``'s files are made from."""
    import hashlib

    return hashlib.sha256(_encoded(rendering.inputs(group))).digest()


def _encoded(inputs: object) -> bytes:
    """A group's inputs as bytes equal values always give: marshal's
    version 0 (no references or interning flags, which depend on how a
    run happened to share its objects), several times faster than repr;
    repr for anything marshal cannot encode."""
    try:
        return marshal.dumps(inputs, 0)  # type: ignore[arg-type]
    except ValueError:
        return repr(inputs).encode("utf-8", "backslashreplace")


def prune(cache_dir: str, keep: str, max_bytes: int = MAX_CACHE_BYTES) -> list[str]:
    """Remove from ``cache_dir`` what no run will use again — the files of
    module directories that no longer exist, of other lkm versions and
    formats, store or outputs files without their index, temporary files
    of killed runs — then, while the rest is over ``max_bytes``, the least
    recently used trees' (by their index's modification time, which each
    run touches); never ``keep``'s. Returns the names removed; errors
    (another run removing the same file) are ignored."""
    try:
        entries = list(os.scandir(cache_dir))
    except OSError:
        return []
    now = time.time()
    trees: dict[str, list[os.DirEntry[str]]] = {}
    removed: list[str] = []
    for entry in entries:
        index_name, temporary = _cache_file_kind(entry.name)
        if not index_name:
            continue  # not ours: --cache-dir may name a shared directory
        if not temporary:
            trees.setdefault(index_name, []).append(entry)
        elif _age(entry, now) > STALE_TEMPORARY and _remove(entry.path):
            removed.append(entry.name)
    live: list[tuple[float, int, str, list[os.DirEntry[str]]]] = []
    for index_name, files in trees.items():
        index_path = os.path.join(cache_dir, index_name)
        index = [f for f in files if f.name == index_name]
        if index_path == keep or (index and _usable_index(index_path)):
            mtime = _mtime(index[0]) if index else now
            live.append((mtime, sum(_size(f) for f in files), index_path, files))
        else:
            removed += [f.name for f in files if _remove(f.path)]
    total = sum(size for _, size, _, _ in live)
    for _, size, index_path, files in sorted(live, key=itemgetter(0)):
        if total <= max_bytes:
            break
        if index_path != keep:
            removed += [f.name for f in files if _remove(f.path)]
            total -= size
    return removed


_HEX = frozenset("0123456789abcdef")
_SUFFIXES = ("", ".facts", ".out", ".state")


def _cache_file_kind(name: str) -> tuple[str, bool]:
    """(the index file's name, whether a temporary file) for a name
    :func:`cache_path` and the writes made; ("", False) for anything else."""
    stem, rest = name[:16], name[16:]
    if not (len(stem) == 16 and set(stem) <= _HEX and rest.startswith(".cache")):
        return "", False
    rest = rest[len(".cache") :]
    temporary = False
    if rest.endswith(".tmp"):  # replace_file's NAME.PID.tmp
        rest, _, pid = rest[: -len(".tmp")].rpartition(".")
        if not pid.isdigit():
            return "", False
        temporary = True
    if rest not in _SUFFIXES:
        return "", False
    return stem + ".cache", temporary


def _usable_index(path: str) -> bool:
    """Whether ``path`` is an index this lkm wrote for a module directory
    that still exists (its header, read alone)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4096)
    except OSError:
        return False
    if not head.startswith(MAGIC):
        return False
    line = head[len(MAGIC) :].split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
    fields = line.split(" ", 3)
    if len(fields) != 4 or fields[:3] != [str(FORMAT), "index", __version__]:
        return False
    return os.path.isdir(fields[3])


def _age(entry: os.DirEntry[str], now: float) -> float:
    return now - _mtime(entry)


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _read_modules(paths: list[str]) -> list[Result]:
    # Imported here: a run that changes nothing reads one module or none.
    from lkm.workflows.depmod.scan import scan

    return scan(paths)


def _builtin_files() -> tuple[str, ...]:
    from lkm.workflows.depmod.render import BUILTIN_INPUTS

    return tuple(BUILTIN_INPUTS.values())


def _checked_group(value: object, contents: memoryview) -> tuple[bytes, RenderedGroup] | None:
    """(digest, (files, messages)) when every part has the right type and
    every file lies inside ``contents``."""
    if not (isinstance(value, tuple) and len(value) == 3):
        return None
    digest, places, messages = value
    if not (isinstance(digest, bytes) and isinstance(places, list) and isinstance(messages, list)):
        return None
    files: dict[str, FileData | None] = {}
    for place in places:
        if not (isinstance(place, tuple) and len(place) == 3):
            return None
        filename, offset, length = place
        if not (isinstance(filename, str) and type(offset) is int and type(length) is int):
            return None
        if offset == -1:
            files[filename] = None
        elif offset >= 0 and length >= 0 and offset + length <= len(contents):
            files[filename] = contents[offset : offset + length]
        else:
            return None
    for message in messages:
        if not (
            isinstance(message, tuple)
            and len(message) == 2
            and all(isinstance(x, str) for x in message)
        ):
            return None
    return digest, (files, messages)
