"""Just enough DER (ASN.1 distinguished encoding) to read and write a
PKCS#7 module signature.

Module signatures are small and their shape is fixed (the kernel's
``scripts/sign-file`` writes them), so walking element headers by offset is
all we need: no tree of objects, no copies, which matters when ``modinfo``
reads every module of a kernel. The encoder below is the other half: each
function returns one complete element, so a message is written as nested
calls that read like its ASN.1 definition. A general ASN.1 library would be
a dependency for a hundred lines.
"""

from __future__ import annotations

from lkm.errors import FormatError

# Universal tags (class 0), with the constructed bit where it is always set.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30
SET = 0x31
CONTEXT_0 = 0xA0  # [0] EXPLICIT / IMPLICIT constructed
CONTEXT_0_PRIMITIVE = 0x80  # [0] IMPLICIT of a primitive type (an OCTET STRING)


def header(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``offset``.

    Raises FormatError when the element does not fit before ``end``.
    """
    if offset + 2 > end:
        raise FormatError("truncated DER element")
    length = data[offset + 1]
    pos = offset + 2
    if length > 0x7F:
        count = length - 0x80
        if pos + count > end:
            raise FormatError("truncated DER length")
        if count == 1:
            length = data[pos]
        elif count == 2:
            length = (data[pos] << 8) | data[pos + 1]
        elif 0 < count <= 4:
            length = int.from_bytes(data[pos : pos + count], "big")
        else:
            raise FormatError("bad DER length")
        pos += count
    if pos + length > end:
        raise FormatError("DER element extends beyond its container")
    return data[offset], pos, pos + length


def expect(data: bytes, offset: int, end: int, tag: int) -> tuple[int, int]:
    """Content bounds of the element at ``offset``, which must have ``tag``."""
    found, start, stop = header(data, offset, end)
    if found != tag:
        raise FormatError(f"expected DER tag 0x{tag:02x}, found 0x{found:02x}")
    return start, stop


def encode_oid(dotted: str) -> bytes:
    """Content bytes of an OBJECT IDENTIFIER (to compare without decoding)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def decode_oid(value: bytes) -> str:
    """Dotted form of OBJECT IDENTIFIER content bytes."""
    if not value or value[-1] & 0x80:
        raise FormatError("truncated OID")
    arcs: list[int] = []
    acc = 0
    for byte in value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


# -- encoding ---------------------------------------------------------------


def element(tag: int, content: bytes) -> bytes:
    """One element: tag, definite length in the fewest bytes, content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def sequence(*elements: bytes) -> bytes:
    return element(SEQUENCE, b"".join(elements))


def set_of(*elements: bytes) -> bytes:
    """A SET OF: DER orders the encoded elements as byte strings (X.690 11.6)."""
    return element(SET, b"".join(sorted(elements)))


def integer(value: int) -> bytes:
    """Two's complement in the fewest bytes (X.690 8.3.2)."""
    magnitude = value if value >= 0 else ~value
    size = (magnitude.bit_length() + 8) // 8  # room for the sign bit
    return element(INTEGER, value.to_bytes(size, "big", signed=True))


def oid(dotted: str) -> bytes:
    return element(OID, encode_oid(dotted))


def octet_string(content: bytes) -> bytes:
    return element(OCTET_STRING, content)


def null() -> bytes:
    return element(NULL, b"")
