"""Will the kernel accept modules signed with DKMS's key? Said by
``lkm dkms status`` before a load fails with "Key was rejected by service".

A kernel verifies a module's signature against the keys in its system
keyrings: built in, and the machine owner's keys (MOK) that shim passed
on at boot. Each asymmetric key there is described ``SUBJECT: KEYID``
(the certificate's subjectKeyIdentifier in hex, else its serial), so for
the running kernel lkm looks for the certificate's key id in them
(:mod:`lkm.system.keyrings`). A MOK
enrolled with ``mokutil --import`` only reaches the keyrings after the
next boot confirms it: ``mokutil --test-key`` says whether it is enrolled
or pending. Whether a rejected signature stops the load: the running
kernel's ``sig_enforce`` parameter and lockdown state (Secure Boot), or
for another kernel its CONFIG_MODULE_SIG_FORCE.
"""

from __future__ import annotations

import os

from lkm.records import Record

TRUSTED = "trusted"  # in the running kernel's keys
ENROLLED = "mok-enrolled"  # an enrolled MOK: in the keys of kernels booted through shim
PENDING = "mok-pending"  # mokutil --import done, not yet confirmed at boot
UNTRUSTED = "untrusted"
UNKNOWN = "unknown"


class KeyTrust(Record):
    cert: str
    trust: str
    enforced: bool | None  # None: only under Secure Boot (another kernel's boot decides)
    detail: str

    @property
    def rejected(self) -> bool:
        """Loading a module signed with the key fails on this kernel."""
        return self.trust in (UNTRUSTED, PENDING) and self.enforced is True

    def as_json(self) -> dict[str, object]:
        return {
            "cert": self.cert,
            "trust": self.trust,
            "enforced": self.enforced,
            "detail": self.detail,
        }


def enrol_hint(cert: str) -> str:
    return f"mokutil --import {cert} (then confirm it in the MOK manager at the next boot)"


def key_trust(
    cert: str,
    kernel: str,
    config: str,
    *,
    proc_keys: str = "/proc/keys",
    sysfs: str = "/sys",
) -> KeyTrust:
    """What ``kernel`` will make of modules signed with ``cert``."""
    key_id = certificate_key_id(cert)
    running = kernel == os.uname().release
    enforced = _running_enforces(sysfs) if running else _config_enforces(config)
    if key_id is None:
        return KeyTrust(cert, UNKNOWN, enforced, f"no readable certificate at {cert}")
    in_keys = in_module_keys(proc_keys, key_id) if running else None
    if in_keys:
        return KeyTrust(cert, TRUSTED, enforced, f"key {key_id} is in the kernel's module keys")
    mok = _mokutil_state(cert)
    if mok == ENROLLED:
        if in_keys is False:  # the keyrings were read: this boot did not load it
            detail = "an enrolled MOK not in this boot's keys: reboot through shim to load it"
            return KeyTrust(cert, UNTRUSTED, enforced, detail)
        return KeyTrust(cert, ENROLLED, enforced, "an enrolled MOK")
    if mok == PENDING:
        return KeyTrust(
            cert, PENDING, enforced, "MOK enrolment pending: confirm it at the next boot"
        )
    if in_keys is False:
        return KeyTrust(
            cert, UNTRUSTED, enforced, f"not in the kernel's module keys (key {key_id})"
        )
    if running:
        return KeyTrust(cert, UNKNOWN, enforced, "the kernel's keyrings cannot be read here")
    return KeyTrust(cert, UNKNOWN, enforced, f"not an enrolled MOK (key {key_id})")


def certificate_key_id(path: str) -> str | None:
    """The key id the kernel names the certificate's key by (hex)."""
    from cryptography import x509

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        return None
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return extension.value.digest.hex()
    except (x509.ExtensionNotFound, ValueError):
        # The serial's DER content octets, as the kernel takes them: a
        # leading zero byte when the top bit would read as a sign.
        serial = cert.serial_number
        return serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=False).hex()


def in_module_keys(proc_keys: str, key_id: str) -> bool | None:
    """Whether the running kernel verifies modules with the key (None:
    its keyrings cannot be read)."""
    from lkm.system.keyrings import module_keys

    keys = module_keys(proc_keys)
    if keys is None:
        return None
    return any(description.lower().endswith(f": {key_id}") for description in keys)


def _running_enforces(sysfs: str) -> bool:
    try:
        with open(f"{sysfs}/module/module/parameters/sig_enforce", encoding="ascii") as file:
            if file.read().strip() == "Y":
                return True
    except (OSError, ValueError):
        pass
    try:
        with open(f"{sysfs}/kernel/security/lockdown", encoding="ascii") as file:
            state = file.read()
    except (OSError, ValueError):
        return False
    return "[integrity]" in state or "[confidentiality]" in state


def _config_enforces(config: str) -> bool | None:
    try:
        with open(config, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    if "\nCONFIG_MODULE_SIG_FORCE=y" in f"\n{text}":
        return True
    if "\nCONFIG_MODULE_SIG=y" not in f"\n{text}":
        return False  # no signature checking at all
    return None


def _mokutil_state(cert: str) -> str | None:
    import shutil

    from lkm.errors import LkmError
    from lkm.system.run import run

    mokutil = shutil.which("mokutil")
    if mokutil is None:
        return None
    try:
        done = run([mokutil, "--test-key", cert], check=False, timeout=30)
    except LkmError:
        return None
    said = (done.stdout + done.stderr).decode("utf-8", "replace")
    if "already enrolled" in said:
        return ENROLLED
    if "enrollment request" in said:
        return PENDING
    return None


__all__ = [
    "ENROLLED",
    "PENDING",
    "TRUSTED",
    "UNKNOWN",
    "UNTRUSTED",
    "KeyTrust",
    "certificate_key_id",
    "enrol_hint",
    "in_module_keys",
    "key_trust",
]
