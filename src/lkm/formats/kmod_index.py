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
from collections.abc import Iterable, Iterator

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
    # (a literal every key matching the entries' patterns contains, them)
    _Group = tuple[str, tuple[_Entry, ...]]


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


def _first_wildcard(prefix: str) -> int:
    """Where the first of '*', '?' and '[' is in ``prefix`` (-1: none);
    three finds, as most prefixes have none."""
    first = -1
    for char in _WILDCARDS:
        at = prefix.find(char)
        if at >= 0 and (first < 0 or at < first):
            first = at
    return first


def _first(hit: tuple[int, tuple[IndexValue, ...]]) -> int:
    return hit[0]


_GRAM = 4  # characters of the substrings big subtrees file their literals under
_GRAMS_FROM = 48  # literals from which a subtree files them so


class _Flat:
    """A wildcard subtree's patterns, compiled once, grouped by a literal
    each of them requires in a matching key (:func:`required_literal`): a
    lookup tries the patterns of the literals its key contains, one
    ``in`` test per group instead of one match per pattern."""

    __slots__ = ("by_gram", "groups", "short", "single")

    def __init__(self, found: list[tuple[str, tuple[IndexValue, ...]]]) -> None:
        # Most subtrees hold one pattern (96% of Debian's): matched as is.
        self.single: _Entry | None = None
        self.groups: tuple[tuple[str, tuple[_Entry, ...]], ...] = ()
        if len(found) == 1:
            pattern, values = found[0]
            self.single = (0, matcher(pattern), values)
            return
        groups: dict[str, list[_Entry]] = {}
        for index, (pattern, values) in enumerate(found):
            entry = (index, matcher(pattern), values)
            groups.setdefault(required_literal(pattern), []).append(entry)
        self.groups = tuple((literal, tuple(entries)) for literal, entries in groups.items())
        self.by_gram: dict[str, tuple[_Group, ...]] | None = None
        self.short: tuple[_Group, ...] = ()
        if len(self.groups) >= _GRAMS_FROM:
            self._index_by_gram()

    def _index_by_gram(self) -> None:
        """Big subtrees (Device Tree, USB and ACPI aliases: up to
        thousands of literals) are not scanned literal by literal: each
        literal is filed under one of its _GRAM-character substrings, the
        one shared with the fewest literals filed so far, and a lookup
        reads the buckets of its key's substrings."""
        buckets: dict[str, list[_Group]] = {}
        short: list[_Group] = []
        for group in self.groups:
            literal = group[0]
            if len(literal) < _GRAM:
                short.append(group)
                continue
            grams = [literal[at : at + _GRAM] for at in range(len(literal) - _GRAM + 1)]
            gram = min(grams, key=lambda g: len(buckets.get(g, ())))
            buckets.setdefault(gram, []).append(group)
        self.short = tuple(short)
        self.by_gram = {gram: tuple(groups) for gram, groups in buckets.items()}

    def _candidates(self, subkey: str) -> Iterable[_Group]:
        """The groups whose literal may be in ``subkey``."""
        by_gram = self.by_gram
        if by_gram is None:
            return self.groups
        found = list(self.short)
        grams = {subkey[at : at + _GRAM] for at in range(len(subkey) - _GRAM + 1)}
        for gram in grams:
            groups = by_gram.get(gram)
            if groups is not None:
                found.extend(groups)
        return found

    def match(self, subkey: str, out: list[IndexValue]) -> None:
        """The values of the patterns that match ``subkey`` into ``out``,
        in the subtree's order."""
        if not subkey.isascii() or "\0" in subkey:
            subkey = c_bytes(subkey)
        single = self.single
        if single is not None:
            if single[1](subkey):
                for value in single[2]:
                    insert_by_priority(out, value)
            return
        hits: list[tuple[int, tuple[IndexValue, ...]]] = []
        for literal, entries in self._candidates(subkey):
            if literal in subkey:
                for index, match, values in entries:
                    if match(subkey):
                        hits.append((index, values))
        if len(hits) > 1:
            hits.sort(key=_first)
        for _, values in hits:
            for value in values:
                insert_by_priority(out, value)


HEADS_AFTER = 4096  # wildcard searches before an index builds its _Heads


class _Branch:
    """A wildcard subtree in :class:`_Heads`: where it is, its top node,
    its pattern down to the top's prefix, and its patterns once flattened."""

    __slots__ = ("flat", "offset", "pattern", "top")

    def __init__(self, offset: int, top: _Node, pattern: str) -> None:
        self.offset = offset
        self.top = top
        self.pattern = pattern
        self.flat: _Flat | None = None


class _Heads:
    """Where a wildcard search branches, for bulk lookups (a daemon, a
    pass over every device's alias): ``table`` maps each literal path from
    the root to the wildcard subtrees hanging there, in the walk's order;
    ``lengths`` the lengths of those paths, ascending, by their first
    character (``at_root``: the empty path's); ``exact`` each literal
    key's values. Costs a walk over the whole trie, so an index builds it
    only once it has served many searches."""

    __slots__ = ("at_root", "exact", "lengths", "table")

    def __init__(
        self, table: dict[str, list[_Branch]], exact: dict[str, tuple[IndexValue, ...]]
    ) -> None:
        self.table = {head: tuple(branches) for head, branches in table.items()}
        self.exact = exact
        by_first: dict[str, set[int]] = {}
        for head in table:
            by_first.setdefault(head[:1], set()).add(len(head))
        root = by_first.pop("", set())
        self.at_root = tuple(sorted(root))
        self.lengths = {first: tuple(sorted(root | found)) for first, found in by_first.items()}


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
        # After many wildcard searches a table of where they branch
        # replaces the walk down the trie (None: not built, or not
        # buildable: a corrupt part only some searches would reach).
        self._searches = 0
        self._heads: _Heads | None = None

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
        wild_at = _first_wildcard(prefix) if prefix else -1
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
        if count == 1:  # most keys: nothing to order
            return (self._value_at(pos)[0],)
        out: list[IndexValue] = []
        for _ in range(count):
            value, pos = self._value_at(pos)
            insert_by_priority(out, value)
        return tuple(out)

    def _value_at(self, pos: int) -> tuple[IndexValue, int]:
        """The value at ``pos`` and where the next one starts."""
        data = self.data
        if pos + 4 > len(data):
            raise self._error(f"truncated value at offset {pos}")
        end = data.find(b"\0", pos + 4)
        if end < 0:
            raise self._error(f"unterminated value at offset {pos + 4}")
        (priority,) = _U32.unpack_from(data, pos)
        value = data[pos + 4 : end].decode("utf-8", "surrogateescape")
        return IndexValue(priority, value), end + 1

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
        heads = self._heads
        if heads is None:
            self._searches += 1
            if self._searches == HEADS_AFTER:
                heads = self._heads = self._try_build_heads()
        if heads is not None and not ("*" in key or "?" in key or "[" in key):
            return self._search_heads(heads, key)
        return self._search_walk(key)

    def _search_heads(self, heads: _Heads, key: str) -> list[IndexValue]:
        """:meth:`search_wild` for a key without wildcards, from the table:
        the subtrees the walk would match, in its order (the paths they
        hang from are prefixes of ``key``, shortest first), then the key's
        own values."""
        out: list[IndexValue] = []
        size = len(key)
        table = heads.table
        for length in heads.lengths.get(key[:1], heads.at_root):
            if length > size:
                break
            for branch in table.get(key[:length], ()):
                flat = branch.flat
                if flat is None:
                    flat = branch.flat = self._flat_of(branch.offset, branch.top, branch.pattern)
                flat.match(key[length:], out)
        for value in heads.exact.get(key, ()):
            insert_by_priority(out, value)
        return out

    def _try_build_heads(self) -> _Heads | None:
        try:
            return self._build_heads()
        except IndexFormatError:
            return None  # for the searches that reach the corrupt part to report

    def _build_heads(self) -> _Heads:
        """The nodes a wildcard-free key's walk can reach (children by
        ASCII characters other than the wildcards, no further than a
        prefix's first wildcard) and the subtrees matched there."""
        table: dict[str, list[_Branch]] = {}
        exact: dict[str, tuple[IndexValue, ...]] = {}
        seen: set[int] = set()
        stack: list[tuple[int, str]] = [(self._unseen(self.root, seen), "")]
        while stack:
            offset, path = stack.pop()
            node = self._node(offset)
            if node is None:
                continue
            at = node.wild_at
            if at >= 0:
                branch = _Branch(offset, node, node.prefix[at:])
                table.setdefault(path + node.prefix[:at], []).append(branch)
                continue
            path += node.prefix
            if node.values:
                exact[path] = node.values
            for wild, child_offset in node.wild:
                child = self._node(self._unseen(child_offset, seen))
                if child is not None:
                    table.setdefault(path, []).append(
                        _Branch(child_offset, child, wild + child.prefix)
                    )
            for code in range(node.first, min(node.last, 127) + 1):
                child_offset = node.children[code - node.first]
                if child_offset & NODE_MASK and chr(code) not in _WILDCARDS:
                    stack.append((self._unseen(child_offset, seen), path + chr(code)))
        return _Heads(table, exact)

    def _search_walk(self, key: str) -> list[IndexValue]:
        out: list[IndexValue] = []
        offset = self.root
        node = self._node(offset)
        decoded = self._nodes.get
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
            node = decoded(offset) or self._node(offset)
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
        self._flat_of(offset, top, pattern).match(subkey, out)

    def _flat_of(self, offset: int, top: _Node, pattern: str) -> _Flat:
        flat = self._flat.get((offset, pattern))
        if flat is None:
            flat = self._flat[offset, pattern] = _Flat(self._flatten(top, pattern))
        return flat

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
