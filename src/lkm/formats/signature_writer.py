"""Writing a module signature: the PKCS#7 message and the trailer after it.

The reader is :mod:`lkm.formats.signature`. What is written here is what
the kernel's ``scripts/sign-file`` writes with OpenSSL's CMS code and its
default flags (``CMS_NOCERTS | CMS_NOATTR | CMS_DETACHED | CMS_BINARY``)::

    ContentInfo { signedData, [0] SignedData {
        version 1 (3 with a key identifier),
        digestAlgorithms { { HASH } },           parameters absent
        encapContentInfo { data },               detached: no content
        signerInfos { SignerInfo {
            version 1 (3),
            sid: issuerAndSerialNumber, or [0] subjectKeyIdentifier (-k),
            digestAlgorithm { HASH },
            signatureAlgorithm { rsaEncryption, NULL } or { ecdsa-with-HASH },
            signature OCTET STRING } } } }

no certificates, no signed attributes, so the signature is over the
module's digest itself. Everything is definite-length DER, the encoding
OpenSSL's ``i2d_CMS_bio_stream`` produces when no content is streamed.
Pure: bytes in, bytes out; the signature value comes from the caller.
"""

from __future__ import annotations

import struct

from lkm.errors import FormatError
from lkm.formats import der
from lkm.formats.signature import DIGEST_OIDS, PKEY_ID_PKCS7, SIG_MAGIC

# The digests the kernel can be configured to sign modules with
# (CONFIG_MODULE_SIG_SHA1 … SHA512, SHA3_256 … SHA3_512 since 6.7; sha3-224
# for completeness), named as sign-file takes them, and their OIDs.
SIGNING_HASHES = (
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sha3-224",
    "sha3-256",
    "sha3-384",
    "sha3-512",
)
HASH_OIDS = {name: oid for oid, name in DIGEST_OIDS.items() if name in SIGNING_HASHES}
# ECDSA names the digest in the signature algorithm (RFC 5758); RSA says
# rsaEncryption whatever the digest, as OpenSSL's CMS does. OpenSSL 3.0's
# CMS has no ECDSA with SHA-3, so sign-file makes none and neither does lkm.
ECDSA_OIDS = {
    "sha1": "1.2.840.10045.4.1",
    "sha224": "1.2.840.10045.4.3.1",
    "sha256": "1.2.840.10045.4.3.2",
    "sha384": "1.2.840.10045.4.3.3",
    "sha512": "1.2.840.10045.4.3.4",
}
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def signature_algorithm(key_type: str, hash_name: str) -> bytes:
    """The SignerInfo's signatureAlgorithm for an ``"rsa"`` or ``"ecdsa"`` key."""
    if key_type == "rsa":
        return der.sequence(der.oid(_OID_RSA_ENCRYPTION), der.null())
    if key_type == "ecdsa":
        return der.sequence(der.oid(ECDSA_OIDS[hash_name]))
    raise ValueError(f"unknown key type {key_type!r}")


def issuer_and_serial(certificate: bytes) -> bytes:
    """The ``IssuerAndSerialNumber`` of a DER X.509 certificate.

    Copies the issuer name and serial as encoded in the certificate, as
    OpenSSL does (it keeps a parsed name's original encoding).
    """
    end = len(certificate)
    start, stop = der.expect(certificate, 0, end, der.SEQUENCE)  # Certificate
    pos, stop = der.expect(certificate, start, stop, der.SEQUENCE)  # TBSCertificate
    tag, _start, after = der.header(certificate, pos, stop)
    if tag == der.CONTEXT_0:  # version
        pos = after
    _start, serial_end = der.expect(certificate, pos, stop, der.INTEGER)
    serial = certificate[pos:serial_end]
    _start, algorithm_end = der.expect(certificate, serial_end, stop, der.SEQUENCE)
    _start, issuer_end = der.expect(certificate, algorithm_end, stop, der.SEQUENCE)
    return der.sequence(certificate[algorithm_end:issuer_end], serial)


def encode_signed_data(
    hash_name: str, signer: bytes, algorithm: bytes, signature: bytes, *, key_id: bool
) -> bytes:
    """A detached PKCS#7 SignedData with one signer and nothing else.

    ``signer`` is an encoded IssuerAndSerialNumber (``key_id`` False) or the
    subjectKeyIdentifier's bytes (``key_id`` True); ``algorithm`` comes from
    :func:`signature_algorithm`. CMS (RFC 5652 5.1, 5.3) makes both
    versions 3 when the signer is named by key identifier.
    """
    if hash_name not in HASH_OIDS:
        raise FormatError(f"unknown digest algorithm {hash_name!r}")
    version = der.integer(3 if key_id else 1)
    digest = der.sequence(der.oid(HASH_OIDS[hash_name]))
    sid = der.element(der.CONTEXT_0_PRIMITIVE, signer) if key_id else signer
    signer_info = der.sequence(version, sid, digest, algorithm, der.octet_string(signature))
    signed_data = der.sequence(
        version, der.set_of(digest), der.sequence(der.oid(_OID_DATA)), der.set_of(signer_info)
    )
    return der.sequence(der.oid(_OID_SIGNED_DATA), der.element(der.CONTEXT_0, signed_data))


def signature_trailer(pkcs7: bytes) -> bytes:
    """What follows the module: the message, ``struct module_signature``, the magic.

    sign-file leaves every info field but ``id_type`` and ``sig_len`` zero
    (the algorithms are named inside the PKCS#7 message).
    """
    info = struct.pack(">BBBBB3xI", 0, 0, PKEY_ID_PKCS7, 0, 0, len(pkcs7))
    return pkcs7 + info + SIG_MAGIC
