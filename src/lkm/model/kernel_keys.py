"""The key a Debian kernel signs its own modules with, from its image.

The kernel's build key is in vmlinux only (``system_certificate_list``);
Debian's image is a bzImage whose payload is vmlinux. The certificate is
found by its issuer's common name and serial number (what a module's
PKCS#7 signature names), so the list's layout does not matter. Used by
``lkm check`` to tell a module signed by the kernel's key from one whose
contents changed since (the kernel refuses that even when signatures are
not enforced).

Finding it means decompressing the whole image (1.6 s here, 11 s in a
TCG guest), so a certificate found is kept in lkm's cache under the
image's path, size and modification time (a hit reads no byte of the
image, which a guest would read over the share): the next ``lkm check``
or ``insmod -v`` of that kernel reads 2 KiB instead (a guest reads what
its host found, over the share).
"""

from __future__ import annotations

from lkm.errors import FormatError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import os

    from lkm.formats.signature import Pkcs7Signer

_SEQUENCE_LONG = b"\x30\x82"  # a DER SEQUENCE with a two-byte length: every X.509 certificate here
_SEARCH_BACK = 4096  # bytes before the issuer's name where its certificate may start


def signing_certificate(image: str, issuer_cn: bytes | None, serial: int) -> bytes | None:
    """The DER certificate in the kernel image ``image`` (a bzImage or a
    vmlinux) whose issuer's common name and serial are these; None when
    there is none (or the image cannot be read)."""
    if not issuer_cn:
        return None
    import os

    from lkm.system.files import BINARY, read_file

    try:
        cached = _cache_file(image, os.stat(image), issuer_cn, serial)
        with open(cached, "rb") as f:
            return f.read()
    except OSError:
        pass
    try:
        file = read_file(image, BINARY)
    except OSError:
        return None
    found = _in_image(file, issuer_cn, serial)
    if found is not None:
        _remember(cached, found)
    return found


def _cache_file(image: str, st: os.stat_result, issuer_cn: bytes, serial: int) -> str:
    """Where the certificate of this key in this image is kept."""
    import hashlib
    import os

    from lkm.system.paths import KERNEL_KEYS, cache_path

    identity = f"{os.path.realpath(image)}\0{st.st_size}\0{st.st_mtime_ns}\0{serial}\0"
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape") + issuer_cn)
    return cache_path(KERNEL_KEYS, digest.hexdigest()[:32] + ".der")


def _remember(path: str, certificate: bytes) -> None:
    """Keep ``certificate`` at ``path`` when the cache can be written (a
    guest's view of its host's cache cannot: it reads it only)."""
    import contextlib
    import os

    from lkm.system.atomic import replace_file
    from lkm.system.paths import make_cache_dir

    directory = os.path.dirname(path)
    if make_cache_dir(directory):
        with contextlib.suppress(OSError):
            replace_file(path, certificate, f".{os.getpid()}")
            _keep_newest(directory, CACHED_CERTIFICATES)


# Certificates kept: one per kernel image (and key) checked; the oldest go
# first, so the cache stays a few dozen KiB however many kernels come and go.
CACHED_CERTIFICATES = 64


def _keep_newest(directory: str, count: int) -> None:
    """Remove all but the ``count`` newest certificates in ``directory``."""
    import contextlib
    import os

    entries = [e for e in os.scandir(directory) if e.name.endswith(".der")]
    if len(entries) <= count:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
    for entry in entries[count:]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def _in_image(image: bytes, issuer_cn: bytes, serial: int) -> bytes | None:
    data = _vmlinux(image)
    if data is None:
        return None
    from cryptography import x509

    at = data.find(issuer_cn)
    while at >= 0:
        for start in _starts_before(data, at):
            length = 4 + int.from_bytes(data[start + 2 : start + 4], "big")
            try:
                certificate = x509.load_der_x509_certificate(data[start : start + length])
            except ValueError:
                continue
            if certificate.serial_number == serial:
                return data[start : start + length]
        at = data.find(issuer_cn, at + 1)
    return None


def _starts_before(data: bytes, at: int) -> list[int]:
    """Where a certificate holding the byte at ``at`` could start, nearest first."""
    starts = []
    position = data.rfind(_SEQUENCE_LONG, max(0, at - _SEARCH_BACK), at)
    while position >= 0:
        starts.append(position)
        position = data.rfind(_SEQUENCE_LONG, max(0, at - _SEARCH_BACK), position)
    return starts


def _vmlinux(data: bytes) -> bytes | None:
    from lkm.formats.bzimage import is_bzimage, vmlinux

    if not is_bzimage(data[:4096]):
        return data
    try:
        return vmlinux(data)
    except FormatError:
        return None


def signature_matches(certificate: bytes, signer: Pkcs7Signer, content: bytes) -> bool | None:
    """Whether ``signer``'s signature over ``content`` is the
    certificate's key's (None: a key or digest this cannot check)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    digests: dict[str, hashes.HashAlgorithm] = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }
    digest = digests.get(signer.digest_algorithm)
    key = x509.load_der_x509_certificate(certificate).public_key()
    if digest is None:
        return None
    try:
        # Debian's 6.1 signs with RSA (PKCS#1 v1.5), 6.12 with ECDSA.
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signer.encrypted_digest, content, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signer.encrypted_digest, content, ec.ECDSA(digest))
        else:
            return None
    except InvalidSignature:
        return False
    return True
