"""kmod's hash table order, reproduced for byte-identical depmod output.

depmod builds several lists by iterating a hash table (shared/hash.c): the
module array before modules.order sorts it, and the symbol table that
becomes modules.symbols. The table never resizes: ``n`` buckets (a power
of two), each kept sorted by ``strcmp`` of the key, visited bucket by
bucket. So iteration order is: by ``hash(key) & (n - 1)``, then by key
bytes. The hash is Paul Hsieh's SuperFastHash as kmod writes it, reading
little-endian 16-bit words and *signed* chars for the tail bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

_MASK = 0xFFFFFFFF


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def superfast_hash(key: bytes) -> int:
    """kmod's hash_superfast(key, len(key)), 32-bit."""
    length = len(key)
    value = length
    rem = length & 3
    pos = 0
    for _ in range(length >> 2):
        value = (value + (key[pos] | key[pos + 1] << 8)) & _MASK
        tmp = (((key[pos + 2] | key[pos + 3] << 8) << 11) ^ value) & _MASK
        value = ((value << 16) ^ tmp) & _MASK
        pos += 4
        value = (value + (value >> 11)) & _MASK
    if rem == 3:
        value = (value + (key[pos] | key[pos + 1] << 8)) & _MASK
        value ^= (value << 16) & _MASK
        value ^= (_signed(key[pos + 2]) << 18) & _MASK
        value = (value + (value >> 11)) & _MASK
    elif rem == 2:
        value = (value + (key[pos] | key[pos + 1] << 8)) & _MASK
        value ^= (value << 11) & _MASK
        value = (value + (value >> 17)) & _MASK
    elif rem == 1:
        value = (value + _signed(key[pos])) & _MASK
        value ^= (value << 10) & _MASK
        value = (value + (value >> 1)) & _MASK
    value ^= (value << 3) & _MASK
    value = (value + (value >> 5)) & _MASK
    value ^= (value << 4) & _MASK
    value = (value + (value >> 17)) & _MASK
    value ^= (value << 25) & _MASK
    value = (value + (value >> 6)) & _MASK
    return value


def align_power2(n: int) -> int:
    """kmod's ALIGN_POWER2: the next power of two (n itself if one)."""
    return 1 << (n - 1).bit_length() if n > 1 else 1


def hash_order(keys: Iterable[str], buckets: int) -> list[str]:
    """Keys in the order kmod's ``hash_new(buckets)`` table iterates them."""
    mask = align_power2(buckets) - 1
    encoded = [(superfast_hash(k.encode()) & mask, k.encode(), k) for k in keys]
    encoded.sort()
    return [k for _, _, k in encoded]
