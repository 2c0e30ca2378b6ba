"""``lkm keygen``: a private key and a self-signed certificate for signing
modules.

The certificate carries what the kernel's ``certs/default_x509.genkey``
asks for (``basicConstraints=critical,CA:FALSE``, ``keyUsage=
digitalSignature``, subject and authority key identifiers) plus
``extendedKeyUsage=codeSigning``, which the kernel accepts (it ignores
extended key usage) and UEFI shim's MOK list expects of a key that signs
code. The key is RSA-2048 and the validity 100 years, as DKMS's
``generate_mok`` makes them (``openssl req -x509 -newkey rsa:2048 -days
36500``). Enrol the certificate (``--der`` writes what ``mokutil
--import`` takes) or build it into a kernel's trusted keys, then sign with
``lkm sign --key KEY --cert CERT``.
"""

from __future__ import annotations

import datetime
import os

from lkm.errors import LkmError
from lkm.records import Record
from lkm.system.atomic import replace_file

DEFAULT_KEY = "signing_key.pem"
DEFAULT_CERT = "signing_key.x509"
DEFAULT_CN = "lkm module signing key"
DEFAULT_DAYS = 36500
KEY_BITS = 2048


class KeygenError(LkmError):
    """A key pair that cannot be written; the message names the file."""


class KeyPair(Record):
    key_pem: bytes  # PKCS#8, unencrypted
    certificate: bytes  # PEM, or DER when asked for


# X.509's upper bound for a commonName (RFC 5280, ub-common-name).
MAX_CN_LENGTH = 64
# A certificate's validity ends in a four-digit year (RFC 5280 GeneralizedTime).
LAST_DATE = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def _check_request(common_name: str, days: int, now: datetime.datetime) -> None:
    """The common name and validity a certificate can carry, or one line why not."""
    if not common_name:
        raise KeygenError("--cn: the common name must not be empty")
    try:
        common_name.encode("utf-8")
    except UnicodeEncodeError:
        raw = common_name.encode("utf-8", "surrogateescape")
        raise KeygenError(f"--cn: the common name must be UTF-8 text, not {raw!r}") from None
    if len(common_name) > MAX_CN_LENGTH:
        raise KeygenError(
            f"--cn: a common name has at most {MAX_CN_LENGTH} characters, not {len(common_name)}"
        )
    most = (LAST_DATE - now).days
    if not 1 <= days <= most:
        raise KeygenError(f"--days must be from 1 to {most} (the year 9999), not {days}")


def generate(common_name: str = DEFAULT_CN, days: int = DEFAULT_DAYS, der: bool = False) -> KeyPair:
    """A new RSA key and its self-signed module-signing certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    _check_request(common_name, days, now)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate.public_bytes(encoding),
    )


def write_key_pair(
    key_path: str = DEFAULT_KEY,
    cert_path: str = DEFAULT_CERT,
    common_name: str = DEFAULT_CN,
    days: int = DEFAULT_DAYS,
    *,
    der: bool = False,
    force: bool = False,
) -> KeyPair:
    """Generate and write the key (mode 0600) and the certificate (0644),
    each through a temporary file and a rename. Existing files are left
    alone, and nothing written, unless ``force``."""
    if os.path.abspath(key_path) == os.path.abspath(cert_path):
        raise KeygenError(f"{key_path}: the key and the certificate need two different files")
    for path in (key_path, cert_path):
        if not force and os.path.lexists(path):
            raise KeygenError(f"{path}: already exists (--force replaces it)")
        # Checked before writing either file, so that neither is written.
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise KeygenError(f"{path}: no directory {directory}")
        if not os.access(directory, os.W_OK):
            raise KeygenError(f"{path}: cannot write in {directory}")
    pair = generate(common_name, days, der)
    for path, data, mode in ((key_path, pair.key_pem, 0o600), (cert_path, pair.certificate, 0o644)):
        try:
            replace_file(path, data, f".{os.getpid()}.tmp", mode)
        except OSError as exc:
            raise KeygenError(f"{path}: {exc.strerror or exc}") from None
    return pair
