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

from lkm.errors import IndexFormatError
from lkm.formats.file_kinds import open_regular
from lkm.formats.fnmatch import c_bytes, compiled, required_literal
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
    from collections.abc import Callable, Iterable, Iterator

    from lkm.formats.elf import Buffer  # a type only: the ELF reader is no index's business
    from lkm.formats.fnmatch import Compiled

    # (order among the subtree's keys, the pattern compiled, its values)
    _Entry = tuple[int, Compiled, tuple["IndexValue", ...]]
    # (a literal every key matching the entries' patterns contains, them)
    _Group = tuple[str, tuple[_Entry, ...]]
    # A node as KmodIndex._raw reads it: (prefix, first child's character,
    # child offsets, where its values are or -1)
    _Raw = tuple[str, int, tuple[int, ...], int]


class IndexValue(Record):
    priority: int
    value: str


_WILDCARDS = "*?["
_WILD_CODES = frozenset(map(ord, _WILDCARDS))


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


def _insert_all(out: list[IndexValue], values: tuple[IndexValue, ...]) -> None:
    """Each of ``values`` into ``out`` by :func:`insert_by_priority`; the
    first found, one value (nearly every search), simply appended."""
    if not out and len(values) == 1:
        out.append(values[0])
        return
    for value in values:
        insert_by_priority(out, value)


def _first(hit: tuple[int, tuple[IndexValue, ...]]) -> int:
    return hit[0]


_GRAM = 4  # characters of the substrings big subtrees file their literals under
_GRAMS_FROM = 48  # literals from which a subtree files them so


def _least_filed(literal: str, buckets: dict[str, list[_Group]]) -> str:
    """The first of ``literal``'s _GRAM-character substrings with the
    fewest groups in ``buckets`` (an unused one ends the search: none has
    fewer)."""
    best, fewest = "", -1
    for at in range(len(literal) - _GRAM + 1):
        gram = literal[at : at + _GRAM]
        filed = len(buckets.get(gram, ()))
        if fewest < 0 or filed < fewest:
            best, fewest = gram, filed
            if not filed:
                break
    return best


class _Flat:
    """A wildcard subtree's patterns, compiled once, grouped by a literal
    each of them requires in a matching key (:func:`required_literal`): a
    lookup tries the patterns of the literals its key contains, one
    ``in`` test per group instead of one match per pattern."""

    __slots__ = ("by_gram", "groups", "only", "only_values", "short")

    def __init__(
        self, found: list[tuple[str, tuple[IndexValue, ...]]], compile: Callable[[str], Compiled]
    ) -> None:
        # Most subtrees hold one pattern (96% of Debian's): matched as is,
        # held in two slots rather than an entry (tens of thousands fewer
        # objects for the garbage collector to walk over).
        self.only: Compiled | None = None
        self.only_values: tuple[IndexValue, ...] = ()
        self.groups: tuple[tuple[str, tuple[_Entry, ...]], ...] = ()
        if len(found) == 1:
            pattern, self.only_values = found[0]
            self.only = compile(pattern)
            return
        groups: dict[str, list[_Entry]] = {}
        for index, (pattern, values) in enumerate(found):
            entry = (index, compile(pattern), values)
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
            buckets.setdefault(_least_filed(literal, buckets), []).append(group)
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
        """The values of the patterns that match ``subkey`` (in C's terms:
        :func:`c_bytes`) into ``out``, in the subtree's order."""
        only = self.only
        if only is not None:
            if only.match(subkey):
                _insert_all(out, self.only_values)
            return
        hits: list[tuple[int, tuple[IndexValue, ...]]] = []
        for literal, entries in self._candidates(subkey):
            if literal in subkey:
                for index, pattern, values in entries:
                    if pattern.match(subkey):
                        hits.append((index, values))
        if len(hits) > 1:
            hits.sort(key=_first)
        for _, values in hits:
            _insert_all(out, values)


# Wildcard searches before an index builds its _Heads: about as many as
# cost, on a fresh index, what building it does (1,024 cold walks of a
# Debian alias index and the table each take ~80 ms), so a caller never
# pays much more than twice what knowing its count in advance would cost.
HEADS_AFTER = 1024


class _Branch(Record):
    """A wildcard subtree in :class:`_Heads` until a search reaches it:
    where it is, how its patterns start and its top node's parts if read
    (see :meth:`KmodIndex._flat_of`)."""

    offset: int
    lead: str
    skip: int
    top: _Raw | None


class _Heads:
    """Where a wildcard search branches, for bulk lookups (a daemon, a
    pass over every device's alias): ``table`` maps each literal path from
    the root to the wildcard subtrees hanging there, in the walk's order
    (where they are, then, once a search has reached them, their patterns:
    the places are dropped); ``lengths`` the lengths of those paths,
    ascending, by their first character (``at_root``: the empty path's);
    ``exact`` each literal key's values. Costs a walk over the whole trie,
    so an index builds it only once it has served many searches."""

    __slots__ = ("at_root", "exact", "lengths", "table")

    def __init__(
        self, table: dict[str, list[_Branch]], exact: dict[str, tuple[IndexValue, ...]]
    ) -> None:
        self.table: dict[str, list[_Branch] | tuple[_Flat, ...]] = dict(table)
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
        # Decoded nodes, flattened wildcard subtrees and their patterns'
        # matchers: at most an entry or two per node of the file (its size
        # bounds them).
        self._nodes: dict[int, _Node | None] = {}
        self._flat: dict[tuple[int, str, int], _Flat] = {}
        self._patterns: dict[str, Compiled] = {}
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
        if not offset & NODE_MASK:
            return None
        prefix, first, children, values_at = self._raw(offset)
        last = first + len(children) - 1 if children else 0
        values = self._values(values_at) if values_at >= 0 else ()
        wild_at = _first_wildcard(prefix) if prefix else -1
        wild: tuple[tuple[str, int], ...] = ()
        if first <= 91 and last >= 42:  # '*' (42), '?' (63), '[' (91)
            wild = tuple(
                (char, children[ord(char) - first])
                for char in _WILDCARDS
                if first <= ord(char) <= last and children[ord(char) - first] & NODE_MASK
            )
        return _Node(prefix, first, last, children, values, wild_at, wild)

    def _raw(self, offset: int) -> _Raw:
        """The parts of the node at ``offset`` (flags included, position not
        0), checked but not made into a :class:`_Node`: its prefix, its
        first child's character (128 when it has none), its child offsets
        and where its values start (-1: none). Bulk walks (the branch
        table, flattening a subtree) read nodes once, through this alone."""
        pos = offset & NODE_MASK
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
        first: int = 128
        children: tuple[int, ...] = ()
        if offset & NODE_CHILDS:
            if pos + 2 > size:
                raise self._error(f"truncated child range at offset {pos}")
            # kmod reads these as (signed) char; a range that runs backwards
            # holds no children.
            count = data[pos + 1] - data[pos] + 1
            if count > 0:
                first = data[pos]
                if pos + 2 + 4 * count > size:
                    raise self._error(f"truncated child table at offset {pos + 2}")
                children = struct.unpack_from(f">{count}I", data, pos + 2)
                pos += 4 * count
            pos += 2
        return prefix, first, children, pos if offset & NODE_VALUES else -1

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
        # The patterns match C's bytes; for an ASCII key (nearly every
        # one) its characters, each subkey then a slice of the key.
        plain = key.isascii() and "\0" not in key
        for length in heads.lengths.get(key[:1], heads.at_root):
            if length > size:
                break
            flats = table.get(key[:length])
            if flats is None:
                continue
            if isinstance(flats, list):  # the first search to get here
                flats = table[key[:length]] = tuple(
                    self._flat_of(b.offset, b.lead, b.skip, b.top) for b in flats
                )
            for flat in flats:
                flat.match(key[length:] if plain else c_bytes(key[length:]), out)
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
        prefix's first wildcard) and the subtrees matched there. Read raw
        (:meth:`_raw`), a node object for none: this walk meets most of
        the file's nodes once, and the subtrees are read when first
        matched."""
        from itertools import compress

        table: dict[str, list[_Branch]] = {}
        exact: dict[str, tuple[IndexValue, ...]] = {}
        seen: set[int] = set()
        raw = self._raw
        stack: list[tuple[int, str]] = [(self._unseen(self.root, seen), "")]
        while stack:
            offset, path = stack.pop()
            if not offset & NODE_MASK:
                continue
            parts = raw(offset)
            prefix, first, children, values_at = parts
            if prefix:
                at = _first_wildcard(prefix)
                if at >= 0:
                    branch = _Branch(offset, "", at, parts)
                    table.setdefault(path + prefix[:at], []).append(branch)
                    continue
                path += prefix
            if values_at >= 0:
                exact[path] = self._values(values_at)
            if not children:
                continue
            if first <= 91 and first + len(children) > 42:  # '*' (42), '?' (63), '[' (91)
                branches = self._wild_branches(first, children, seen)
                if branches:
                    table.setdefault(path, []).extend(branches)
            # Child tables are mostly holes (0): skipped in C.
            for index in compress(range(len(children)), children):
                code = first + index
                if code >= 128:  # kmod's (signed) char: no key walks there
                    break
                child = children[index]
                if child & NODE_MASK and code not in _WILD_CODES:
                    stack.append((self._unseen(child, seen), path + chr(code)))
        return _Heads(table, exact)

    def _wild_branches(
        self, first: int, children: tuple[int, ...], seen: set[int]
    ) -> list[_Branch]:
        """The subtrees under a node's '*', '?' and '[' children, in that
        order (index_searchwild's)."""
        found = []
        for char in _WILDCARDS:
            index = ord(char) - first
            if 0 <= index < len(children) and children[index] & NODE_MASK:
                found.append(_Branch(self._unseen(children[index], seen), char, 0, None))
        return found

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
                    self._flat_of(offset, "", at).match(c_bytes(key[i + at :]), out)
                return out
            if not key.startswith(prefix, i):
                return out
            i += len(prefix)
            for wild, child_offset in node.wild:
                self._flat_of(child_offset, wild, 0).match(c_bytes(key[i:]), out)
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

    def _flat_of(self, offset: int, lead: str, skip: int, top: _Raw | None = None) -> _Flat:
        """The keys below the node at ``offset`` as patterns that start
        with ``lead`` and then that node's prefix from its ``skip``-th
        character (a wildcard child: its character and 0; a prefix with a
        wildcard: "" and where the wildcard is), flattened once; ``top``:
        that node's parts when already read."""
        flat = self._flat.get((offset, lead, skip))
        if flat is None:
            found = self._flatten(top or self._raw(offset), lead, skip)
            flat = self._flat[offset, lead, skip] = _Flat(found, self._compiled)
        return flat

    def _compiled(self, pattern: str) -> Compiled:
        """``pattern`` compiled once per index: most subtrees end in one of
        a few patterns (``*sd*bc*sc*i*`` thousands of times in a PCI
        tree), so a fifth of them are compiled."""
        found = self._patterns.get(pattern)
        if found is None:
            found = self._patterns[pattern] = compiled(pattern)
        return found

    def _flatten(self, top: _Raw, lead: str, skip: int) -> list[tuple[str, tuple[IndexValue, ...]]]:
        """The keys below the node ``top`` with values, as full patterns
        (see :meth:`_flat_of`), in the order kmod's recursion meets them:
        children in ascending order before the node itself (which decides
        the order of equal priorities). Read raw, as most of these nodes
        are read by nothing else; iterative, so a deep trie cannot exhaust
        Python's stack; a node reached twice is a cycle (a corrupt file)."""
        prefix, first, children, values_at = top
        pattern = lead + prefix[skip:]
        if not children:  # most subtrees: one key, no walk
            return [(pattern, self._values(values_at))] if values_at >= 0 else []
        seen: set[int] = set()
        found: list[tuple[str, tuple[IndexValue, ...]]] = []
        # (a node still to read, the pattern down to its prefix, -1), or
        # (-1, a key's full pattern, where its node's values are)
        stack: list[tuple[int, str, int]] = []
        if values_at >= 0:
            stack.append((-1, pattern, values_at))
        self._push_children(stack, first, children, pattern, seen)
        while stack:
            offset, pattern, values_at = stack.pop()
            if offset < 0:
                found.append((pattern, self._values(values_at)))
                continue
            prefix, first, children, values_at = self._raw(offset)
            pattern += prefix
            if values_at >= 0:
                stack.append((-1, pattern, values_at))
            if children:
                self._push_children(stack, first, children, pattern, seen)
        return found

    def _push_children(
        self,
        stack: list[tuple[int, str, int]],
        first: int,
        children: tuple[int, ...],
        pattern: str,
        seen: set[int],
    ) -> None:
        """A node's children onto ``stack``, the last first, so that they
        come off it in ascending order."""
        from itertools import compress

        # Child tables are mostly holes (0): skipped in C.
        for index in reversed([*compress(range(len(children)), children)]):
            child = children[index]
            if child & NODE_MASK:
                stack.append((self._unseen(child, seen), pattern + chr(first + index), -1))

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
