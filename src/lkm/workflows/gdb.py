"""gdb on the kernel of lkm's VM: QEMU's gdb stub, and the gdb commands that
attach to it and load a module's symbols where the kernel put its sections.

A module is a relocatable object: the kernel's loader decides where each of
its sections goes (``kernel/module/main.c``, ``layout_and_allocate``) and
shows the addresses, to root, in ``/sys/module/NAME/sections/SECTION``.
gdb's ``add-symbol-file FILE TEXTADDR -s SECTION ADDR …`` places the
``.ko``'s symbols and debug information (kbuild compiles with ``-g`` when the
kernel's configuration has ``CONFIG_DEBUG_INFO``, as Debian's has) at those
addresses, so breakpoints in the module's functions resolve to its source
lines. Those addresses come from the running kernel, so they are right
whether or not it randomized its own base (KASLR); ``nokaslr`` is added to
the command line anyway, for the kernel's own symbols.

The kernel's own symbols need a ``vmlinux`` with a symbol table: Debian's
``linux-image-RELEASE-dbg`` puts one at ``/usr/lib/debug/boot/vmlinux-RELEASE``.
When there is one (on the host, or in the root the kernel was unpacked
into) the commands load it as gdb's main file; without it, frames in the
kernel show as addresses. The ``vmlinux`` lkm extracts from the bzImage to
boot it (:mod:`lkm.vm.kernel_image`) is stripped, so it is not used: it
would give gdb no names.

``lkm try --gdb`` holds the VM after loading, until it is told to go on (the
``lkm-go`` command the file defines, a file created, or Enter on lkm's
terminal): see :func:`wait_for_go`.
"""

from __future__ import annotations

import contextlib
import os

from lkm.errors import LkmError
from lkm.records import Record

GDB_FILE = ".lkm-gdb"  # in the module's directory, unless a path is given
GO_SUFFIX = ".go"  # GDB_FILE + this, created: run the test command
KERNEL_APPEND = "nokaslr"  # vmlinux symbols are linked at the unrandomized base
# Sections the loader lists in sysfs that are not the .ko's own allocated
# sections: its in-memory copies of the symbol and string tables, kept for
# kallsyms (kernel/module/kallsyms.c, layout_symtab, marks them SHF_ALLOC).
_LOADER_COPIES = frozenset((".symtab", ".strtab"))
_POLL = 0.2


class GdbError(LkmError):
    """The gdb stub or its command file could not be set up."""


class GdbRequest(Record):
    """What ``--gdb`` asks for: where the commands go (None: ``DIR/.lkm-gdb``)
    and a terminal on which Enter says go (None: only the go file does)."""

    script: str | None = None
    keyboard: int | None = None


class LoadedModule(Record):
    """A module loaded in the guest: the ``.ko`` gdb reads (a host path;
    the guest sees the host's root at the same paths) and where the kernel
    put its sections, in sysfs order."""

    name: str
    path: str
    sections: tuple[tuple[str, int], ...]


def stub_arguments(socket: str) -> list[str]:
    """QEMU's arguments for a gdb stub on ``socket``: listen, and do not
    wait for gdb to start the VM (QEMU's option syntax doubles a comma)."""
    return ["-gdb", f"unix:{socket.replace(',', ',,')},server=on,wait=off"]


class GdbStub:
    """QEMU's gdb stub on a Unix socket in a directory of its own (removed
    on :meth:`close`); ``target remote SOCKET`` attaches to it."""

    def __init__(self) -> None:
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="lkm-gdb-")  # the socket, files for gdb
        self.socket = os.path.join(self.directory, "gdb.sock")

    def qemu_args(self) -> list[str]:
        return stub_arguments(self.socket)

    @property
    def target(self) -> str:
        # gdb connects to a Unix socket named as the target (gdb's
        # "Connecting to a remote target": a local socket path is accepted).
        return f"target remote {self.socket}"

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> GdbStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- in the guest -------------------------------------------------------------


def module_sections(module_dir: str) -> list[tuple[str, int]]:
    """(section, address) from ``MODULE_DIR/sections`` (``/sys/module/NAME``),
    sorted by name; empty when the kernel shows none (not root, or
    ``kptr_restrict`` hides them as zeros)."""
    directory = os.path.join(module_dir, "sections")
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            with open(os.path.join(directory, name)) as f:
                address = int(f.read().strip(), 16)
        except (OSError, ValueError):
            continue
        if address:
            found.append((name, address))
    return found


# -- on the host --------------------------------------------------------------


def add_symbol_file(module: LoadedModule) -> str:
    """gdb's ``add-symbol-file`` for ``module``: ``.text`` as the bare
    address (every gdb takes that; only gdb 8.2 and later may leave it
    out), each other section as ``-s NAME ADDR``."""
    sections = [(n, a) for n, a in module.sections if n not in _LOADER_COPIES]
    text = [f"0x{a:x}" for n, a in sections if n == ".text"]
    others = [f"-s {n} 0x{a:x}" for n, a in sections if n != ".text"]
    return " ".join(["add-symbol-file", _quoted(module.path), *text, *others])


def _quoted(path: str) -> str:
    # gdb splits add-symbol-file's arguments like a shell (gdb_buildargv).
    if path and not any(c in path for c in " \t\"'\\"):
        return path
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def symbol_file(module: LoadedModule, directory: str) -> tuple[LoadedModule, list[str]]:
    """``module`` as gdb should read it, and comment lines about it: a copy
    in ``directory`` with its sections' link addresses zeroed when kbuild
    left some (see :mod:`lkm.formats.module_for_gdb`), and a note when it has
    no DWARF (headers whose configuration has ``CONFIG_DEBUG_INFO`` off: gdb
    then knows its functions by name but not by source line)."""
    from lkm.formats.module_file import open_module
    from lkm.formats.module_for_gdb import without_link_addresses
    from lkm.system.atomic import replace_file

    notes = []
    with open_module(module.path) as image:
        if image.elf.section_index(".debug_info") is None:
            notes.append(f"# {module.path} has no debug info: functions by name, no source lines")
        edited = without_link_addresses(image.data[:])  # a mapped file: its bytes
    if edited is None:
        return module, notes
    copy = os.path.join(directory, f"{module.name}.ko")  # uncompressed, whatever the original
    replace_file(copy, edited, ".tmp")
    notes.append(f"# {copy}: {module.path} with its sections' link addresses zeroed (gdb then")
    notes.append("# places each section, and the debug info in it, where the kernel put it)")
    return module.replace(path=copy), notes


def kernel_debug_file(release: str, image: str | None = None) -> str | None:
    """A ``vmlinux`` with symbols for ``release``: Debian's debug package's,
    in the root the image was unpacked into (``ROOT/boot/vmlinuz-R``) or on
    the host; None when there is none."""
    roots = ["/"]
    if image is not None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(image)))
        if root != "/":
            roots.insert(0, root)
    for root in roots:
        for relative in (f"usr/lib/debug/boot/vmlinux-{release}",
                         f"usr/lib/debug/lib/modules/{release}/vmlinux"):  # fmt: skip
            path = os.path.join(root, relative)
            if os.path.isfile(path):
                return path
    return None


def gdb_commands(
    target: str,
    modules: list[LoadedModule],
    vmlinux: str | None,
    release: str,
    work: str,
    go_file: str | None = None,
) -> list[str]:
    """The gdb command file's lines: kernel symbols when there are some,
    attach, each module's symbols (copies made in ``work`` when gdb needs
    them: see :func:`symbol_file`); with ``go_file``, an ``lkm-go`` command
    that tells ``lkm try`` to go on and lets the VM run."""
    lines = [f"# gdb commands written by lkm for kernel {release}: gdb -x THIS-FILE"]
    if vmlinux is not None:
        lines.append(f"file {_quoted(vmlinux)}")
    else:
        lines.append(
            f"# no vmlinux with symbols for {release} (Debian: linux-image-{release}-dbg):"
            " kernel frames show as addresses"
        )
    # Attach first: with no vmlinux, gdb takes the architecture from QEMU's
    # target description, and before that it would cut the modules'
    # addresses to 32 bits. add-symbol-file asks "(y or n)" on a terminal;
    # the user's own setting comes back afterwards ($_gdb_setting: gdb 10+).
    lines.append(target)
    if modules:
        lines += ['set $lkm_confirm = $_gdb_setting("confirm")', "set confirm off"]
        for module in modules:
            readable, notes = symbol_file(module, work)
            lines += [*notes, add_symbol_file(readable)]
        lines += ["if $lkm_confirm", "  set confirm on", "end"]
    if go_file is not None:
        import shlex

        lines += [
            "define lkm-go",
            f"  shell touch {shlex.quote(go_file)}",  # gdb's shell runs /bin/sh -c
            "  continue",
            "end",
            "document lkm-go",
            "Tell lkm try to run the test command and unload, and let the VM run.",
            "end",
        ]
    return lines


def vm_commands(target: str, release: str, image: str | None = None) -> list[str]:
    """The command file for a VM in which lkm loaded no module (``lkm vm
    run --gdb``, ``lkm vm shell --gdb``): kernel symbols when there are
    some, attach, and how to add a module's symbols by hand."""
    lines = gdb_commands(target, [], kernel_debug_file(release, image), release, "")
    return [
        *lines,
        "# a module's symbols: add-symbol-file MODULE.ko TEXT-ADDRESS -s SECTION ADDRESS ...,"
        " the addresses from /sys/module/NAME/sections in the guest (lkm try --gdb writes them)",
    ]


def write_commands(path: str, lines: list[str]) -> None:
    """Write the command file whole (a reader polling for it never sees half)."""
    from lkm.system.atomic import replace_file

    try:
        replace_file(path, ("\n".join(lines) + "\n").encode(), f".{os.getpid()}.tmp")
    except OSError as exc:
        raise GdbError(f"{path}: cannot write the gdb commands: {exc.strerror or exc}") from None


def remove_go_file(go_file: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(go_file)


def wait_for_go(go_file: str, keyboard: int | None = None, poll: float = _POLL) -> str:
    """Wait until ``go_file`` exists (removing it) or, with ``keyboard`` (a
    terminal's descriptor), a line is typed there; what said go. There is
    no time-out: a person is debugging (Ctrl-C ends the wait)."""
    import select

    if keyboard is not None:
        import termios

        # Lines typed before the VM was held (during the build) do not count.
        with contextlib.suppress(termios.error):
            termios.tcflush(keyboard, termios.TCIFLUSH)
    while True:
        if os.path.exists(go_file):
            remove_go_file(go_file)
            return go_file
        if keyboard is None:
            select.select([], [], [], poll)
            continue
        ready, _, _ = select.select([keyboard], [], [], poll)
        if ready:
            os.read(keyboard, 4096)  # the line (or end of file: go too)
            return "the terminal"


__all__ = [
    "GDB_FILE",
    "GO_SUFFIX",
    "KERNEL_APPEND",
    "GdbError",
    "GdbRequest",
    "GdbStub",
    "LoadedModule",
    "add_symbol_file",
    "gdb_commands",
    "kernel_debug_file",
    "module_sections",
    "remove_go_file",
    "stub_arguments",
    "symbol_file",
    "vm_commands",
    "wait_for_go",
    "write_commands",
]
