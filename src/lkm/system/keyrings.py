"""The running kernel's module-verification keys, read with keyctl(2).

A module signature is checked against ``.secondary_trusted_keys``, which
links ``.builtin_trusted_keys`` and, where the kernel has it, ``.machine``
(the machine owner's keys shim passed on). ``/proc/keys`` names those
keyrings but lists every key the caller may view, a user's own among
them, so the keyrings' contents are read instead: KEYCTL_READ gives a
keyring's key serials, KEYCTL_DESCRIBE each key's ``type;uid;gid;perm;
description``. An asymmetric key's description is ``SUBJECT: KEYID``.
"""

from __future__ import annotations

import os

# keyctl(2)'s system call number on the architectures lkm runs on.
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "s390x": 280, "ppc64le": 280}
_KEYCTL_DESCRIBE = 6
_KEYCTL_READ = 11
# The keyrings a module signature may be verified against, most general first.
MODULE_KEYRINGS = (".secondary_trusted_keys", ".builtin_trusted_keys")


def module_keys(proc_keys: str = "/proc/keys") -> list[str] | None:
    """Descriptions of the asymmetric keys the running kernel verifies
    modules with; None when they cannot be read (no keyctl here, no
    keyrings, not allowed)."""
    keyrings = _keyring_serials(proc_keys)
    for name in MODULE_KEYRINGS:
        if name in keyrings:
            try:
                return _asymmetric_keys(keyrings[name], set())
            except OSError:
                return None
    return None


def _keyring_serials(proc_keys: str) -> dict[str, int]:
    found = {}
    try:
        with open(proc_keys, encoding="utf-8", errors="replace") as file:
            lines = file.readlines()
    except OSError:
        return {}
    for line in lines:
        # id flags usage timeout perm uid gid type description
        fields = line.split(None, 8)
        if len(fields) == 9 and fields[7] == "keyring":
            name = fields[8].split(":", 1)[0]
            try:
                found[name] = int(fields[0], 16)
            except ValueError:
                continue
    return found


def _asymmetric_keys(keyring: int, seen: set[int]) -> list[str]:
    seen.add(keyring)
    keys = []
    for serial in _read_keyring(keyring):
        kind, _, description = _describe(serial)
        if kind == "keyring" and serial not in seen:
            keys.extend(_asymmetric_keys(serial, seen))
        elif kind == "asymmetric":
            keys.append(description)
    return keys


def _keyctl(*args: int) -> int:
    import ctypes
    import ctypes.util

    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        raise OSError(f"no keyctl system call number for {os.uname().machine}")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args)))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _buffer_call(operation: int, serial: int) -> bytes:
    import ctypes

    size = 4096
    while True:
        buffer = ctypes.create_string_buffer(size)
        needed = _keyctl(operation, serial, ctypes.addressof(buffer), size)
        if needed <= size:
            return buffer.raw[:needed]
        size = needed


def _read_keyring(serial: int) -> list[int]:
    import struct

    data = _buffer_call(_KEYCTL_READ, serial)
    return list(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))


def _describe(serial: int) -> tuple[str, str, str]:
    """(type, "uid;gid;perm", description) of a key."""
    text = _buffer_call(_KEYCTL_DESCRIBE, serial).rstrip(b"\0").decode("utf-8", "replace")
    parts = text.split(";", 4)
    if len(parts) < 5:
        return "", "", ""
    return parts[0], ";".join(parts[1:4]), parts[4]


__all__ = ["MODULE_KEYRINGS", "module_keys"]
