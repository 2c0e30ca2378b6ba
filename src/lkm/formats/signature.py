"""The module signature trailer and the PKCS#7 message inside it.

A signed module (kernel ``scripts/sign-file``, ``module_signature.h``) is::

    [ module ][ signer ][ key id ][ signature ][ struct module_signature ]
    [ "~Module signature appended~\\n" ]

``struct module_signature`` is 12 bytes: algo, hash, id_type, signer_len,
key_id_len (one byte each), 3 pad bytes, and sig_len (big-endian u32). For
``id_type`` PKCS#7 (everything since Linux 4.3) signer and key id are empty
and the fields kmod shows come from the PKCS#7 SignerInfo: the issuer's
common name, the serial number, the digest algorithm and the encrypted
digest. Validity checks mirror kmod's libkmod-signature.c, so lkm reports a
signature exactly when kmod does.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from lkm.errors import FormatError
from lkm.formats import der
from lkm.formats.elf import ElfSource
from lkm.records import Record

SIG_MAGIC = b"~Module signature appended~\n"
SIG_INFO_SIZE = 12
# struct module_signature: algo, hash, id_type, signer_len, key_id_len,
# 3 pad bytes, sig_len (big-endian).
_SIG_INFO = struct.Struct(">BBBBB3xI")
_TRAILER_SIZE = SIG_INFO_SIZE + len(SIG_MAGIC)

# Tables from the kernel's (3.7-era) crypto headers, as kmod keeps them.
PKEY_ALGOS = ("DSA", "RSA")
PKEY_HASH_ALGOS = (
    "md4",
    "md5",
    "sha1",
    "rmd160",
    "sha256",
    "sha384",
    "sha512",
    "sha224",
    "sm3",
)
PKEY_ID_TYPES = ("PGP", "X509", "PKCS#7")
PKEY_ID_PKCS7 = 2

# Digest OID -> the name kmod shows. kmod 30 knows the first nine and shows
# no signature at all for another digest; kmod >= 32 prints OpenSSL's name
# for any digest (OBJ_obj2txt), which lkm follows for SHA-3 (kernels >= 6.7
# sign with it) and, for digests it does not know, with the dotted OID.
DIGEST_OIDS = {
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "1.3.36.3.2.1": "rmd160",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "1.2.156.10197.1.401": "sm3",
    "2.16.840.1.101.3.4.2.7": "sha3-224",
    "2.16.840.1.101.3.4.2.8": "sha3-256",
    "2.16.840.1.101.3.4.2.9": "sha3-384",
    "2.16.840.1.101.3.4.2.10": "sha3-512",
}
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_COMMON_NAME = "2.5.4.3"


class Pkcs7Signer(Record):
    """The first SignerInfo of a PKCS#7 SignedData message."""

    issuer_cn: bytes | None  # commonName of the issuer, as kmod picks it
    serial: int
    digest_algorithm: str  # "sha256", … or the dotted OID when unknown
    encrypted_digest: bytes

    @property
    def serial_bytes(self) -> bytes:
        """Serial number magnitude, big-endian, no leading zeros (OpenSSL BN_bn2bin)."""
        return _serial_bytes(self.serial)


class ModuleSignature(Record):
    """An appended module signature."""

    module_size: int  # bytes of module before the signature
    algo: str  # from the info block ("RSA" for PKCS#7: unused there)
    hash_algo: str
    id_type: str
    signer: bytes
    key_id: bytes
    signature: bytes  # the PKCS#7 DER blob for id_type PKCS#7
    pkcs7: Pkcs7Signer | None  # None unless id_type is PKCS#7 and it parses

    def kmod_fields(self) -> list[tuple[str, bytes | str]]:
        """The signature entries kmod appends to the module info.

        Values are raw bytes where kmod prints them as hex (sig_key,
        signature). Empty when kmod would show nothing (an unparsable
        PKCS#7 message).
        """
        if self.id_type == PKEY_ID_TYPES[PKEY_ID_PKCS7]:
            pkcs7 = self.pkcs7
            if pkcs7 is None:
                return []
            key = _pkcs7_key_fields(pkcs7.issuer_cn, pkcs7.serial, pkcs7.digest_algorithm)
            return [*key, ("signature", pkcs7.encrypted_digest)]
        return [
            ("sig_id", self.id_type),
            ("signer", _cstr(self.signer)),
            ("sig_key", self.key_id),
            ("sig_hashalgo", self.hash_algo),
            ("signature", self.signature),
        ]


@lru_cache(maxsize=16)
def _pkcs7_key_fields(
    issuer_cn: bytes | None, serial: int, digest_algorithm: str
) -> tuple[tuple[str, bytes | str], ...]:
    """kmod's entries for a PKCS#7 signer's key, made once per key: the
    modules of a kernel share one, and modinfo reads thousands."""
    return (
        ("sig_id", PKEY_ID_TYPES[PKEY_ID_PKCS7]),
        ("signer", _cstr(issuer_cn) if issuer_cn is not None else ""),
        ("sig_key", _serial_bytes(serial)),
        ("sig_hashalgo", digest_algorithm),
    )


def _serial_bytes(serial: int) -> bytes:
    magnitude = abs(serial)
    return magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")


def _cstr(raw: bytes) -> str:
    """kmod prints these with %s: a NUL ends the string."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def read_signature(data: ElfSource) -> ModuleSignature | None:
    """The signature appended to a module image, or None if it has none.

    An info block with out-of-range tables, a zero signature length or
    lengths larger than the file count as "no signature", as in kmod.
    """
    size = len(data)
    # The info block and the magic in one slice: each slice of a module
    # read by position is a call into Python (modinfo reads thousands).
    if size < _TRAILER_SIZE:
        return None
    end = size - _TRAILER_SIZE
    trailer = data[end:size]
    if trailer[SIG_INFO_SIZE:] != SIG_MAGIC:
        return None
    algo, hash_, id_type, signer_len, key_id_len, sig_len = _SIG_INFO.unpack_from(trailer)
    if algo >= len(PKEY_ALGOS) or hash_ >= len(PKEY_HASH_ALGOS) or id_type >= len(PKEY_ID_TYPES):
        return None
    if sig_len == 0 or end < signer_len + key_id_len + sig_len:
        return None
    sig_start = end - sig_len
    key_start = sig_start - key_id_len
    signer_start = key_start - signer_len
    blob = data[sig_start:end]
    pkcs7 = None
    if id_type == PKEY_ID_PKCS7:
        try:
            pkcs7 = parse_pkcs7(blob)
        except FormatError:
            pkcs7 = None
        # The PKCS#7 layout has no separate signer or key id fields.
        signer_start = key_start = sig_start
    return ModuleSignature(
        signer_start,  # module_size
        PKEY_ALGOS[algo],
        PKEY_HASH_ALGOS[hash_],
        PKEY_ID_TYPES[id_type],
        data[signer_start:key_start] if signer_start < key_start else b"",  # signer
        data[key_start:sig_start] if key_start < sig_start else b"",  # key_id
        blob,
        pkcs7,
    )


class _Layout(Record):
    """A parsed message's shape: everything before the encrypted digest,
    where the digest lies, and what the parse found there."""

    prefix: bytes
    size: int
    digest_start: int
    digest_stop: int
    signer: Pkcs7Signer


# The last message parsed. Every module of a kernel is signed by one key,
# so their messages differ only in the digest's bytes: a message of the
# same size whose bytes up to the digest are the same parses the same way
# (the walk reads nothing but the headers before the digest, and their
# bounds come from those bytes and the size), so only the digest is new.
_last_layout: list[_Layout] = []


def parse_pkcs7(blob: bytes) -> Pkcs7Signer:
    """First SignerInfo of a DER PKCS#7 ``SignedData`` (RFC 2315).

    Walks offsets instead of building a tree: this runs once per module
    when modinfo reads a whole kernel's modules; a message shaped like the
    last one is not walked again.
    """
    for known in _last_layout:
        if len(blob) == known.size and blob.startswith(known.prefix):
            same = known.signer
            digest = blob[known.digest_start : known.digest_stop]
            return Pkcs7Signer(same.issuer_cn, same.serial, same.digest_algorithm, digest)
    layout = _parse_pkcs7(blob)
    _last_layout[:] = [layout]
    return layout.signer


def _parse_pkcs7(blob: bytes) -> _Layout:
    end = len(blob)
    start, stop = der.expect(blob, 0, end, der.SEQUENCE)  # ContentInfo
    oid_start, oid_stop = der.expect(blob, start, stop, der.OID)
    if blob[oid_start:oid_stop] != _DER_SIGNED_DATA:
        raise FormatError("PKCS#7 message is not SignedData")
    start, stop = der.expect(blob, oid_stop, stop, der.CONTEXT_0)
    start, stop = der.expect(blob, start, stop, der.SEQUENCE)  # SignedData
    # version, digestAlgorithms, contentInfo, [0] certificates?, [1] crls?,
    # signerInfos: the signer infos are the last element.
    last = None
    pos = start
    while pos < stop:
        tag, _content, after = der.header(blob, pos, stop)
        last = (tag, pos)
        pos = after
    if last is None or last[0] != der.SET:
        raise FormatError("PKCS#7 SignedData has no signer infos")
    start, stop = der.expect(blob, last[1], stop, der.SET)
    if start == stop:
        raise FormatError("PKCS#7 message has no signer")
    start, stop = der.expect(blob, start, stop, der.SEQUENCE)  # SignerInfo
    return _parse_signer_info(blob, start, stop)


def _parse_signer_info(blob: bytes, start: int, stop: int) -> _Layout:
    _tag, _c, identity_start = der.header(blob, start, stop)  # version
    _s, ias_stop = der.expect(blob, identity_start, stop, der.SEQUENCE)
    _s, identity_stop = der.expect(blob, ias_stop, stop, der.SEQUENCE)  # digestAlgorithm
    pos = identity_stop
    tag, _c, after = der.header(blob, pos, stop)
    if tag == der.CONTEXT_0:  # authenticatedAttributes
        pos = after
    _s, pos = der.expect(blob, pos, stop, der.SEQUENCE)  # digestEncryptionAlgorithm
    digest_start, digest_stop = der.expect(blob, pos, stop, der.OCTET_STRING)
    issuer_cn, serial, digest = _signer_identity(blob[identity_start:identity_stop])
    signer = Pkcs7Signer(issuer_cn, serial, digest, blob[digest_start:digest_stop])
    return _Layout(blob[:digest_start], len(blob), digest_start, digest_stop, signer)


@lru_cache(maxsize=64)
def _signer_identity(raw: bytes) -> tuple[bytes | None, int, str]:
    """Issuer common name, serial and digest algorithm of a SignerInfo.

    ``raw`` is the issuerAndSerialNumber and digestAlgorithm elements. All
    modules of a kernel are signed with one key, so this is parsed once per
    key, not once per module.
    """
    end = len(raw)
    ias_start, ias_stop = der.expect(raw, 0, end, der.SEQUENCE)
    name_start, name_stop = der.expect(raw, ias_start, ias_stop, der.SEQUENCE)
    serial_start, serial_stop = der.expect(raw, name_stop, ias_stop, der.INTEGER)
    alg_start, alg_stop = der.expect(raw, ias_stop, end, der.SEQUENCE)
    oid_start, oid_stop = der.expect(raw, alg_start, alg_stop, der.OID)
    raw_oid = raw[oid_start:oid_stop]
    return (
        _issuer_common_name(raw, name_start, name_stop),
        int.from_bytes(raw[serial_start:serial_stop], "big", signed=True),
        _DER_DIGESTS.get(raw_oid) or der.decode_oid(raw_oid),
    )


def _issuer_common_name(blob: bytes, start: int, stop: int) -> bytes | None:
    """The commonName, or (as kmod's loop leaves it) the last attribute."""
    last: bytes | None = None
    pos = start
    while pos < stop:
        set_start, set_stop = der.expect(blob, pos, stop, der.SET)  # one RDN
        pos = set_stop
        inner = set_start
        while inner < set_stop:
            attr_start, attr_stop = der.expect(blob, inner, set_stop, der.SEQUENCE)
            inner = attr_stop
            oid_start, oid_stop = der.expect(blob, attr_start, attr_stop, der.OID)
            _tag, value_start, value_stop = der.header(blob, oid_stop, attr_stop)
            last = blob[value_start:value_stop]
            if blob[oid_start:oid_stop] == _DER_COMMON_NAME:
                return last
    return last


_DER_SIGNED_DATA = der.encode_oid(_OID_SIGNED_DATA)
_DER_COMMON_NAME = der.encode_oid(_OID_COMMON_NAME)
_DER_DIGESTS = {der.encode_oid(oid): name for oid, name in DIGEST_OIDS.items()}
