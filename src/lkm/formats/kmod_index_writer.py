"""Writer for kmod's binary index files (``modules.*.bin``).

The format is described in :mod:`lkm.formats.kmod_index` (the reader). kmod's depmod
builds the trie by inserting keys one by one; the resulting trie does not
depend on the insertion order (every node but the root holds values or at
least two children, and the root's prefix is always empty), so lkm writes
it straight from the sorted keys instead: a node is a range of sorted keys
sharing a prefix, its children are the sub-ranges that agree on the next
character (found by bisection), and the bytes go directly into one buffer.
No object per node: in Python that allocation was most of the cost. Only
the order of equal-priority values of one key depends on the insertion
order, and :meth:`IndexBuilder.insert` follows kmod's rule for that
(:func:`~lkm.formats.kmod_index.insert_by_priority`).

Two node layouts exist: pre-order (a node before its children; kmod ≥ 34,
the default) and post-order (children first; kmod ≤ 33). Both read the
same.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections import Counter

from lkm.formats.kmod_index_format import (
    INDEX_MAGIC,
    INDEX_VERSION,
    NODE_CHILDS,
    NODE_PREFIX,
    NODE_VALUES,
)
from lkm.formats.kmod_index_layout import Layout

__all__ = ["IndexBuilder", "Layout"]  # Layout: declared apart, taken from here too

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")
HEADER_SIZE = 12
# lkm's text is UTF-8 with surrogate escapes for the bytes that are not:
# encoded back, a value is the bytes it was read from.
_BYTES = ("utf-8", "surrogateescape")

# (priority, value) pairs of one key, in kmod's order.
Values = list[tuple[int, str]]
# A trie node to write: sorted keys[lo:hi], which agree on their first
# ``depth`` bytes.
_Range = tuple[int, int, int]


class IndexBuilder:
    """Collects (key, value, priority) entries; :meth:`to_bytes` writes them.

    Keys must be 7-bit ASCII: kmod's readers address a node's children by
    ``char`` (kmod <= 33: a 128-slot table and signed bytes) and kmod 34's
    depmod refuses such keys (``index__checkstring``). A key with another
    byte is not stored but set aside in :attr:`left_out` (as (key, value,
    priority)), so the caller can say which module it came from; the rest
    of the index is written. Values are NUL-terminated strings to every
    reader and are kept whatever their bytes.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Values] = {}
        self.left_out: list[tuple[str, str, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def insert(self, key: str, value: str, priority: int) -> bool:
        """Add a value; True when the key already had this value.

        The duplicate is stored anyway, as kmod does (it only warns).
        """
        if not key.isascii():
            self.left_out.append((key, value, priority))
            return False
        values = self._entries.get(key)
        if values is None:
            self._entries[key] = [(priority, value)]
            return False
        duplicate = any(v == value for _, v in values)
        # kmod's add_value: before the first value of equal or higher
        # priority, so among equal priorities the one added last comes first.
        pos = 0
        while pos < len(values) and values[pos][0] < priority:
            pos += 1
        values.insert(pos, (priority, value))
        return duplicate

    def extend(self, entries: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
        """:meth:`insert` each (key, value, priority); returns the (key,
        value) pairs that were duplicates, in order.

        Into an empty builder, keys met once (module names, symbols, most
        aliases) are taken in one step; only repeated keys go through
        :meth:`insert`, in their order.
        """
        if self._entries:
            return [(key, value) for key, value, rank in entries if self.insert(key, value, rank)]
        keys = [key for key, _, _ in entries]
        if not "".join(keys).isascii():
            self.left_out += [entry for entry in entries if not entry[0].isascii()]
            entries = [entry for entry in entries if entry[0].isascii()]
            keys = [key for key, _, _ in entries]
        repeated = {key for key, count in Counter(keys).items() if count > 1}
        self._entries = {key: [(rank, value)] for key, value, rank in entries}
        if not repeated:
            return []
        for key in repeated:
            del self._entries[key]
        return [
            (key, value)
            for key, value, rank in entries
            if key in repeated and self.insert(key, value, rank)
        ]

    def to_bytes(self, layout: Layout = Layout.PRE_ORDER) -> bytes:
        pack = _TWO_U32.pack
        # Most keys have one value: that block is made inline (no call).
        blocks = {
            key.encode(): pack(1, values[0][0]) + values[0][1].encode(*_BYTES) + b"\0"
            if len(values) == 1
            else _value_block(values)
            for key, values in self._entries.items()
        }
        keys = sorted(blocks)
        out = bytearray(HEADER_SIZE)
        if layout is Layout.PRE_ORDER:
            root = _write_pre_order(keys, blocks, out)
        else:
            root = _write_post_order(keys, blocks, out)
        struct.pack_into(">III", out, 0, INDEX_MAGIC, INDEX_VERSION, root)
        return bytes(out)


def _value_block(values: Values) -> bytes:
    """A node's values part: count, then per value priority, string, NUL."""
    if len(values) == 1:
        priority, value = values[0]
        return _TWO_U32.pack(1, priority) + value.encode(*_BYTES) + b"\0"
    parts = [_U32.pack(len(values))]
    for priority, value in values:
        parts.append(_U32.pack(priority) + value.encode(*_BYTES) + b"\0")
    return b"".join(parts)


def _common_prefix_length(a: bytes, b: bytes, start: int) -> int:
    """Bytes ``a`` and ``b`` share from ``start`` on (compared in C: the
    first differing byte is the highest set byte of their XOR)."""
    end = min(len(a), len(b))
    if end <= start:
        return 0
    x = int.from_bytes(a[start:end], "big") ^ int.from_bytes(b[start:end], "big")
    return end - start - (x.bit_length() + 7) // 8


def _node_shape(keys: list[bytes], lo: int, hi: int, depth: int) -> tuple[int, bool, list[_Range]]:
    """For the node of ``keys[lo:hi]``: where its prefix ends, whether the
    key ending there has values, and its children's ranges in character
    order. kmod's root (depth 0, whole range) never takes a prefix."""
    first = keys[lo]
    end = depth + _common_prefix_length(first, keys[hi - 1], depth) if depth else 0
    has_values = len(first) == end  # the shortest key sorts first
    start = lo + 1 if has_values else lo
    children: list[_Range] = []
    head = first[:end]
    while start < hi:
        char = keys[start][end]
        # Every key of the range starts with ``head``: the group of ``char``
        # ends before the first key >= head + (char + 1).
        stop = hi if char == 255 else bisect_left(keys, head + bytes((char + 1,)), start, hi)
        children.append((start, stop, end + 1))
        start = stop
    return end, has_values, children


def _write_leaf(key: bytes, depth: int, blocks: dict[bytes, bytes], out: bytearray) -> int:
    """A node holding one key: the rest of the key, then its values.
    Returns its offset word."""
    offset = len(out)
    if len(key) > depth:
        out += key[depth:] + b"\0"
        out += blocks[key]
        return offset | NODE_PREFIX | NODE_VALUES
    out += blocks[key]
    return offset | NODE_VALUES


def _write_inner(
    keys: list[bytes],
    node: tuple[int, int, int, bool, list[_Range]],
    words: list[int] | None,
    blocks: dict[bytes, bytes],
    out: bytearray,
) -> tuple[int, int]:
    """A node given as (lo, depth, prefix end, has values, children):
    prefix, children table, values. The table holds ``words`` (post-order)
    or zeros to be filled in later (pre-order). Returns the node's offset
    word and where its table starts."""
    lo, depth, end, has_values, children = node
    offset = len(out)
    flags = 0
    table = 0
    if end > depth:
        flags |= NODE_PREFIX
        out += keys[lo][depth:end] + b"\0"
    if children:
        flags |= NODE_CHILDS
        first = keys[children[0][0]][end]
        last = keys[children[-1][0]][end]
        slots = [0] * (last - first + 1)
        if words is not None:
            for (start, _, _), word in zip(children, words, strict=True):
                slots[keys[start][end] - first] = word
        out += bytes((first, last))
        table = len(out)
        out += struct.pack(f">{len(slots)}I", *slots)
    if has_values:
        flags |= NODE_VALUES
        out += blocks[keys[lo]]
    return offset | flags, table


def _write_pre_order(keys: list[bytes], blocks: dict[bytes, bytes], out: bytearray) -> int:
    """Each node, then its children in character order (kmod >= 34).

    A child's offset is only known once it is written: a node's table is
    reserved with the node and each slot filled in when its child starts.
    Returns the root's offset word.

    The nodes' shapes are :func:`_node_shape`'s, found inline: this
    writes tens of thousands of nodes per index and a call per node cost
    more than the node's own work. The loop walks "the children of one
    node from a given one on": a leaf child (most are) is written on the
    spot; an inner child is written, the rest of its siblings put aside,
    and the walk goes on with its own children.
    """
    if not keys:
        return len(out)
    pack_into = _U32.pack_into
    root = len(out)
    # The root: no prefix; values only for the empty key (sorted first).
    has_values = not keys[0]
    flags = NODE_VALUES if has_values else 0
    first_child = 1 if has_values else 0
    table = 0
    if first_child < len(keys):
        flags |= NODE_CHILDS
        table = _reserve_table(keys[first_child][0], keys[-1][0], out)
    if has_values:
        out += blocks[keys[0]]
    root_word = root | flags
    # Walks still to finish: (first child's index, end of the parent's
    # range, the parent's prefix end = the child's character position,
    # where the parent's table would hold character 0).
    walks: list[tuple[int, int, int, int]] = [(first_child, len(keys), 0, table)]
    while walks:
        start, hi, end, table = walks.pop()
        while start < hi:
            key = keys[start]
            char = key[end]
            depth = end + 1
            after = start + 1
            offset = len(out)
            if after == hi or keys[after][end] != char:  # a leaf
                if len(key) > depth:
                    out += key[depth:]
                    out += b"\0"
                    out += blocks[key]
                    pack_into(out, table + 4 * char, offset | NODE_PREFIX | NODE_VALUES)
                else:
                    out += blocks[key]
                    pack_into(out, table + 4 * char, offset | NODE_VALUES)
                start = after
                continue
            # An inner node: keys[start:stop] share key[:depth].
            stop = hi if char == 255 else bisect_left(keys, key[:end] + _BYTE[char + 1], after, hi)
            if stop < hi:
                walks.append((stop, hi, end, table))
            own_end = depth + _common_prefix_length(key, keys[stop - 1], depth)
            flags = NODE_CHILDS
            if own_end > depth:
                flags |= NODE_PREFIX
                out += key[depth:own_end]
                out += b"\0"
            has_values = len(key) == own_end  # the shortest key sorts first
            first_child = after if has_values else start
            child_table = _reserve_table(keys[first_child][own_end], keys[stop - 1][own_end], out)
            if has_values:
                flags |= NODE_VALUES
                out += blocks[key]
            pack_into(out, table + 4 * char, offset | flags)
            start, hi, end, table = first_child, stop, own_end, child_table
    return root_word


def _reserve_table(first: int, last: int, out: bytearray) -> int:
    """A children table for characters first..last, zero-filled; returns
    where the slot of character 0 would be (slot of c: that + 4 * c)."""
    out += _BYTE[first]
    out += _BYTE[last]
    at = len(out)
    out += bytes(4 * (last - first + 1))
    return at - 4 * first


# bytes((c,)) for every byte value, made once.
_BYTE = [bytes((c,)) for c in range(256)]


def _write_post_order(keys: list[bytes], blocks: dict[bytes, bytes], out: bytearray) -> int:
    """Children in character order, then the node (kmod <= 33).

    Returns the root's offset word.
    """
    if not keys:
        return len(out)
    # Each frame: a node (see _write_inner) and its children's offset words
    # as they are written.
    stack: list[tuple[tuple[int, int, int, bool, list[_Range]], list[int]]] = []
    end, has_values, children = _node_shape(keys, 0, len(keys), 0)
    stack.append(((0, 0, end, has_values, children), []))
    while True:
        node, words = stack[-1]
        children = node[4]
        if len(words) < len(children):
            lo, hi, depth = children[len(words)]
            if hi - lo == 1:
                words.append(_write_leaf(keys[lo], depth, blocks, out))
            else:
                end, has_values, grandchildren = _node_shape(keys, lo, hi, depth)
                stack.append(((lo, depth, end, has_values, grandchildren), []))
            continue
        stack.pop()
        word, _ = _write_inner(keys, node, words, blocks, out)
        if not stack:
            return word
        stack[-1][1].append(word)
