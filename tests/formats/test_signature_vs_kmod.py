"""Module signatures made with openssl in the kernel's format, read by lkm
and by kmod: every variant the PKCS#7 reader must get right.

The kernel's scripts/sign-file appends a DER PKCS#7 (CMS) message made
without certificates or attributes, a 12-byte info block and the magic.
``openssl cms`` makes the same message here; the variants cover issuer
names without a common name, every digest kmod names, EC keys, serial
numbers with a leading zero byte, signed attributes, a key identifier
instead of issuer and serial, garbage, and the legacy X.509 layout.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import command, kmod, lkm

from lkm.formats.module_file import open_module
from lkm.formats.signature import SIG_MAGIC, read_signature
from lkm.testing.debian_kernels import KernelFixture


def _unsigned_module(kernel: KernelFixture) -> bytes:
    path = next(p for p in kernel.modules() if p.name == "dummy.ko")
    data = path.read_bytes()
    signature = read_signature(data)
    assert signature is not None
    return data[: signature.module_size]


def _key_and_cert(tmp: Path, subject: str, key: str, serial: str) -> tuple[Path, Path]:
    key_path, cert_path = tmp / "key.pem", tmp / "cert.pem"
    algorithm = (
        ["-newkey", "rsa:2048"]
        if key == "rsa"
        else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    command(
        [
            "openssl",
            "req",
            "-x509",
            *algorithm,
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-set_serial",
            serial,
            "-keyout",
            str(key_path),
            "-out",
            str(cert_path),
        ],
        check=True,
    )
    return key_path, cert_path


def _pkcs7(tmp: Path, module: bytes, key: Path, cert: Path, digest: str, extra: list[str]) -> bytes:
    (tmp / "module").write_bytes(module)
    result = command(
        [
            "openssl",
            "cms",
            "-sign",
            "-binary",
            "-nosmimecap",
            "-nocerts",
            "-outform",
            "DER",
            "-md",
            digest,
            "-signer",
            str(cert),
            "-inkey",
            str(key),
            "-in",
            str(tmp / "module"),
            *extra,
        ],
        check=True,
    )
    return result.stdout


def _append(
    module: bytes,
    blob: bytes,
    id_type: int = 2,
    signer: bytes = b"",
    key_id: bytes = b"",
    algo: int = 0,
    hash_: int = 0,
) -> bytes:
    info = struct.pack(">BBBBB3xI", algo, hash_, id_type, len(signer), len(key_id), len(blob))
    return module + signer + key_id + blob + info + SIG_MAGIC


CASES = {
    "rsa-sha256": ("/CN=lkm test key", "rsa", "0x1234", "sha256", ["-noattr"]),
    "no-common-name": ("/O=lkm project/OU=modules", "rsa", "7", "sha256", ["-noattr"]),
    "cn-not-last": ("/CN=first/O=second", "rsa", "7", "sha256", ["-noattr"]),
    "sha1": ("/CN=sha1 key", "rsa", "1", "sha1", ["-noattr"]),
    "sha224": ("/CN=k", "rsa", "1", "sha224", ["-noattr"]),
    "sha384": ("/CN=k", "rsa", "1", "sha384", ["-noattr"]),
    "sha512": ("/CN=k", "rsa", "1", "sha512", ["-noattr"]),
    "ec-p256": ("/CN=ec key", "ec", "0x42", "sha256", ["-noattr"]),
    "serial-high-bit": ("/CN=k", "rsa", "0x80FF00FF00FF00FF00FF", "sha256", ["-noattr"]),
    "signed-attributes": ("/CN=attrs", "rsa", "5", "sha256", []),
    "key-identifier": ("/CN=keyid", "rsa", "5", "sha256", ["-noattr", "-keyid"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_openssl_signatures(kernel_61: KernelFixture, tmp_path: Path, case: str) -> None:
    subject, key_type, serial, digest, extra = CASES[case]
    module = _unsigned_module(kernel_61)
    key, cert = _key_and_cert(tmp_path, subject, key_type, serial)
    blob = _pkcs7(tmp_path, module, key, cert, digest, extra)
    target = tmp_path / "signed.ko"
    target.write_bytes(_append(module, blob))
    for options in ([], ["-F", "signer"], ["-F", "sig_key"], ["-F", "signature"]):
        assert lkm("modinfo", [*options, str(target)]) == kmod("modinfo", [*options, str(target)])
    with open_module(str(target)) as mod:
        signature = mod.signature
    assert signature is not None and signature.signature == blob
    assert signature.module_size == len(module)
    if case != "key-identifier":
        assert signature.pkcs7 is not None and signature.pkcs7.digest_algorithm == digest


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("garbage-pkcs7", lambda m: _append(m, b"\x30\x03\x02\x01\x01")),
        ("zero-length", lambda m: _append(m, b"")),
        (
            "lengths-beyond-file",
            lambda m: m + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, 1 << 30) + SIG_MAGIC,
        ),
        ("bad-id-type", lambda m: _append(m, b"xyz", id_type=3)),
        (
            "legacy-x509",
            lambda m: _append(
                m,
                b"\x01\x02\x03" * 100,
                id_type=1,
                signer=b"Old Signer",
                key_id=bytes(range(20)),
                algo=1,
                hash_=4,
            ),
        ),
        (
            "legacy-pgp-nul-in-signer",
            lambda m: _append(
                m, b"\xaa" * 8, id_type=0, signer=b"ab\0cd", key_id=b"\x01", algo=0, hash_=2
            ),
        ),
    ],
)
def test_unusual_trailers(kernel_61: KernelFixture, tmp_path: Path, name: str, build) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / f"{name}.ko"
    target.write_bytes(build(_unsigned_module(kernel_61)))
    assert lkm("modinfo", [str(target)]) == kmod("modinfo", [str(target)])
