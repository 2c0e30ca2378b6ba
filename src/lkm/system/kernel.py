"""The running kernel's module interface: three system calls, /proc, /sys.

Everything lkm does to a live kernel goes through :class:`KernelModules`:
``finit_module``/``init_module`` to load, ``delete_module`` to unload,
``/proc/modules`` and ``/sys/module/NAME/…`` to look. The ``/proc`` and
``/sys`` roots are parameters, so tests read a tree built under a
temporary directory; only the system calls need a real kernel.

A failed call raises :class:`KernelCallError` carrying the errno; what a
tool prints for it comes from :func:`insert_error_text`, the one table of
kmod's wording.
"""

from __future__ import annotations

import errno
import os
import stat

from lkm.errors import FormatError, LkmError, ModuleFormatError
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Iterator

    from lkm.formats.compression import Compression

# finit_module flags (include/uapi/linux/module.h).
MODULE_INIT_IGNORE_MODVERSIONS = 1
MODULE_INIT_IGNORE_VERMAGIC = 2
MODULE_INIT_COMPRESSED_FILE = 4

# Syscall numbers: (init_module, delete_module, finit_module) by machine.
# Where a machine is missing, glibc's init_module/delete_module wrappers
# are used and finit_module is unavailable (ENOSYS, as on old kernels).
_SYSCALLS = {
    "x86_64": (175, 176, 313),
    "aarch64": (105, 106, 273),
    "riscv64": (105, 106, 273),
    "i686": (128, 129, 350),
    "s390x": (128, 129, 344),
    "ppc64le": (128, 129, 353),
    "armv7l": (128, 129, 379),
}

# How user space decompresses: "auto" lets the kernel do it when it can
# (its /sys/module/compression names the file's format), "user" always
# decompresses in lkm, "kernel" insists on the kernel.
DECOMPRESS_MODES = ("auto", "user", "kernel")

# kmod's insmod words these errnos its own way (tools/insmod.c); modprobe
# has its own two (tools/modprobe.c). Every other errno is strerror's text.
_INSMOD_WORDING = {
    errno.ENOEXEC: "Invalid module format",
    errno.ENOENT: "Unknown symbol in module",
    errno.ESRCH: "Module has wrong symbol version",
    errno.EINVAL: "Invalid parameters",
}
_MODPROBE_WORDING = {
    errno.EEXIST: "Module already in kernel",
    errno.ENOENT: "Unknown symbol in module, or unknown parameter (see dmesg)",
}


def insert_error_text(err: int, tool: str = "insmod") -> str:
    """What kmod's ``tool`` says when loading fails with ``err``."""
    wording = _MODPROBE_WORDING if tool == "modprobe" else _INSMOD_WORDING
    return wording.get(err) or os.strerror(err)


class KernelCallError(LkmError, OSError):
    """A module system call failed; ``errno`` says why."""

    def __init__(self, err: int, call: str, target: str) -> None:
        super().__init__(err, f"{call}({target}): {os.strerror(err)}")
        self.code = err  # OSError.errno, typed as always present
        self.call = call
        self.target = target


class ProcModule(Record):
    """One line of ``/proc/modules``."""

    name: str
    size: int
    refcount: int | None  # None: the kernel cannot unload modules ("-")
    used_by: tuple[str, ...]
    state: str  # Live, Loading or Unloading
    address: str
    taints: str  # "(OE)" and the like, "" when clean


class KernelModules:
    """The module interface of one kernel, seen through ``proc`` and ``sys``."""

    def __init__(
        self,
        proc: str = "/proc",
        sys: str = "/sys",
        dev: str = "/dev",
        syscalls: Syscalls | None = None,
    ) -> None:
        self.proc = proc
        self.sys = sys
        self.dev = dev
        self.syscalls = syscalls if syscalls is not None else Syscalls()

    # -- loading and unloading -------------------------------------------

    def insert(
        self,
        path: str,
        params: str = "",
        force: bool = False,
        decompress: str = "auto",
        *,
        force_modversion: bool = False,
        force_vermagic: bool = False,
    ) -> None:
        """Load the module file at ``path`` with the parameter string ``params``.

        ``force`` asks the kernel to ignore symbol versions and vermagic
        (``force_modversion`` and ``force_vermagic`` ask for one each).
        A compressed file goes to the kernel as it is when the kernel
        decompresses that format itself; otherwise lkm decompresses it.
        A kernel without ``finit_module`` (ENOSYS) gets the file's bytes
        through ``init_module``, as kmod gives them.

        ``params`` reaches the kernel as the bytes it was made from (lkm's
        text is UTF-8 with surrogate escapes): kmod passes a parameter
        string on byte for byte and lets the kernel judge it.
        """
        from lkm.formats.compression import MAGIC_PROBE_SIZE, Compression, detect

        if decompress not in DECOMPRESS_MODES:
            raise ValueError(f"decompress must be one of {DECOMPRESS_MODES}")
        raw = params.encode("utf-8", "surrogateescape")
        flags = (MODULE_INIT_IGNORE_MODVERSIONS if force or force_modversion else 0) | (
            MODULE_INIT_IGNORE_VERMAGIC if force or force_vermagic else 0
        )
        fd = _open_module_file(path)
        try:
            kind = detect(os.pread(fd, MAGIC_PROBE_SIZE, 0))
            if kind is Compression.NONE:
                if self._finit(fd, raw, flags, path):
                    return
                image = _whole_file(fd, path)
            else:
                by_kernel = decompress == "kernel" or (
                    decompress == "auto" and self.compression() == kind.value
                )
                if by_kernel and self._finit(fd, raw, flags | MODULE_INIT_COMPRESSED_FILE, path):
                    return
                image = _decompressed(fd, kind, path)
        finally:
            os.close(fd)
        if flags and self._finit_memory(image, raw, flags, path):
            return
        if flags:
            # No finit_module: kmod's way of forcing through init_module,
            # which has no flags, is to edit the image the kernel checks.
            from lkm.formats.module_strip import strip_for_forced_load

            image = strip_for_forced_load(
                image,
                path,
                versions=bool(flags & MODULE_INIT_IGNORE_MODVERSIONS),
                vermagic=bool(flags & MODULE_INIT_IGNORE_VERMAGIC),
            )
        self.syscalls.init_module(image, raw, path)

    def _finit(self, fd: int, params: bytes, flags: int, path: str) -> bool:
        """finit_module; False when the kernel has none (ENOSYS, before
        Linux 3.8), so the caller falls back to init_module as kmod does."""
        try:
            self.syscalls.finit_module(fd, params, flags, path)
        except KernelCallError as exc:
            if exc.code == errno.ENOSYS:
                return False
            raise
        return True

    def _finit_memory(self, image: bytes, params: bytes, flags: int, path: str) -> bool:
        """finit_module of a decompressed image, through a memory file so the
        kernel can honour ``flags`` (init_module has none); False without
        finit_module or memory files."""
        try:
            fd = os.memfd_create("lkm-module", os.MFD_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                return False
            raise
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view) :]
            return self._finit(fd, params, flags, path)
        finally:
            os.close(fd)

    def remove(self, name: str, force: bool = False) -> None:
        """Unload module ``name``; never waits for its users (O_NONBLOCK)."""
        flags = os.O_NONBLOCK | (os.O_TRUNC if force else 0)
        self.syscalls.delete_module(name, flags)

    def compression(self) -> str | None:
        """The format the kernel decompresses itself (gzip, xz, zstd), if any."""
        value = _read_text(os.path.join(self.sys, "module", "compression"))
        return value.strip() if value else None

    # -- looking ----------------------------------------------------------

    def proc_modules(self) -> list[ProcModule]:
        """``/proc/modules``, in the kernel's order (newest first)."""
        with open(
            os.path.join(self.proc, "modules"), encoding="utf-8", errors="surrogateescape"
        ) as f:
            return [_parse_proc_line(line) for line in f if line.strip()]

    def loaded_names(self) -> list[str]:
        return [m.name for m in self.proc_modules()]

    def module_dir(self, name: str) -> str:
        return os.path.join(self.sys, "module", name)

    def initstate(self, name: str) -> str | None:
        """live, coming or going; None when ``name`` is not a loaded module.

        Like kmod, a ``/sys/module/NAME`` directory without ``initstate``
        counts as coming (the kernel creates the file last) — callers
        must rule out built-in modules first, which have the directory too.
        """
        state = _read_text(os.path.join(self.module_dir(name), "initstate"))
        if state is not None:
            return state.strip()
        return "coming" if os.path.isdir(self.module_dir(name)) else None

    def refcnt(self, name: str) -> int | None:
        value = _read_text(os.path.join(self.module_dir(name), "refcnt"))
        return int(value) if value is not None else None

    def coresize(self, name: str) -> int | None:
        value = _read_text(os.path.join(self.module_dir(name), "coresize"))
        return int(value) if value is not None else None

    def holders(self, name: str) -> list[str] | None:
        """Modules that use ``name``, in the kernel's directory order (as kmod
        prints them: unsorted); None without a ``holders`` directory."""
        try:
            return os.listdir(os.path.join(self.module_dir(name), "holders"))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def parameters(self, name: str) -> dict[str, str]:
        """Readable parameters and their values (write-only ones are skipped)."""
        directory = os.path.join(self.module_dir(name), "parameters")
        values: dict[str, str] = {}
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return values
        for param in names:
            try:
                value = _read_text(os.path.join(directory, param))
            except PermissionError:
                continue
            if value is not None:
                values[param] = value.rstrip("\n")
        return values

    def taint(self, name: str) -> str:
        return (_read_text(os.path.join(self.module_dir(name), "taint")) or "").strip()

    # -- the kernel log and the symbol table ------------------------------

    def kmsg(self, follow: bool = False) -> Iterator[bytes]:
        """Raw ``/dev/kmsg`` records, oldest first; with ``follow``, wait for
        new ones forever, else stop at the newest."""
        flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NONBLOCK)
        fd = os.open(os.path.join(self.dev, "kmsg"), flags)
        try:
            # Start after the last "dmesg --clear", as util-linux does.
            os.lseek(fd, 0, os.SEEK_DATA)
            yield from kmsg_records(fd)
        finally:
            os.close(fd)

    def kmsg_from_now(self) -> int:
        """A non-blocking ``/dev/kmsg`` descriptor past the newest record:
        :func:`kmsg_records` on it gives what is logged from now on."""
        fd = os.open(os.path.join(self.dev, "kmsg"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def tainted(self) -> int:
        """The kernel's taint flags (``/proc/sys/kernel/tainted``), 0 when unreadable."""
        text = _read_text(os.path.join(self.proc, "sys", "kernel", "tainted")) or ""
        return int(text.strip() or "0")

    def cmdline(self) -> str | None:
        """The kernel command line (``/proc/cmdline``), None when unreadable."""
        return _read_text(os.path.join(self.proc, "cmdline"))

    def kallsyms(self) -> Iterator[str]:
        """``/proc/kallsyms`` lines without their line break."""
        with open(
            os.path.join(self.proc, "kallsyms"), encoding="utf-8", errors="surrogateescape"
        ) as f:
            for line in f:
                yield line.rstrip("\n")


def kmsg_records(fd: int) -> Iterator[bytes]:
    """Records from an open ``/dev/kmsg`` descriptor, from where it stands
    to the newest (a blocking descriptor waits for more instead)."""
    while True:
        try:
            record = os.read(fd, 8192)
        except BlockingIOError:
            return
        except BrokenPipeError:
            continue  # overwritten while we read it: the next one
        if not record:
            return
        yield record


def _parse_proc_line(line: str) -> ProcModule:
    # "name size refcnt used_by, state address [(taints)]"; used_by is "-"
    # when empty, refcnt is "-" without module unloading.
    fields = line.split()
    name, size, refcnt, used_by, state, address = fields[:6]
    return ProcModule(
        name=name,
        size=int(size),
        refcount=None if refcnt == "-" else int(refcnt),
        used_by=tuple(u for u in used_by.split(",") if u and u != "-"),
        state=state,
        address=address,
        taints=fields[6] if len(fields) > 6 else "",
    )


def _read_text(path: str) -> str | None:
    # surrogateescape: a charp parameter's value may hold any bytes, and is
    # shown back as those bytes.
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _decompressed(fd: int, kind: Compression, path: str) -> bytes:
    from lkm.formats.compression import decompress

    try:
        return decompress(_whole_file(fd, path), kind)
    except FormatError as exc:
        raise ModuleFormatError(path, str(exc)) from None


def _open_module_file(path: str) -> int:
    """``path`` opened to load: a regular file. Anything else is refused
    with EINVAL, what the kernel answers ``finit_module`` of it
    (kernel_read_file) and what kmod 30 ends with (its mmap of a device's
    size 0 fails with EINVAL), without calling it and without blocking:
    kmod's open of a FIFO nobody writes to hangs. A directory is EISDIR,
    as kmod's read says."""
    from lkm.formats.file_kinds import not_regular, open_file

    fd, st = open_file(path)
    if stat.S_ISREG(st.st_mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        raise not_regular(path, st.st_mode)
    raise KernelCallError(errno.EINVAL, "finit_module", path)


def _whole_file(fd: int, path: str) -> bytes:
    from lkm.formats.compression import MAX_DECOMPRESSED
    from lkm.formats.file_kinds import too_large

    size = os.fstat(fd).st_size
    if size > MAX_DECOMPRESSED:  # no module is; the file is read whole
        raise too_large(path, MAX_DECOMPRESSED)
    return os.pread(fd, size, 0)


# -- the system calls, through libc's syscall() -----------------------------


class Syscalls:
    """The three module system calls, through libc's ``syscall()``; each
    raises :class:`KernelCallError` with the kernel's errno.

    :class:`KernelModules` takes another object with these methods, so a
    test can make the kernel answer what it likes (``ENOSYS`` from
    ``finit_module``, say) and see what lkm does next. Parameters come as
    the bytes the kernel gets; ``target`` only names the call in errors.
    """

    def finit_module(self, fd: int, params: bytes, flags: int, target: str) -> None:
        import ctypes

        numbers = _syscall_numbers()
        if numbers is None:
            raise KernelCallError(errno.ENOSYS, "finit_module", target)
        result = _libc().syscall(
            ctypes.c_long(numbers[2]), ctypes.c_int(fd), ctypes.c_char_p(params),
            ctypes.c_int(flags),
        )  # fmt: skip
        _check(result, "finit_module", target)

    def init_module(self, image: bytes, params: bytes, target: str) -> None:
        import ctypes

        libc = _libc()
        numbers = _syscall_numbers()
        size = ctypes.c_ulong(len(image))
        args = (ctypes.c_char_p(image), size, ctypes.c_char_p(params))
        if numbers is None:
            result = libc.init_module(*args)
        else:
            result = libc.syscall(ctypes.c_long(numbers[0]), *args)
        _check(result, "init_module", target)

    def delete_module(self, name: str, flags: int) -> None:
        import ctypes

        libc = _libc()
        numbers = _syscall_numbers()
        # A name is bytes to the kernel too (a module's file name may hold
        # any but NUL and '/').
        args = (ctypes.c_char_p(name.encode("utf-8", "surrogateescape")), ctypes.c_uint(flags))
        if numbers is None:
            result = libc.delete_module(*args)
        else:
            result = libc.syscall(ctypes.c_long(numbers[1]), *args)
        _check(result, "delete_module", name)


def _libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _syscall_numbers() -> tuple[int, int, int] | None:
    return _SYSCALLS.get(os.uname().machine)


def _check(result: int, call: str, target: str) -> None:
    import ctypes

    if result != 0:
        raise KernelCallError(ctypes.get_errno(), call, target)
