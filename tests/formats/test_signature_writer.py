"""The PKCS#7 writer read back by lkm's signature reader (pure; the bytes
are checked against the kernel's sign-file in tests/workflows/test_sign.py)."""

from __future__ import annotations

import pytest

from lkm.formats import der
from lkm.formats.signature import read_signature
from lkm.formats.signature_writer import (
    HASH_OIDS,
    encode_signed_data,
    signature_algorithm,
    signature_trailer,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, -1, -128, -129, 2**159, -(2**64)])
def test_integers_are_minimal_twos_complement(value: int) -> None:
    encoded = der.integer(value)
    start, stop = der.expect(encoded, 0, len(encoded), der.INTEGER)
    content = encoded[start:stop]
    assert int.from_bytes(content, "big", signed=True) == value
    # No redundant leading byte (X.690 8.3.2).
    assert len(content) == 1 or (content[0], content[1] >> 7) not in ((0, 0), (0xFF, 1))


def test_long_lengths_and_sorted_sets() -> None:
    assert der.octet_string(b"x" * 300)[:4] == b"\x04\x82\x01\x2c"
    assert der.octet_string(b"x" * 127)[:2] == b"\x04\x7f"
    assert der.set_of(der.integer(2), der.integer(1)) == b"\x31\x06\x02\x01\x01\x02\x01\x02"


@pytest.mark.parametrize("hash_name", sorted(HASH_OIDS))
@pytest.mark.parametrize("serial", [1, 0x00FF00000000000000000001, -5])
def test_round_trip_through_the_reader(hash_name: str, serial: int) -> None:
    name = der.sequence(
        der.set_of(der.sequence(der.oid("2.5.4.10"), der.element(0x0C, b"org"))),
        der.set_of(der.sequence(der.oid("2.5.4.3"), der.element(0x0C, b"signer"))),
    )
    digest = bytes(range(256))
    pkcs7 = encode_signed_data(
        hash_name,
        der.sequence(name, der.integer(serial)),
        signature_algorithm("rsa", hash_name),
        digest,
        key_id=False,
    )
    module = b"\x7fELF module bytes"
    signature = read_signature(module + signature_trailer(pkcs7))
    assert signature is not None and signature.module_size == len(module)
    assert signature.id_type == "PKCS#7" and signature.signature == pkcs7
    assert signature.pkcs7 is not None
    assert signature.pkcs7.issuer_cn == b"signer"
    assert signature.pkcs7.serial == serial
    assert signature.pkcs7.digest_algorithm == hash_name
    assert signature.pkcs7.encrypted_digest == digest
