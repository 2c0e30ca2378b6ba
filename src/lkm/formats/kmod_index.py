"""Reader for kmod's binary index files (``modules.*.bin``).

Format (kmod libkmod-index.c): big-endian u32 words. Header: magic
0xB007F457, version 0x0002xxxx (major 2), root node offset. A node offset's
high nibble says which parts the node has::

    PREFIX  0x80000000  NUL-terminated string (path-compressed trie label)
    VALUES  0x40000000  u32 count, then count × (u32 priority, NUL string)
    CHILDS  0x20000000  char first, char last, (last-first+1) × u32 child

Keys are strings; each key has values sorted by priority. Keys stored in
``modules.alias.bin`` are fnmatch patterns, so besides exact lookup there is
a wildcard search that returns every value whose key pattern matches.

The reader works on a buffer (bytes or mmap) and checks every offset; a
malformed file raises :class:`~lkm.errors.IndexFormatError` and never reads
garbage. Child offsets may point anywhere, so a corrupt file could form a
cycle: every walk over a subtree remembers the nodes it has visited and
stops at the first one reached twice.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

from lkm.errors import IndexFormatError
from lkm.formats.elf import Buffer
from lkm.formats.file_kinds import open_regular
from lkm.formats.fnmatch import c_bytes, matcher, required_literal
from lkm.formats.kmod_index_format import (
    INDEX_MAGIC,
    INDEX_VERSION_MAJOR,
    NODE_CHILDS,
    NODE_FLAGS,
    NODE_MASK,
    NODE_PREFIX,
    NODE_VALUES,
)
from lkm.records import Record

_U32 = struct.Struct(">I")
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable

    # (order among the subtree's keys, the pattern's match, its values)
    _Entry = tuple[int, Callable[[str], object], tuple["IndexValue", ...]]


class IndexValue(Record):
    priority: int
    value: str


_WILDCARDS = "*?["


class _Node(Record):
    prefix: str
    first: int
    last: int
    children: tuple[int, ...]
    values: tuple[IndexValue, ...]
    # For wildcard searches: where the prefix's first wildcard is (-1: none)
    # and the children under '*', '?' and '[' (char, offset), in that order.
    wild_at: int = -1
    wild: tuple[tuple[str, int], ...] = ()

    def child(self, ch: int) -> int:
        if self.first <= ch <= self.last:
            return self.children[ch - self.first]
        return 0


def insert_by_priority(values: list[IndexValue], value: IndexValue) -> None:
    """kmod's add_value: before the first value of equal or higher priority.

    So among equal priorities the value added last comes first; kmod's
    file reader re-inserts each node's values this way, and so do we.
    """
    pos = 0
    while pos < len(values) and values[pos].priority < value.priority:
        pos += 1
    values.insert(pos, value)


def _child_offset(node: _Node, char: str) -> int:
    # kmod indexes children by (signed) char: a non-ASCII key character
    # never has a child.
    code = ord(char)
    return node.child(code) if code < 128 else 0


def _first(hit: tuple[int, tuple[IndexValue, ...]]) -> int:
    return hit[0]


class _Flat:
    """A wildcard subtree's patterns, compiled once, grouped by a literal
    each of them requires in a matching key (:func:`required_literal`): a
    lookup tries the patterns of the literals its key contains, one
    ``in`` test per group instead of one match per pattern."""

    __slots__ = ("groups",)

    def __init__(self, found: list[tuple[str, tuple[IndexValue, ...]]]) -> None:
        groups: dict[str, list[_Entry]] = {}
        for index, (pattern, values) in enumerate(found):
            entry = (index, matcher(pattern), values)
            groups.setdefault(required_literal(pattern), []).append(entry)
        self.groups = tuple((literal, tuple(entries)) for literal, entries in groups.items())


class KmodIndex:
    """One ``modules.*.bin`` file.

    Every problem raises :class:`~lkm.errors.IndexFormatError` naming
    ``path`` (a label for in-memory data).
    """

    def _error(self, problem: str) -> IndexFormatError:
        return IndexFormatError(self.path, problem)

    def __init__(self, data: Buffer, path: str = "<index>") -> None:
        self.data = data
        self.path = path
        if len(data) < 12:
            raise self._error("file too short for an index header")
        magic, version, root = struct.unpack_from(">III", data, 0)
        if magic != INDEX_MAGIC:
            raise self._error(f"bad magic 0x{magic:08x} (expected 0x{INDEX_MAGIC:08x})")
        if version >> 16 != INDEX_VERSION_MAJOR:
            raise self._error(f"unsupported index version 0x{version:08x}")
        self.version = version
        self.root = root
        # Decoded nodes and flattened wildcard subtrees, by offset: at most
        # one entry per node of the file (its size bounds them).
        self._nodes: dict[int, _Node | None] = {}
        self._flat: dict[tuple[int, str], _Flat] = {}

    # -- node decoding --------------------------------------------------------

    def _node(self, offset: int) -> _Node | None:
        """The node at ``offset`` (flags included), decoded once: lookups
        pass the same top nodes again and again."""
        node = self._nodes.get(offset)
        if node is None and offset & NODE_MASK:
            node = self._nodes[offset] = self._decode(offset)
        return node

    def _decode(self, offset: int) -> _Node | None:
        pos = offset & NODE_MASK
        if pos == 0:
            return None
        data = self.data
        size = len(data)
        # A node with no parts takes no bytes: an empty index's root sits
        # right at the end of the header.
        if pos > size or (pos == size and offset & NODE_FLAGS):
            raise self._error(f"node offset {pos} is beyond the end of the file")
        prefix = ""
        if offset & NODE_PREFIX:
            end = data.find(b"\0", pos)
            if end < 0:
                raise self._error(f"unterminated prefix at offset {pos}")
            prefix = data[pos:end].decode("utf-8", "surrogateescape")
            pos = end + 1
        first, last, children = 128, 0, ()
        if offset & NODE_CHILDS:
            if pos + 2 > size:
                raise self._error(f"truncated child range at offset {pos}")
            first, last = data[pos], data[pos + 1]
            # kmod reads these as (signed) char; a range that runs backwards
            # holds no children.
            count = last - first + 1
            pos += 2
            if count > 0:
                if pos + 4 * count > size:
                    raise self._error(f"truncated child table at offset {pos}")
                children = struct.unpack_from(f">{count}I", data, pos)
                pos += 4 * count
            else:
                first, last = 128, 0
        values: tuple[IndexValue, ...] = ()
        if offset & NODE_VALUES:
            values = self._values(pos)
        wild_at = -1
        if "*" in prefix or "?" in prefix or "[" in prefix:
            wild_at = min(at for at in map(prefix.find, _WILDCARDS) if at >= 0)
        wild: tuple[tuple[str, int], ...] = ()
        if first <= 91 and last >= 42:  # '*' (42), '?' (63), '[' (91)
            wild = tuple(
                (char, children[ord(char) - first])
                for char in _WILDCARDS
                if first <= ord(char) <= last and children[ord(char) - first] & NODE_MASK
            )
        return _Node(prefix, first, last, children, values, wild_at, wild)

    def _values(self, pos: int) -> tuple[IndexValue, ...]:
        data = self.data
        size = len(data)
        if pos + 4 > size:
            raise self._error(f"truncated value count at offset {pos}")
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        if count > size:
            raise self._error(f"absurd value count {count} at offset {pos - 4}")
        out: list[IndexValue] = []
        for _ in range(count):
            if pos + 4 > size:
                raise self._error(f"truncated value at offset {pos}")
            (priority,) = _U32.unpack_from(data, pos)
            end = data.find(b"\0", pos + 4)
            if end < 0:
                raise self._error(f"unterminated value at offset {pos + 4}")
            value = data[pos + 4 : end].decode("utf-8", "surrogateescape")
            insert_by_priority(out, IndexValue(priority, value))
            pos = end + 1
        return tuple(out)

    # -- lookups ----------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        """The first (lowest-priority-number) value of ``key``, exactly."""
        values = self.lookup_all(key)
        return values[0].value if values else None

    def lookup_all(self, key: str) -> tuple[IndexValue, ...]:
        """Every value of ``key`` in priority order, exact match only."""
        # Each step consumes at least one key character, so even a corrupt
        # file with cyclic child offsets cannot keep this loop going.
        node = self._node(self.root)
        i = 0
        while node is not None:
            if not key.startswith(node.prefix, i):
                return ()
            i += len(node.prefix)
            if i == len(key):
                return node.values
            node = self._node(_child_offset(node, key[i]))
            i += 1
        return ()

    def search_wild(self, key: str) -> list[IndexValue]:
        """Values of every stored pattern that matches ``key`` (fnmatch).

        Traversal and ordering follow kmod's index_searchwild: along the
        path of ``key``, subtrees under '*', '?' and '[' are matched as
        patterns first, then the exact path; results are merged by
        priority, later finds first among equals.
        """
        out: list[IndexValue] = []
        offset = self.root
        node = self._node(offset)
        i = 0
        size = len(key)
        # Each step consumes a key character, so this loop is bounded; the
        # subtree walks check themselves for cycles.
        while node is not None:
            prefix = node.prefix
            if node.wild_at >= 0:
                at = node.wild_at
                if key.startswith(prefix[:at], i) and i + at <= size:
                    self._match_subtree(offset, node, prefix[at:], key[i + at :], out)
                return out
            if not key.startswith(prefix, i):
                return out
            i += len(prefix)
            for wild, child_offset in node.wild:
                child = self._node(child_offset)
                if child is not None:
                    self._match_subtree(child_offset, child, wild + child.prefix, key[i:], out)
            if i == size:
                for value in node.values:
                    insert_by_priority(out, value)
                return out
            code = ord(key[i])
            offset = node.children[code - node.first] if node.first <= code <= node.last else 0
            if code >= 128:  # kmod indexes by (signed) char: no child
                offset = 0
            node = self._node(offset)
            i += 1
        return out

    def _unseen(self, offset: int, seen: set[int]) -> int:
        """``offset``, recorded; within one walk a sound trie never reaches
        a node twice, so a repeat means the child offsets form a cycle."""
        masked = offset & NODE_MASK
        if masked:
            if masked in seen:
                raise self._error(f"node at offset {masked} is reached twice (a cycle)")
            seen.add(masked)
        return offset

    def _match_subtree(
        self, offset: int, top: _Node, pattern: str, subkey: str, out: list[IndexValue]
    ) -> None:
        """Match every key below ``top`` (at ``offset``) as a pattern
        against ``subkey``; the values of those that match go into ``out``
        in the order of :meth:`_flatten`."""
        flat = self._flat.get((offset, pattern))
        if flat is None:
            flat = self._flat[offset, pattern] = _Flat(self._flatten(top, pattern))
        if not subkey.isascii() or "\0" in subkey:
            subkey = c_bytes(subkey)
        hits: list[tuple[int, tuple[IndexValue, ...]]] = []
        for literal, entries in flat.groups:
            if literal in subkey:
                for index, match, values in entries:
                    if match(subkey):
                        hits.append((index, values))
        if len(hits) > 1:
            hits.sort(key=_first)
        for _, values in hits:
            for value in values:
                insert_by_priority(out, value)

    def _flatten(self, top: _Node, pattern: str) -> list[tuple[str, tuple[IndexValue, ...]]]:
        """The keys below ``top`` with values, as full patterns, in the
        order kmod's recursion meets them: children in ascending order
        before the node itself (which decides the order of equal
        priorities). Iterative, so a deep trie cannot exhaust Python's
        stack; a node reached twice is a cycle (a corrupt file)."""
        seen: set[int] = set()
        found: list[tuple[str, tuple[IndexValue, ...]]] = []
        stack: list[tuple[_Node, str, bool]] = [(top, pattern, False)]
        while stack:
            node, pattern, children_done = stack.pop()
            if children_done:
                if node.values:
                    found.append((pattern, node.values))
                continue
            stack.append((node, pattern, True))
            for ch in range(node.last, node.first - 1, -1):
                child = self._node(self._unseen(node.children[ch - node.first], seen))
                if child is not None:
                    stack.append((child, pattern + chr(ch) + child.prefix, False))
        return found

    # -- dump -----------------------------------------------------------------

    def items(self) -> Iterator[tuple[str, tuple[IndexValue, ...]]]:
        """Every (key, values) pair in trie order (kmod's index_dump order)."""
        seen: set[int] = set()
        stack: list[tuple[int, str]] = [(self._unseen(self.root, seen), "")]
        while stack:
            offset, key = stack.pop()
            node = self._node(offset)
            if node is None:
                continue
            key += node.prefix
            if node.values:
                yield key, node.values
            for ch in range(node.last, node.first - 1, -1):
                child = self._unseen(node.children[ch - node.first], seen)
                if child & NODE_MASK:
                    stack.append((child, key + chr(ch)))


class IndexFile(KmodIndex):
    """A :class:`KmodIndex` mapped from a file; errors name the file."""

    def __init__(self, path: str) -> None:
        self._mmap: mmap.mmap | None = None
        # Regular files only (kmod maps the index by its size; a FIFO
        # would block the open, a device map nothing useful).
        fd, st = open_regular(path)
        try:
            data: Buffer = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if st.st_size else b""
        finally:
            os.close(fd)
        if isinstance(data, mmap.mmap):
            self._mmap = data
        try:
            super().__init__(data, path)
        except IndexFormatError:
            self.close()
            raise

    def close(self) -> None:
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
