"""Writer for kmod's binary index files (``modules.*.bin``).

The format is described in :mod:`lkm.formats.kmod_index`. kmod's depmod
builds the trie by inserting keys one by one; the resulting trie does not
depend on the insertion order (every node but the root holds values or at
least two children, and the root's prefix is always empty), so lkm builds
it from the sorted keys in one pass instead, which is much faster in
Python. Only the order of equal-priority values of one key depends on the
insertion order, and :func:`~lkm.formats.kmod_index.insert_by_priority`
reproduces kmod's rule for that.

Two node layouts exist: pre-order (a node before its children; kmod ≥ 34,
the default) and post-order (children first; kmod ≤ 33). Both read the
same.
"""

from __future__ import annotations

import enum
import struct

from lkm.errors import FormatError
from lkm.formats.kmod_index import (
    INDEX_MAGIC,
    INDEX_VERSION,
    NODE_CHILDS,
    NODE_PREFIX,
    NODE_VALUES,
    IndexValue,
    insert_by_priority,
)

_U32 = struct.Struct(">I")
HEADER_SIZE = 12


class Layout(enum.Enum):
    PRE_ORDER = "pre-order"  # kmod >= 34
    POST_ORDER = "post-order"  # kmod <= 33


class _Node:
    __slots__ = ("children", "prefix", "size", "total", "values")

    def __init__(self, prefix: bytes, values: list[IndexValue]) -> None:
        self.prefix = prefix
        self.values = values
        # Filled in ascending character order (the keys are sorted).
        self.children: dict[int, _Node] = {}
        self.size = 0  # bytes of this node alone
        self.total = 0  # bytes of this node and everything below it

    @property
    def flags(self) -> int:
        return (
            (NODE_PREFIX if self.prefix else 0)
            | (NODE_CHILDS if self.children else 0)
            | (NODE_VALUES if self.values else 0)
        )


class IndexBuilder:
    """Collects (key, value, priority) entries; :meth:`to_bytes` writes them."""

    def __init__(self) -> None:
        self._entries: dict[str, list[IndexValue]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def insert(self, key: str, value: str, priority: int) -> bool:
        """Add a value; True when the key already had this value.

        The duplicate is stored anyway, as kmod does (it only warns).
        """
        for text in (key, value):
            if not text.isascii():
                bad = next(c for c in text if not c.isascii())
                # kmod's wording (depmod index__checkstring)
                raise FormatError(
                    f"Module index: bad character '{bad}'=0x{ord(bad):x} - "
                    f"only 7-bit ASCII is supported: {text}"
                )
        values = self._entries.setdefault(key, [])
        duplicate = any(v.value == value for v in values)
        insert_by_priority(values, IndexValue(priority, value))
        return duplicate

    def to_bytes(self, layout: Layout = Layout.PRE_ORDER) -> bytes:
        keys = sorted(k.encode() for k in self._entries)
        values = {k.encode(): v for k, v in self._entries.items()}
        root = _build(keys, 0, len(keys), 0, values, is_root=True) if keys else _Node(b"", [])
        _measure(root)
        out = bytearray(HEADER_SIZE)
        if layout is Layout.PRE_ORDER:
            _write_pre_order(root, out)
            root_offset = HEADER_SIZE | root.flags
        else:
            root_offset = _write_post_order(root, out)
        struct.pack_into(">III", out, 0, INDEX_MAGIC, INDEX_VERSION, root_offset)
        return bytes(out)


def _common_prefix_length(a: bytes, b: bytes, start: int) -> int:
    end = min(len(a), len(b))
    pos = start
    while pos < end and a[pos] == b[pos]:
        pos += 1
    return pos - start


def _build(
    keys: list[bytes],
    lo: int,
    hi: int,
    depth: int,
    values: dict[bytes, list[IndexValue]],
    is_root: bool = False,
) -> _Node:
    """Node for sorted ``keys[lo:hi]``, which agree on their first ``depth`` bytes."""
    # Sorted keys: the common prefix of the group is that of its first and
    # last key. kmod's root never takes a prefix.
    length = 0 if is_root else _common_prefix_length(keys[lo], keys[hi - 1], depth)
    end = depth + length
    node = _Node(keys[lo][depth:end], [])
    if len(keys[lo]) == end:  # the shortest key sorts first
        node.values = list(values[keys[lo]])
        lo += 1
    while lo < hi:
        char = keys[lo][end]
        group_end = lo + 1
        while group_end < hi and keys[group_end][end] == char:
            group_end += 1
        node.children[char] = _build(keys, lo, group_end, end + 1, values)
        lo = group_end
    return node


def _measure(root: _Node) -> None:
    """Fill in ``size`` and ``total`` bottom-up (no recursion limit)."""
    order: list[_Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    for node in reversed(order):
        size = len(node.prefix) + 1 if node.prefix else 0
        total = 0
        if node.children:
            chars = list(node.children)
            size += 2 + 4 * (chars[-1] - chars[0] + 1)
            for child in node.children.values():
                total += child.total
        if node.values:
            # count, then per value: priority, string, NUL
            size += 4 + sum(5 + len(v.value) for v in node.values)
        node.size = size
        node.total = size + total


def _node_bytes(node: _Node, child_offsets: list[int]) -> bytes:
    """A node's bytes; ``child_offsets`` in character order, one per child."""
    parts: list[bytes] = []
    if node.prefix:
        parts.append(node.prefix + b"\0")
    if node.children:
        chars = list(node.children)
        first, last = chars[0], chars[-1]
        table = [0] * (last - first + 1)
        for char, offset in zip(chars, child_offsets, strict=True):
            table[char - first] = offset
        parts.append(bytes((first, last)) + struct.pack(f">{len(table)}I", *table))
    if node.values:
        parts.append(_U32.pack(len(node.values)))
        for value in node.values:
            parts.append(_U32.pack(value.priority) + value.value.encode() + b"\0")
    return b"".join(parts)


def _write_pre_order(root: _Node, out: bytearray) -> None:
    """Each node, then its children in character order (kmod >= 34)."""
    stack = [root]
    while stack:
        node = stack.pop()
        offsets = []
        below = len(out) + node.size
        for child in node.children.values():
            offsets.append(below | child.flags)
            below += child.total
        out += _node_bytes(node, offsets)
        stack.extend(reversed(node.children.values()))


def _write_post_order(root: _Node, out: bytearray) -> int:
    """Children in character order, then the node (kmod <= 33).

    Returns the root's offset word.
    """
    offsets: dict[int, int] = {}  # id(node) -> offset word
    stack: list[tuple[_Node, bool]] = [(root, False)]
    while stack:
        node, children_written = stack.pop()
        if not children_written:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children.values()))
            continue
        child_offsets = [offsets[id(child)] for child in node.children.values()]
        offsets[id(node)] = len(out) | node.flags
        out += _node_bytes(node, child_offsets)
    return offsets[id(root)]
