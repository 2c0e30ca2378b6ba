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
    texts = list(keys)
    # The bytes kmod hashes and compares: lkm's text is UTF-8 with
    # surrogate escapes for bytes that are not (a symbol or file name may
    # hold any byte but NUL).
    encoded = [k.encode("utf-8", "surrogateescape") for k in texts]
    slots = [value & mask for value in superfast_hashes(encoded)]
    return [k for _, _, k in sorted(zip(slots, encoded, texts, strict=True))]


# -- many keys at once ---------------------------------------------------------
#
# Hashing thousands of symbol names one by one is slow in Python. Keys of
# one length take the same steps, so they are hashed together: each key's
# 32-bit state sits in its own 64-bit lane of one big integer, and every
# step (add, xor, shift, mask) runs once for all lanes, in C. Lanes never
# spill into each other: values stay below 2**33 before a mask, left
# shifts move them by at most 25 bits, and what a right shift brings in
# from the next lane lands above bit 31, which the mask clears.

_LANE = 8  # bytes


def superfast_hashes(keys: list[bytes]) -> list[int]:
    """``[superfast_hash(k) for k in keys]``, computed by length groups."""
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    result = [0] * len(keys)
    for length, indexes in by_length.items():
        values = _hash_lanes([keys[i] for i in indexes], length)
        for index, value in zip(indexes, values, strict=True):
            result[index] = value
    return result


def _column(blob: bytes, length: int, count: int, *positions: int) -> int:
    """Lanes holding bytes ``positions`` of each key (little-endian)."""
    lanes = bytearray(count * _LANE)
    for shift, position in enumerate(positions):
        lanes[shift::_LANE] = blob[position::length]
    return int.from_bytes(lanes, "little")


def _hash_lanes(keys: list[bytes], length: int) -> list[int]:
    """superfast_hash of keys that all have ``length`` bytes."""
    count = len(keys)
    blob = b"".join(keys)
    ones = int.from_bytes(b"\1".ljust(_LANE, b"\0") * count, "little")
    mask = ones * _MASK

    def word(position: int) -> int:
        return _column(blob, length, count, position, position + 1)

    def signed(position: int, fill: int) -> int:
        """The byte at ``position`` as a signed char, shifted and sign-extended
        (``fill``: the high bits a negative value brings) to 32 bits."""
        chars = _column(blob, length, count, position)
        return chars + ((chars >> 7) & ones) * fill

    value = ones * length
    pos = 0
    for _ in range(length >> 2):
        value = (value + word(pos)) & mask
        tmp = ((word(pos + 2) << 11) ^ value) & mask
        value = ((value << 16) ^ tmp) & mask
        pos += 4
        value = (value + (value >> 11)) & mask
    rem = length & 3
    if rem == 3:
        value = (value + word(pos)) & mask
        value ^= (value << 16) & mask
        value ^= (signed(pos + 2, 0xFFFFFF00) << 18) & mask
        value = (value + (value >> 11)) & mask
    elif rem == 2:
        value = (value + word(pos)) & mask
        value ^= (value << 11) & mask
        value = (value + (value >> 17)) & mask
    elif rem == 1:
        value = (value + signed(pos, 0xFFFFFF00)) & mask
        value ^= (value << 10) & mask
        value = (value + (value >> 1)) & mask
    value ^= (value << 3) & mask
    value = (value + (value >> 5)) & mask
    value ^= (value << 4) & mask
    value = (value + (value >> 17)) & mask
    value ^= (value << 25) & mask
    value = (value + (value >> 6)) & mask
    lanes = value.to_bytes(count * _LANE, "little")
    return [int.from_bytes(lanes[i : i + 4], "little") for i in range(0, len(lanes), _LANE)]
