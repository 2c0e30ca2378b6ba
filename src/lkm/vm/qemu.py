"""Boot a real kernel under QEMU and run commands in it, one boot for many.

The guest sees the host's root read-only over 9p (``multidevs=remap``, so
files from different host filesystems keep distinct inodes) and a
writable scratch directory through which steps go in and results come
out (see :func:`lkm.vm.initramfs.init_script`). The kernel console goes to
a log file. A guest that panics or oopses (``oops=panic panic=-1`` reboots,
``-no-reboot`` turns that into an exit) or runs past a time-out ends the
run with a :class:`VmError` carrying the console tail, never a hang.
Three virtio serial ports join host and guest besides (see
:mod:`lkm.vm.serial`): a step's stdin, the console an interactive shell
runs on (:meth:`VmSession.shell`), and that console's window size; a
step's output is read from the scratch directory as it is written (see
:mod:`lkm.vm.streams`).

The kernel boots through its PVH entry when it has one (see
:mod:`lkm.vm.kernel_image`), and routes PCI interrupts through the MP
table instead of ACPI unless devices can be hotplugged (see
:func:`can_hotplug`): both save seconds of TCG. Its firmware is qboot
unless the user adds devices (see :func:`firmware_args`), and it skips the
crypto self-tests (``KERNEL_CMDLINE``). KVM when it works, TCG
otherwise: :func:`kvm_usable` boots the kernel under KVM once for a few
seconds and remembers the answer for this host boot (on the machines lkm
is developed on, ``/dev/kvm`` exists but KVM guests die on the first
instruction the nested hypervisor cannot emulate).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from lkm.errors import LkmError
from lkm.records import Record
from lkm.system.paths import KVM_PROBE, cache_path, make_cache_dir
from lkm.system.run import NULL, PIPE, Process, start
from lkm.vm import serial, virtiofs
from lkm.vm.initramfs import DEFAULT_MODPROBE, HOST_TAG, SCRATCH_TAG, build_initramfs
from lkm.vm.kernel_image import bootable_image
from lkm.vm.serial import HostPorts, PortError
from lkm.vm.streams import StepStreams
from lkm.vm.terminal import Terminal, TerminalEscape, Terminated, ending_on_signals

CONSOLE_TAIL = 40
# multidevs=remap: files from different host filesystems keep distinct inodes.
_SHARE = "security_model=none,multidevs=remap"
# An oops ends the run like a panic (unless the caller wants to watch the
# kernel survive it); the guest must not reboot into a loop. no_timer_check:
# QEMU's IO-APIC timer works, the kernel need not spin 20 ms to prove it.
# cryptomgr.notests: the crypto manager's self-tests of every algorithm
# built into the kernel take 0.3-0.4 s of each boot under TCG and test
# QEMU's emulation of the CPU, not the module being tried; --append
# cryptomgr.notests=0 (the last value wins) brings them back, for a
# crypto driver's own tests.
_CMDLINE_COMMON = "console=ttyS0 panic=-1 quiet no_timer_check cryptomgr.notests"
KERNEL_CMDLINE = f"{_CMDLINE_COMMON} oops=panic"
KERNEL_CMDLINE_SURVIVE_OOPS = _CMDLINE_COMMON
# PCI interrupt routing. Through ACPI, the kernel evaluates the _PRT of
# QEMU's i440fx DSDT for each PCI device it enables (drivers/acpi/pci_irq.c
# keeps no copy): an AML loop of 128 rounds, 0.15-0.35 s a device under
# TCG, up to a second of each boot for the three devices lkm adds.
# acpi=noirq routes through the MP table SeaBIOS writes instead, which
# names every device present at boot; a device hotplugged later has no
# entry there and gets no legacy interrupt ("can't find IRQ for PCI INT
# A"), so ACPI routing stays whenever QEMU has a way to hotplug: a monitor
# or a gdb stub (gdb's ``monitor`` reaches QEMU's).
NO_HOTPLUG_CMDLINE = "acpi=noirq"
_HOTPLUG_OPTIONS = frozenset({"-qmp", "-qmp-pretty", "-monitor", "-mon", "-gdb", "-s"})
# qboot (QEMU's minimal firmware, in Debian's qemu-system-data) hands over
# to the kernel 0.15-0.3 s sooner than SeaBIOS under TCG: it initialises
# PCI, writes the MP and ACPI tables and jumps to the kernel, with no boot
# menu, option ROM scan or disk probing. It boots lkm's own devices (and
# takes hotplugged ones), but not every device a user may add: with an
# intel-hda at boot it never reaches the kernel. So a guest given devices
# of the user's, or a guest where qboot is missing, boots through QEMU's
# default firmware (SeaBIOS).
QBOOT_PATHS = ("/usr/share/qemu/qboot.rom", "/usr/local/share/qemu/qboot.rom")
KVM_PROBE_SECONDS = 3.0
_POLL = 0.01


class VmError(LkmError):
    """The VM did not run a command to the end; the message says why and
    ``console`` holds the console's last lines (empty if it never booted)."""

    def __init__(self, message: str, console: str = "") -> None:
        super().__init__(f"{message}\nconsole (last lines):\n{console}" if console else message)
        self.reason = message
        self.console = console


# First lines of the kernel's reports of a dying kernel: the console tail
# reaches back to the first of them, because a panic's call trace and
# registers alone can fill CONSOLE_TAIL lines and push out the one line
# that says what happened.
_DEATH_STARTS = ("Kernel panic - not syncing", "BUG: ", "Oops: ", "general protection fault")


def console_tail(console: str, count: int = CONSOLE_TAIL) -> str:
    """The last ``count`` lines of ``console``, or more: from the first
    panic or oops line among the last ``3 * count`` (an oops that panics
    prints its ``BUG:`` line first, and that one says what happened)."""
    lines = console.splitlines()
    start = max(0, len(lines) - count)
    for index in range(max(0, len(lines) - 3 * count), start):
        if any(words in lines[index] for words in _DEATH_STARTS):
            start = index
            break
    return "\n".join(lines[start:])


class StepResult(Record):
    """One command run in the guest."""

    command: str
    status: int
    stdout: bytes
    stderr: bytes
    kmsg: str  # the kernel log lines written while the command ran

    def describe(self) -> str:
        """Everything about the step, for a failure report."""
        return (
            f"$ {self.command}\n[status {self.status}]\n"
            f"[stdout]\n{self.stdout.decode(errors='replace')}"
            f"[stderr]\n{self.stderr.decode(errors='replace')}"
            f"[kernel log]\n{self.kmsg}"
        )


class VmResult(Record):
    status: int
    stdout: bytes
    stderr: bytes
    console: str


def qemu_command(
    kernel_image: str,
    initrd: str,
    scratch: str,
    console: str,
    memory: str = "1G",
    accel: str = "tcg",
    virtiofs_socket: str | None = None,
    panic_on_oops: bool = True,
    append: str = "",
    extra: Sequence[str] = (),
    ports: str | None = None,
) -> list[str]:
    """The QEMU command line (what ``--dry-run`` prints); the host's root
    over 9p, or over virtiofs through ``virtiofs_socket``. ``append``: more
    of the kernel command line; ``extra``: more QEMU arguments (devices, a
    gdb stub, a monitor), last; ``ports``: the directory of the sockets of
    the guest's serial ports (see :mod:`lkm.vm.serial`), None for none."""
    cmdline = KERNEL_CMDLINE if panic_on_oops else KERNEL_CMDLINE_SURVIVE_OOPS
    if not can_hotplug(extra):
        cmdline = f"{cmdline} {NO_HOTPLUG_CMDLINE}"
    cpu = ["-cpu", "host"] if accel == "kvm" else ["-cpu", "max"]
    if virtiofs_socket is None:
        host = ["-virtfs", f"local,path=/,mount_tag={HOST_TAG},{_SHARE},readonly=on"]
    else:
        host = virtiofs.qemu_args(virtiofs_socket, memory)
    return [
        "qemu-system-x86_64",
        "-accel", accel, *cpu,
        "-m", memory,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        *firmware_args(extra),
        "-serial", f"file:{console}",
        "-kernel", kernel_image,
        "-initrd", initrd,
        "-append", f"{cmdline} {append}".strip(),
        *host,
        "-virtfs", f"local,path={scratch},mount_tag={SCRATCH_TAG},{_SHARE}",
        *(serial.qemu_args(ports) if ports is not None else ()),
        *extra,
    ]  # fmt: skip


def firmware_args(extra: Sequence[str]) -> list[str]:
    """QEMU's ``-bios`` for qboot when it is installed and QEMU's arguments
    ``extra`` add no device, else nothing (SeaBIOS)."""
    if "-device" in extra:
        return []
    for path in QBOOT_PATHS:
        if os.path.exists(path):
            return ["-bios", path]
    return []


def can_hotplug(extra: Sequence[str]) -> bool:
    """Whether QEMU's arguments ``extra`` give a way to add devices to the
    running guest (a monitor, ``-serial mon:...``, a gdb stub)."""
    return any(arg in _HOTPLUG_OPTIONS or arg.startswith("mon:") for arg in extra)


class VmSession:
    """A booted guest that runs commands one after another.

    >>> with VmSession(image, moddir, version) as vm:   # doctest: +SKIP
    ...     vm.run(["lkm", "lsmod"]).stdout
    """

    def __init__(
        self,
        kernel_image: str,
        moddir: str,
        kernel: str,
        memory: str = "1G",
        accel: str | None = None,
        console: str | None = None,
        share: str = "9p",
        panic_on_oops: bool = True,
        append: str = "",
        extra: Sequence[str] = (),
        modprobe: str = DEFAULT_MODPROBE,
        headers: str | None = None,
        progress: Callable[[str], None] | None = None,
        on_console: Callable[[bytes], None] | None = None,
    ) -> None:
        """``console``: where the kernel console log goes (kept after the
        run); by default a file removed with the session. ``share``: how
        the guest sees the host's root, ``9p`` or ``virtiofs``.
        ``panic_on_oops``: an oops stops the guest (tests want that); off,
        the kernel kills the task that oopsed and goes on, so its log and
        taint can still be read (``lkm try`` reports them). ``append`` and
        ``extra``: see :func:`qemu_command`. ``modprobe``: the program in
        the host's root that serves the guest kernel's module requests.
        ``headers``: the kernel's headers tree, which the guest module
        tree's ``build`` link then names. ``progress`` is told how far the
        boot is: ``booting``, ``init`` (the initramfs runs), ``ready``;
        ``on_console`` gets each line of the console as it is seen (while
        lkm waits for the guest), its line break taken off."""
        if shutil.which("qemu-system-x86_64") is None:
            raise VmError(
                "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
            )
        self.kernel = kernel
        self._work = tempfile.mkdtemp(prefix="lkm-vm-")
        self.scratch = os.path.join(self._work, "scratch")
        self.console_path = console or os.path.join(self._work, "console.log")
        self._steps = 0
        self._proc: Process | None = None
        self._virtiofsd: Process | None = None
        self._ports: HostPorts | None = None
        self._progress = progress
        self._on_console = on_console
        self._stage = ""  # how far the boot is, from the console's markers
        self._console_seen = 0
        self._stdin_taken = False
        self.command: list[str] = []  # QEMU's command line
        # Until close(), a SIGTERM or SIGHUP unwinds to it (the guest is
        # killed) instead of leaving QEMU running without its lkm.
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(ending_on_signals())
        if share not in ("9p", "virtiofs"):
            raise VmError(f"unknown share '{share}': 9p or virtiofs")
        try:
            os.mkdir(self.scratch)
            initrd = os.path.join(self._work, "initrd.cpio")
            with open(initrd, "wb") as f:
                f.write(build_initramfs(moddir, kernel, share, modprobe, headers or ""))
            image = bootable_image(kernel_image)
            self.accel = accel or ("kvm" if kvm_usable(image) else "tcg")
            socket = None
            if share == "virtiofs":
                socket = os.path.join(self._work, "virtiofs.sock")
                self._virtiofsd = virtiofs.start_daemon(socket)
            cmd = qemu_command(
                image,
                initrd,
                self.scratch,
                self.console_path,
                memory,
                self.accel,
                socket,
                panic_on_oops,
                append,
                extra,
                self._work,
            )
            self.command = cmd
            self._proc = start(cmd, stdin=NULL, stdout=NULL, stderr=PIPE)
            self._set_stage("booting")
            proc = self._proc
            try:
                self._ports = HostPorts(self._work, alive=lambda: proc.poll() is None)
            except PortError:
                if proc.poll() is not None:  # QEMU refused its command line: say why
                    self._fail("at its start")
                raise
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> VmSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def console(self) -> str:
        return _read(self.console_path)

    def run(
        self,
        command: list[str] | str,
        timeout: float | None = 120.0,
        cwd: str | None = None,
        *,
        stdin: int | None = None,
        output: Callable[[int, bytes], None] | None = None,
        terminal: Terminal | None = None,
    ) -> StepResult:
        """Run ``command`` (argv, or a shell script) as root in the guest.

        ``stdin``: a file descriptor the command reads to its end (one
        step per session; by default it reads ``/dev/null``). ``output``
        gets (1 or 2, bytes) as the command writes its stdout or stderr
        (the result holds all of it too). ``terminal`` is joined to the
        guest's console (``/dev/hvc0``) while the command runs, for a shell
        the command starts there (``lkm try --shell``). ``timeout`` None:
        no limit."""
        if stdin is not None:
            if self._stdin_taken:
                raise VmError("a session forwards stdin to one step only")
            self._stdin_taken = True
        text = command if isinstance(command, str) else shlex.join(command)
        step, console_start = self._submit(text, cwd, "stdin" if stdin is not None else "")
        assert self._ports is not None
        streams = StepStreams(self._ports, step, output, stdin, terminal)
        status = self._await_step(step, timeout, text, streams)
        return StepResult(
            text,
            status,
            _read_bytes(step + ".out"),
            _read_bytes(step + ".err"),
            _read_bytes(self.console_path)[console_start:].decode(errors="replace"),
        )

    def shell(self, terminal: Terminal, cwd: str | None = None) -> int:
        """An interactive shell on the guest's console, joined to
        ``terminal`` (see :mod:`lkm.vm.shell`); its exit status."""
        from lkm.vm.shell import shell_script

        script = shell_script(self.kernel, terminal.size(), terminal.term())
        step, _ = self._submit(script, cwd, "tty")
        assert self._ports is not None
        streams = StepStreams(self._ports, step, terminal=terminal)
        return self._await_step(step, None, "the shell", streams)

    def _submit(self, text: str, cwd: str | None, mode: str) -> tuple[str, int]:
        """Hand step ``text`` to the guest (``mode``: "", "stdin" or "tty",
        see :func:`lkm.vm.initramfs.init_script`); its path without suffix,
        and where the console log stood."""
        where = cwd if cwd is not None else os.getcwd()
        step = os.path.join(self.scratch, f"step-{self._steps}")
        self._steps += 1
        # Arguments are bytes to the guest's shell too: surrogate escapes
        # (lkm's text for bytes that are not UTF-8) go back to those bytes.
        with open(step + ".tmp-cmd", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(f"cd {shlex.quote(where)} 2>/dev/null || cd /\n{text}\n")
        if mode:
            with open(f"{step}.{mode}", "w"):
                pass
        console_start = _size(self.console_path)
        os.rename(step + ".tmp-cmd", step + ".cmd")
        return step, console_start

    def _await_step(self, step: str, timeout: float | None, what: str, streams: StepStreams) -> int:
        """Move the step's streams until it ends; its exit status."""
        try:
            self._wait_for(step + ".status", timeout, what, streams)
            streams.finish()
        except TerminalEscape as exc:
            self._kill()
            raise VmError(str(exc), console_tail(self.console)) from None
        finally:
            streams.close()
        with open(step + ".status") as f:
            return int(f.read().strip() or "1")

    def _wait_for(self, path: str, timeout: float | None, what: str, streams: StepStreams) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout if timeout is not None else None
        while not os.path.exists(path):
            if self._proc.poll() is not None:
                self._fail(f"before '{what}' finished")
            if deadline is not None and time.monotonic() > deadline:
                self._kill()
                raise VmError(f"'{what}' ran past {timeout:.0f} s", console_tail(self.console))
            if self._stage != "ready" or self._on_console is not None:
                self._watch_boot()
            if self._stage == "ready":
                streams.attach_terminal()
            streams.wait(_POLL)

    def _watch_boot(self) -> None:
        """Follow the boot through the init script's markers on the console."""
        try:
            with open(self.console_path, "rb") as f:
                f.seek(self._console_seen)
                new = f.read()
        except FileNotFoundError:
            return
        lines = new.split(b"\n")
        self._console_seen += len(new) - len(lines[-1])  # whole lines only
        for line in lines[:-1]:
            if self._on_console is not None:
                self._on_console(line)
            if line.startswith(b"lkm-vm: ") and line[8:].strip() in (b"init", b"ready"):
                self._set_stage(line[8:].strip().decode())

    def _set_stage(self, stage: str) -> None:
        if stage != self._stage:
            self._stage = stage
            if self._progress is not None:
                self._progress(stage)

    def _fail(self, when: str) -> None:
        log = self.console
        output = self._proc.error_output() if self._proc is not None else b""
        stderr = output.decode(errors="replace")
        if "Kernel panic" in log:
            reason = "the kernel panicked"
        elif "Oops" in log or "BUG:" in log:
            reason = "the kernel oopsed"
        else:
            reason = "the VM stopped"
        detail = f"\nqemu: {stderr.strip()}" if stderr.strip() else ""
        raise VmError(f"{reason} {when}{detail}", console_tail(log))

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def close(self, timeout: float = 30.0) -> None:
        """Power the guest off (killing it if it does not stop) and clean up."""
        if sys.exc_info()[0] is Terminated:
            self._kill()  # a signal ends lkm: no time for a clean power-off
        if self._proc is not None and self._proc.poll() is None:
            with open(os.path.join(self.scratch, "quit"), "w"):
                pass
            if self._proc.wait(timeout) is None:
                self._kill()
        if self._proc is not None:
            self._proc.close()
        if self._ports is not None:
            self._ports.close()
        if self._virtiofsd is not None:
            self._virtiofsd.close()
        shutil.rmtree(self._work, ignore_errors=True)
        self._signals.close()


def run(
    kernel_image: str,
    moddir: str,
    kernel: str,
    command: list[str],
    timeout: float = 120.0,
    memory: str = "1G",
    accel: str | None = None,
    console: str | None = None,
    share: str = "9p",
    modprobe: str = DEFAULT_MODPROBE,
) -> VmResult:
    """Boot ``kernel_image`` (modules in ``moddir``), run ``command``, power off."""
    with VmSession(
        kernel_image, moddir, kernel, memory, accel, console, share, modprobe=modprobe
    ) as vm:
        step = vm.run(command, timeout)
        console = vm.console
    return VmResult(step.status, step.stdout, step.stderr, console)


# -- KVM or TCG ---------------------------------------------------------------


def kvm_usable(
    kernel_image: str, cache_dir: str | None = None, dev: str = "/dev", proc: str = "/proc"
) -> bool:
    """Whether KVM can boot ``kernel_image`` here; remembered per host boot
    (``/proc``'s boot id). ``dev``, ``proc``: the host's directories."""
    if not os.access(f"{dev}/kvm", os.R_OK | os.W_OK):
        return False
    cache = _kvm_cache_path(cache_dir, proc)
    remembered = _read(cache).strip()
    if remembered in ("kvm", "tcg"):
        return remembered == "kvm"
    usable = _probe_kvm(kernel_image)
    if make_cache_dir(os.path.dirname(cache)):
        with open(cache, "w") as f:
            f.write("kvm\n" if usable else "tcg\n")
    return usable


def _kvm_cache_path(cache_dir: str | None, proc: str) -> str:
    boot_id = _read(f"{proc}/sys/kernel/random/boot_id").strip() or "unknown"
    if cache_dir:
        return os.path.join(cache_dir, KVM_PROBE, boot_id)
    return cache_path(KVM_PROBE, boot_id)


def _probe_kvm(kernel_image: str) -> bool:
    """Boot under KVM with no initramfs: a working KVM prints the kernel's
    banner on the console well within the probe time; a broken one stops
    with an internal error or never gets there."""
    with tempfile.TemporaryDirectory(prefix="lkm-kvm-probe-") as work:
        console = os.path.join(work, "console")
        cmd = [
            "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}", "-kernel", kernel_image,
            "-append", "console=ttyS0 panic=-1",
        ]  # fmt: skip
        with start(cmd, stdin=NULL, stdout=NULL, stderr=NULL) as probe:
            deadline = time.monotonic() + KVM_PROBE_SECONDS
            while time.monotonic() < deadline and probe.poll() is None:
                if "Linux version" in _read(console):
                    return True
                time.sleep(0.05)
            return False


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""
