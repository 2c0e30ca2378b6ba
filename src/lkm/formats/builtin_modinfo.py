"""``modules.builtin.modinfo``: the ``.modinfo`` of modules built into the kernel.

The kernel build concatenates every built-in module's ``.modinfo`` strings,
each prefixed with the module name: ``ext4.license=GPL\\0ext4.alias=…\\0``.
kmod (libkmod-builtin.c) reads consecutive strings with the same prefix as
one block, stops at a string without a '.', and answers with the first
block whose prefix is the module name.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterator


def iter_blocks(data: bytes) -> Iterator[tuple[str, list[str]]]:
    """(module name, its strings without the ``name.`` prefix) in file order."""
    strings = data.decode("utf-8", "surrogateescape").split("\0")
    # A last string without a terminating NUL is not a complete entry.
    strings.pop()
    current: str | None = None
    block: list[str] = []
    for item in strings:
        name, dot, rest = item.partition(".")
        if not dot:
            break
        if name != current:
            if current is not None:
                yield current, block
            current, block = name, []
        block.append(rest)
    if current is not None:
        yield current, block


def builtin_table(data: bytes) -> dict[str, list[tuple[str, str]]]:
    """Module name → its (key, value) pairs; the first block of a name wins."""
    table: dict[str, list[tuple[str, str]]] = {}
    for name, block in iter_blocks(data):
        if name not in table:
            table[name] = [_key_value(item) for item in block]
    return table


def _key_value(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value
