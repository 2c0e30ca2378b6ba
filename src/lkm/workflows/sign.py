"""``lkm sign``: append a module signature, byte for byte as the kernel's
``scripts/sign-file`` does.

sign-file (with OpenSSL's CMS) hashes the whole input file, signs the
digest with the private key (RSA PKCS#1 v1.5, deterministic; or ECDSA),
and appends a detached PKCS#7 message naming the signer by the
certificate's issuer and serial number (``-k``: its subjectKeyIdentifier),
then ``struct module_signature`` and the magic. lkm does the same with
``cryptography`` for the key, the certificate and the signature primitive,
and :mod:`lkm.formats.signature_writer` for the bytes around it.

A module that is already signed is signed again as it is: like sign-file,
lkm hashes the whole file, old signature included, and appends a second
signature after the first. The kernel checks only the last signature
(``mod_verify_sig`` strips one trailer), which covers the module and the
old signature, so the result loads wherever the new key is trusted; kmod
shows the new signature. Stripping the old one instead would be tidier but
would make lkm's output differ from sign-file's, which kbuild and DKMS run
on the same files.

Deliberate differences from sign-file: lkm refuses input that is not an
ELF kernel module (sign-file signs any file), and compressed modules
(kbuild signs the ``.ko`` before compressing it, and the kernel checks the
signature of the decompressed module, so a signature appended to a
``.ko.xz`` would never be seen); the output replaces its target by
a rename (sign-file writes the destination in place when it is not the
input), keeping the permission bits of the file it replaces (less the umask).
"""

from __future__ import annotations

import os
import stat

from lkm.errors import FormatError, LkmError, one_line
from lkm.formats import compression
from lkm.formats.compression import Compression
from lkm.formats.elf import ElfFile
from lkm.formats.signature_writer import (
    ECDSA_OIDS,
    SIGNING_HASHES,
    encode_signed_data,
    issuer_and_serial,
    signature_algorithm,
    signature_trailer,
)
from lkm.records import Record
from lkm.system.atomic import replace_file
from lkm.system.files import BINARY, KEY, FilePolicy, read_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
    from cryptography.hazmat.primitives.hashes import HashAlgorithm
    from cryptography.x509 import Certificate

DEFAULT_HASH = "sha256"
# sign-file's passphrase for an encrypted key (and its PKCS#11 PIN).
PASSPHRASE_VARIABLE = "KBUILD_SIGN_PIN"
# The section every kernel module has (the kernel refuses an object
# without it: "No module found in object").
_MODULE_SECTION = ".gnu.linkonce.this_module"


class SignError(LkmError, ValueError):
    """A key, certificate, module or hash lkm cannot sign with; one line."""


class Signer(Record):
    """A private key and the certificate that names it, checked to match.

    ``key_name`` and ``cert_name`` (usually the files they came from) are
    what error messages call them.
    """

    key: PrivateKeyTypes  # RSA or EC: checked
    certificate: Certificate
    key_name: str = "key"
    cert_name: str = "certificate"

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SignError(
                f"{self.key_name}: a {type(self.key).__name__} cannot sign modules "
                "(the kernel checks RSA and ECDSA signatures)"
            )
        spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        try:
            certified = self.certificate.public_key().public_bytes(*spki)
        except ValueError as exc:  # a public key cryptography cannot parse
            raise SignError(f"{self.cert_name}: {one_line(str(exc))}") from None
        if certified != self.key.public_key().public_bytes(*spki):
            raise SignError(
                f"{self.cert_name}: the certificate is not for the key in {self.key_name}"
            )

    @property
    def key_type(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import rsa

        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ecdsa"

    def signer_id(self, key_id: bool) -> bytes:
        """IssuerAndSerialNumber, or the subjectKeyIdentifier (``key_id``)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        if not key_id:
            return issuer_and_serial(self.certificate.public_bytes(Encoding.DER))
        try:
            extension = self.certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            )
        except x509.ExtensionNotFound:
            raise SignError(
                f"{self.cert_name}: the certificate has no subjectKeyIdentifier, "
                "which --keyid names the signer by"
            ) from None
        except ValueError as exc:
            raise SignError(f"{self.cert_name}: {one_line(str(exc))}") from None
        return extension.value.digest


def hash_algorithm(name: str) -> HashAlgorithm:
    """cryptography's algorithm for a digest name as sign-file takes it
    (case does not matter, as for OpenSSL's EVP_get_digestbyname)."""
    from cryptography.hazmat.primitives import hashes

    algorithms: dict[str, type[HashAlgorithm]] = {
        "sha1": hashes.SHA1,
        "sha224": hashes.SHA224,
        "sha256": hashes.SHA256,
        "sha384": hashes.SHA384,
        "sha512": hashes.SHA512,
        "sha3-224": hashes.SHA3_224,
        "sha3-256": hashes.SHA3_256,
        "sha3-384": hashes.SHA3_384,
        "sha3-512": hashes.SHA3_512,
    }
    algorithm = algorithms.get(name.lower())
    if algorithm is None:
        raise SignError(
            f"hash algorithm '{one_line(name)}' is not one the kernel signs modules with "
            f"({', '.join(SIGNING_HASHES)})"
        )
    return algorithm()


def check_module(data: bytes) -> None:
    """Raise FormatError unless ``data`` is an uncompressed ELF kernel module."""
    kind = compression.detect(data[: compression.MAGIC_PROBE_SIZE])
    if kind is not Compression.NONE:
        raise FormatError(
            f"{kind.value}-compressed module: sign the .ko, then compress it "
            "(as kbuild does: the kernel checks the signature of the decompressed module)"
        )
    elf = ElfFile(data)
    if elf.find_section(_MODULE_SECTION) is None:
        raise FormatError(f"not a kernel module (no {_MODULE_SECTION} section)")


def sign_module(
    data: bytes, signer: Signer, hash_name: str = DEFAULT_HASH, *, key_id: bool = False
) -> bytes:
    """``data`` with a signature appended: what ``sign-file [-k] HASH KEY
    CERT`` writes for it. ``data`` may be signed already (see the module
    docstring)."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    algorithm = hash_algorithm(hash_name)
    if signer.key_type == "ecdsa" and algorithm.name not in ECDSA_OIDS:
        raise SignError(
            f"{signer.key_name}: an ECDSA key signs with {', '.join(ECDSA_OIDS)} "
            f"(as sign-file does), not {algorithm.name}"
        )
    check_module(data)
    sid = signer.signer_id(key_id)
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # Signer checked
        signature = key.sign(data, ec.ECDSA(algorithm))
    pkcs7 = encode_signed_data(
        algorithm.name,
        sid,
        signature_algorithm(signer.key_type, algorithm.name),
        signature,
        key_id=key_id,
    )
    return data + signature_trailer(pkcs7)


def load_signer(key_path: str, cert_path: str) -> Signer:
    """The key (PEM, PKCS#1 or PKCS#8, encrypted with ``$KBUILD_SIGN_PIN``)
    and the certificate (PEM or DER, told apart as sign-file does)."""
    return Signer(load_private_key(key_path), load_certificate(cert_path), key_path, cert_path)


def load_private_key(path: str) -> PrivateKeyTypes:
    """A PEM private key; encrypted ones are opened with ``$KBUILD_SIGN_PIN``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, KEY)
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    try:
        return load_pem_private_key(data, None)
    except TypeError:  # encrypted
        if passphrase is None:
            problem = f"the key is encrypted: put its passphrase in ${PASSPHRASE_VARIABLE}"
            raise SignError(f"{path}: {problem}") from None
    except UnsupportedAlgorithm:
        raise SignError(f"{path}: a key of a type lkm cannot sign with") from None
    except ValueError:
        if b" PRIVATE KEY-----" not in data:
            raise SignError(f"{path}: no PEM private key in the file") from None
        raise SignError(f"{path}: cannot read the private key") from None
    try:
        return load_pem_private_key(data, passphrase.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SignError(f"{path}: cannot decrypt the key with ${PASSPHRASE_VARIABLE}") from None


def load_certificate(path: str) -> Certificate:
    from cryptography import x509

    data = _read(path, KEY)
    # sign-file's test: a SEQUENCE with a long-form length is DER, else PEM.
    is_der = len(data) >= 2 and data[0] == 0x30 and 0x81 <= data[1] <= 0x84
    try:
        if is_der:
            return x509.load_der_x509_certificate(data)
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        kind = "DER" if is_der else "PEM"
        raise SignError(f"{path}: no {kind} X.509 certificate in the file") from None


def sign_file(
    path: str,
    signer: Signer,
    hash_name: str = DEFAULT_HASH,
    output: str | None = None,
    *,
    key_id: bool = False,
) -> str:
    """Sign the module at ``path`` into ``output`` (default: in place),
    through a temporary file and a rename. Returns the path written."""
    # A module is a regular file (sign-file would read a device or a FIFO
    # for ever); its size is bounded as a decompressed module's is.
    data = _read(path, BINARY)
    try:
        signed = sign_module(data, signer, hash_name, key_id=key_id)
    except FormatError as exc:
        raise SignError(f"{path}: {exc}") from None
    target = output if output is not None else path
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666  # less the umask, as sign-file creates it
    try:
        replace_file(target, signed, f".{os.getpid()}.~signed~", mode)
    except OSError as exc:
        raise SignError(f"{target}: {exc.strerror or exc}") from None
    return target


def _read(path: str, policy: FilePolicy) -> bytes:
    try:
        return read_file(path, policy)
    except OSError as exc:
        raise SignError(f"{path}: {exc.strerror or exc}") from None
