"""``lkm try``: build a module, load it into a disposable real kernel, test it,
unload it, and say what the kernel made of it.

The phases: kbuild against the headers of the kernel to boot
(:mod:`lkm.workflows.build`); boot that kernel under QEMU with the host's
root visible (:class:`lkm.vm.qemu.VmSession`, set so that an oops does not
stop the guest); then one step in the guest (:mod:`lkm.workflows.try_guest`)
loads the modules in dependency order, runs the test command, unloads them
and reports the kernel log, ``/proc/modules`` lines and taint. This side
turns that into a :class:`TryReport`: what failed and why in plain words,
the taint flags the modules caused, and each oops or warning with its call
trace.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from lkm.errors import LkmError
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import Any

    from lkm.vm.boot_kernel import BootKernel
    from lkm.vm.qemu import VmSession
    from lkm.vm.terminal import Terminal
    from lkm.workflows.build import Headers
    from lkm.workflows.gdb import GdbRequest, GdbStub

# The kernel's taint bits (Documentation/admin-guide/tainted-kernels.rst):
# bit -> (letter, what it means).
TAINT_FLAGS = {
    0: ("P", "proprietary module was loaded"),
    1: ("F", "module was force loaded"),
    2: ("S", "kernel running on an out of specification system"),
    3: ("R", "module was force unloaded"),
    4: ("M", "processor reported a Machine Check Exception"),
    5: ("B", "bad page referenced or some unexpected page flags"),
    6: ("U", "taint requested by userspace application"),
    7: ("D", "kernel died recently, i.e. there was an OOPS or BUG"),
    8: ("A", "an ACPI table was overridden by user"),
    9: ("W", "kernel issued warning"),
    10: ("C", "staging driver was loaded"),
    11: ("I", "workaround for bug in platform firmware applied"),
    12: ("O", "externally-built (out-of-tree) module was loaded"),
    13: ("E", "unsigned module was loaded"),
    14: ("L", "soft lockup occurred"),
    15: ("K", "kernel has been live patched"),
    16: ("X", "auxiliary taint, defined for and used by distros"),
    17: ("T", "kernel was built with the struct randomization plugin"),
    18: ("N", "an in-kernel test has been run"),
}

# Errors the module loader itself returns, before the module's init runs
# (kernel/module/main.c), worded for someone who just wrote the module.
_LOADER_ERROR_TEXT = {
    errno.ENOEXEC: "the kernel rejected the file: built for another kernel, or corrupt",
    errno.ENOENT: "the module uses a symbol this kernel does not have (see the kernel log)",
    errno.EEXIST: "a module of that name is already loaded",
    errno.EINVAL: "invalid module parameters, or a module the kernel cannot take (see the log)",
    errno.ESRCH: "a symbol version does not match this kernel's",
    errno.EKEYREJECTED: "the module's signature was rejected",
    errno.ENOKEY: "the module is not signed with a key this kernel trusts",
    errno.EPERM: "loading modules is not permitted (module signature enforcement or lockdown)",
}

# Where an oops, BUG or WARNING starts in the kernel log, and where it ends.
_INCIDENT_START = re.compile(
    r"^(BUG: |Oops|general protection fault|kernel BUG at |WARNING: |"
    r"Unable to handle kernel|UBSAN: |divide error|invalid opcode)"
)
_INCIDENT_END = re.compile(r"^---\[ end trace ")
# After an oops's end marker x86 prints the registers once more.
_REGISTERS_AGAIN = re.compile(r"^(RIP|Code|RSP|RAX|RDX|RBP|R10|R13|FS|CS|CR2|PKRU): ")

# Kernel log lines that point at a mistake in the module, and what to do
# about it in plain words: one table (pattern -> explanation, formatted with
# the pattern's named groups); each line found becomes a problem of the try.
_LOG_EXPLANATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # do_init_module() (kernel/module/main.c) loads the module anyway, after
    # this warning and a stack dump: a positive value is neither 0 nor -E.
    (
        re.compile(
            r"'(?P<module>[^']+)'->init suspiciously returned (?P<value>\d+), "
            r"it should follow 0/-E convention"
        ),
        "{module}: its init function returned {value}; return 0 when it succeeds and a "
        "negative error code (-ENOMEM, -ENODEV, ...) when it fails (the kernel loaded it "
        "anyway and dumped the stack)",
    ),
)

GUEST_TIMEOUT = 900.0


class TryError(LkmError):
    """``lkm try`` could not start; the message says why."""


def taint_letters(mask: int) -> list[tuple[str, str]]:
    """The (letter, meaning) of each taint bit set in ``mask``."""
    return [flag for bit, flag in sorted(TAINT_FLAGS.items()) if mask & (1 << bit)]


def load_order(paths: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The built modules as (name, path), each after the built modules it
    depends on; and the modules they depend on that were not built (the
    booted kernel's own, loaded first as modprobe would)."""
    from lkm.formats.module_file import module_name_from_path, open_module

    depends: dict[str, list[str]] = {}
    path_of: dict[str, str] = {}
    for path in paths:
        name = module_name_from_path(path)
        path_of[name] = path
        with open_module(path) as module:
            fields = dict(module.modinfo() or [])
        depends[name] = [d for d in fields.get("depends", "").split(",") if d]
    ordered: list[tuple[str, str]] = []
    external: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting or any(done == name for done, _ in ordered):
            return  # a cycle cannot be loaded anyway; the kernel will say so
        visiting.add(name)
        for dependency in depends[name]:
            if dependency in depends:
                visit(dependency)
            elif dependency not in external:
                external.append(dependency)
        ordered.append((name, path_of[name]))

    for name in sorted(depends):
        visit(name)
    return ordered, external


class Call(Record):
    """One system call (or modprobe) the guest made for a module."""

    call: str  # insmod, rmmod or modprobe
    module: str
    seconds: float
    errno: int | None = None
    signal: int | None = None  # the calling task was killed (an oops)
    error: str | None = None  # lkm could not make the call
    gone: bool = False  # rmmod found the module already unloaded

    @property
    def failed(self) -> bool:
        return self.errno is not None or self.signal is not None or self.error is not None

    def as_json(self) -> dict[str, object]:
        return {
            "call": self.call,
            "module": self.module,
            "ok": not self.failed,
            "errno": self.errno,
            "error": self.error,
            "signal": self.signal,
            "gone": self.gone,
            "seconds": self.seconds,
        }


class LogRecord(Record):
    phase: str  # load, test or unload
    level: int
    usec: int
    text: str

    def as_json(self) -> dict[str, object]:
        from lkm.formats.kmsg import LEVELS

        return {
            "phase": self.phase,
            "usec": self.usec,
            "level": LEVELS[self.level],
            "message": self.text,
        }

    def show(self) -> str:
        """As dmesg shows it."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


class TestRun(Record):
    status: int
    stdout: str
    stderr: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "seconds": self.seconds,
        }


class GuestReport(Record):
    """What :mod:`lkm.workflows.try_guest` saw, parsed from its JSON."""

    taint_before: int
    taint_after: int
    load: tuple[Call, ...]
    unload: tuple[Call, ...]
    lsmod: tuple[str, ...]
    module_taint: dict[str, str]
    parameters: dict[str, dict[str, str]]
    test: TestRun | None
    log: tuple[LogRecord, ...]
    loaded: tuple[dict[str, object], ...] = ()  # lsmod --json's records of the same modules

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuestReport:
        test = data.get("test")
        log = [
            LogRecord(**record)
            for phase in ("load", "test", "unload")
            for record in data.get(f"log_{phase}", [])
        ]
        return cls(
            data["taint_before"],
            data["taint_after"],
            tuple(Call(**call) for call in data["load"]),
            tuple(Call(**call) for call in data["unload"]),
            tuple(data["lsmod"]),
            data["module_taint"],
            data["parameters"],
            TestRun(**test) if test is not None else None,
            tuple(log),
            tuple(data["loaded"]),
        )


class Incident:
    """An oops, BUG or warning in the kernel log, with its call trace."""

    __slots__ = ("lines", "phase", "positions")

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.lines: list[str] = []
        self.positions: list[int] = []  # where its lines are in the log

    @property
    def title(self) -> str:
        return self.lines[0]

    def summary(self) -> list[str]:
        """The title, where it happened (the first RIP) and the reliable
        frames of the first call trace (``?`` frames are guesses)."""
        out = [self.title]
        out += [line for line in self.lines if line.startswith("RIP: ")][:1]
        if "Call Trace:" in self.lines:
            out.append("Call Trace:")
            for line in self.lines[self.lines.index("Call Trace:") + 1 :]:
                frame = line.strip()
                if frame in ("<TASK>", "<IRQ>", "</IRQ>"):
                    continue
                if frame == "</TASK>" or not line.startswith(" "):
                    break
                if not frame.startswith("? "):
                    out.append(f"  {frame}")
        return out


def find_incidents(records: Iterable[tuple[str, str]]) -> list[Incident]:
    """Oopses and warnings among (phase, kernel log line), each up to its end marker."""
    incidents: list[Incident] = []
    current: Incident | None = None
    for position, (phase, text) in enumerate(records):
        ended = incidents[-1] if incidents and current is None else None
        follows = ended is not None and ended.positions[-1] == position - 1
        if ended is not None and follows and _REGISTERS_AGAIN.match(text):
            ended.lines.append(text)
            ended.positions.append(position)
            continue
        if current is None and _INCIDENT_START.match(text):
            current = Incident(phase)
            incidents.append(current)
        if current is not None:
            current.lines.append(text)
            current.positions.append(position)
            if _INCIDENT_END.match(text):
                current = None
    return incidents


def explain_log(lines: Iterable[str]) -> list[str]:
    """One line for each kernel log line that points at a mistake in the module."""
    found = []
    for text in lines:
        for pattern, explanation in _LOG_EXPLANATIONS:
            match = pattern.search(text)
            if match:
                found.append(explanation.format(**match.groupdict()))
    return found


def explain_load_failure(call: Call) -> str:
    """Why loading a module failed, in one line."""
    if call.signal is not None:
        return f"{call.module}: the task loading it was killed (signal {call.signal}): see the oops"
    if call.error is not None or call.errno is None:
        return f"{call.module}: {call.error}"
    symbol = errno.errorcode.get(call.errno, str(call.errno))
    what = f"{os.strerror(call.errno)} (-{symbol})"
    if call.errno in _LOADER_ERROR_TEXT:
        return f"{call.module}: {what}: {_LOADER_ERROR_TEXT[call.errno]}"
    return f"{call.module}: {what}: its init function returned -{symbol}, so it was not loaded"


class TryReport:
    """Everything one ``lkm try`` found out; :meth:`lines` renders it."""

    def __init__(self, directory: str, kernel: str, headers: str) -> None:
        self.directory = directory
        self.kernel = kernel
        self.headers = headers
        self.modules: list[tuple[str, str]] = []
        self.seconds: dict[str, float] = {}  # phase -> wall time
        self.problems: list[str] = []  # each a line saying what went wrong
        self.notes: list[str] = []  # the build's warnings a module may not survive
        self.guest: GuestReport | None = None
        self.incidents: list[Incident] = []
        self.console_tail = ""  # when the VM itself failed

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def taint_caused(self) -> int:
        if self.guest is None:
            return 0
        return self.guest.taint_after & ~self.guest.taint_before

    def as_json(self) -> dict[str, object]:
        """lkm try --json's record (lkm/schemas/try.schema.json)."""
        # A try that never reached the guest (a failed build or boot) has
        # the guest's keys too, empty.
        guest = self.guest or GuestReport(0, 0, (), (), (), {}, {}, None, ())
        return {
            "directory": self.directory,
            "kernel": self.kernel,
            "ok": self.ok,
            "modules": [{"module": name, "path": path} for name, path in self.modules],
            "load": [call.as_json() for call in guest.load],
            "unload": [call.as_json() for call in guest.unload],
            "loaded": list(guest.loaded),
            "parameters": dict(guest.parameters),
            "test": None if guest.test is None else guest.test.as_json(),
            "taints": [
                {"letter": letter, "reason": why}
                for letter, why in taint_letters(self.taint_caused)
            ],
            "log": [record.as_json() for record in guest.log],
            "incidents": [
                {"phase": i.phase, "title": i.title, "summary": i.summary()[1:]}
                for i in self.incidents
            ],
            "notes": list(self.notes),
            "problems": list(self.problems),
            "seconds": dict(self.seconds),
        }

    def lines(self) -> list[str]:
        """The report after the build output, as ``lkm try`` prints it."""
        out: list[str] = []
        if self.guest is not None:
            out += _guest_lines(self.guest, self.incidents)
            caused = taint_letters(self.taint_caused)
            flags = ", ".join(f"{letter} ({why})" for letter, why in caused)
            out.append(f"taint: {flags or 'none'}")
        for incident in self.incidents:
            title, *rest = incident.summary()
            out.append(f"{incident.phase}: {title}")
            out += [f"  {line}" for line in rest]
        if self.console_tail:
            out.append("console (last lines):")
            out += [f"  {line}" for line in self.console_tail.splitlines()]
        out += [f"note: {note}" for note in self.notes]
        out += [f"problem: {problem}" for problem in self.problems]
        timing = ", ".join(f"{phase} {secs:.1f} s" for phase, secs in self.seconds.items())
        out.append(f"{'ok' if self.ok else 'FAILED'} ({timing})")
        return out


def _guest_lines(guest: GuestReport, incidents: list[Incident]) -> list[str]:
    out = [f"{call.call} {call.module}: {'FAILED' if call.failed else 'ok'}" for call in guest.load]
    if len(guest.lsmod) > 1:  # more than lsmod's header
        out += [f"  {line}" for line in guest.lsmod]
    for name, values in guest.parameters.items():
        out += [f"  /sys/module/{name}/parameters/{k} = {v}" for k, v in values.items()]
    if guest.test is not None:
        out.append(f"test: exit status {guest.test.status}")
        out += [f"  | {line}" for line in guest.test.stdout.splitlines()]
        out += [f"  ! {line}" for line in guest.test.stderr.splitlines()]
    for call in guest.unload:
        state = "already unloaded by the test" if call.gone else "FAILED" if call.failed else "ok"
        out.append(f"rmmod {call.module}: {state}")
    # An incident's lines after its title are summarised below the log.
    hidden = {position for incident in incidents for position in incident.positions[1:]}
    out.append(f"kernel log ({len(guest.log)} lines):")
    for position, record in enumerate(guest.log):
        if position not in hidden:
            shown = f"  {record.phase:<6} {record.show()}"
            indent = " " * (shown.index("] ") + 2)  # continuation lines, as dmesg does
            out.append(shown.replace("\n", "\n" + indent))
        elif position - 1 not in hidden:
            out.append("         [...] (the trace is summarised below; --console keeps it whole)")
    return out


def _review(
    report: TryReport, guest: GuestReport, kernel_reason: Callable[[str], str | None]
) -> None:
    """Turn the guest's report into problems and incidents;
    ``kernel_reason``: why the kernel refused a module (by name), as lkm
    check finds it."""
    from lkm.workflows.check import LOADER_ERRORS

    report.guest = guest
    for call in guest.load:
        if call.failed:
            report.problems.append(f"load failed: {explain_load_failure(call)}")
            refused = call.call == "insmod" and call.errno in LOADER_ERRORS
            reason = kernel_reason(call.module) if refused else None
            if reason is not None:
                report.problems.append(f"the kernel's reason (lkm check): {reason}")
    if guest.test is not None and guest.test.status != 0:
        report.problems.append(f"the test command exited with status {guest.test.status}")
    for call in guest.unload:
        if call.failed:
            why = os.strerror(call.errno) if call.errno else f"killed (signal {call.signal})"
            report.problems.append(f"unload failed: {call.module}: {why}")
    report.problems += explain_log(record.text for record in guest.log)
    report.incidents = find_incidents((record.phase, record.text) for record in guest.log)
    for incident in report.incidents:
        report.problems.append(f"the kernel logged '{incident.title}' during {incident.phase}")


def _time_guest_phases(report: TryReport, total: float) -> None:
    """Split the guest step's wall time into its phases; what is left is the
    guest's Python start-up and the step's hand-over."""
    guest = report.guest
    assert guest is not None
    report.seconds["load"] = sum(call.seconds for call in guest.load)
    if guest.test is not None:
        report.seconds["test"] = guest.test.seconds
    report.seconds["unload"] = sum(call.seconds for call in guest.unload)
    report.seconds["guest start-up"] = total - sum(
        report.seconds.get(phase, 0.0) for phase in ("load", "unload", "test")
    )


def guest_command(
    modules: list[tuple[str, str]],
    kernel_dependencies: list[str],
    test: list[str] | None,
    cwd: str,
    **step: object,
) -> list[str]:
    """The guest step: this interpreter running :mod:`lkm.workflows.try_guest`
    (``step``: the keys of one of its two ``--gdb`` steps)."""
    plan = {
        "modules": modules,
        "kernel_dependencies": kernel_dependencies,
        "test": test,
        "cwd": cwd,
        **step,
    }
    from lkm.workflows.try_guest import guest_argv

    return guest_argv(plan)


def try_module(
    directory: str = ".",
    kernel: str | None = None,
    test: list[str] | None = None,
    jobs: int | None = None,
    output: Callable[[str], None] = print,
    console: str | None = None,
    timeout: float = GUEST_TIMEOUT,
    gdb: GdbRequest | None = None,
    shell: Terminal | None = None,
    progress: Callable[[str], None] | None = None,
    make_vars: Sequence[str] = (),
) -> TryReport:
    """Build the module in ``directory`` for ``kernel`` (as ``lkm vm`` names
    kernels, or a headers tree), and try it in that kernel. The VM boots
    while the module builds (QEMU on one core, make on the other). With
    ``gdb``, the VM has QEMU's gdb stub and is held after loading until gdb
    (or the user) says go (see :func:`_debug_in_guest`). With ``shell``, an
    interactive shell in the guest on that terminal after loading (after
    gdb's go), before the test command and the unloading. ``progress``:
    told how far the VM's boot is (see :class:`lkm.vm.qemu.VmSession`),
    once the build's output has ended. ``make_vars``: ``NAME=VALUE`` words
    for kbuild's make."""
    from lkm.vm.qemu import VmError
    from lkm.workflows.gdb import GdbStub

    directory = os.path.abspath(directory)
    boot, headers = _kernel_and_headers(kernel)
    report = TryReport(directory, boot.release, headers.path)
    output(f"== build {directory} against {headers.path}")
    stub = GdbStub() if gdb is not None else None
    held_progress = _AfterTheBuild(progress)
    try:
        with _booting(boot, headers.path, console, stub, held_progress) as vm:
            kernel_dependencies = _build(report, headers.path, jobs, output, make_vars)
            names = " ".join(name for name, _ in report.modules)
            output(f"== boot {boot.release} and try {names}")
            held_progress.release()
            started = time.monotonic()
            vm.run("true", timeout)
            report.seconds["boot"] = time.monotonic() - started
            started = time.monotonic()
            if stub is None and shell is None:
                command = guest_command(report.modules, kernel_dependencies, test, directory)
                data = _guest_json(vm, command, timeout)
            else:
                held = _Held(
                    report, boot.image, kernel_dependencies, test, gdb, stub, output, shell
                )
                data = _debug_in_guest(vm, held, timeout)
            reasons = partial(check_reason, report.modules, boot, headers.path)
            _review(report, GuestReport.from_json(data), reasons)
            waited = report.seconds.get("gdb", 0) + report.seconds.get("shell", 0)
            _time_guest_phases(report, time.monotonic() - started - waited)
    except VmError as exc:
        report.problems += exc.reason.splitlines()
        report.console_tail = exc.console
        report.incidents = find_incidents(("the VM", line) for line in _strip_times(exc.console))
    finally:
        if stub is not None:
            stub.close()
    return report


def _kernel_and_headers(kernel: str | None) -> tuple[BootKernel, Headers]:
    """The kernel to boot and the headers to build against, from what
    ``--kernel`` says (a headers tree, an image, a release or series)."""
    from lkm.vm.boot_kernel import choose_kernel
    from lkm.workflows.build import find_headers

    if kernel is not None and os.path.isdir(kernel):
        headers = find_headers(kernel)
        return choose_kernel(headers.version), headers
    boot = choose_kernel(kernel)
    # An image path: the headers unpacked beside it, else the release's.
    beside = kernel is not None and os.path.isfile(kernel)
    return boot, find_headers(kernel if beside else boot.release)


def _booting(
    boot: BootKernel,
    headers: str,
    console: str | None,
    stub: GdbStub | None,
    progress: Callable[[str], None],
) -> VmSession:
    """The VM, started: it boots while the caller goes on."""
    from lkm.vm.qemu import VmSession
    from lkm.workflows.gdb import KERNEL_APPEND
    from lkm.workflows.kernel_store import indexed_module_tree

    return VmSession(
        boot.image,
        indexed_module_tree(boot.modules, boot.release),
        boot.release,
        console=console,
        panic_on_oops=False,
        append=KERNEL_APPEND if stub is not None else "",
        extra=stub.qemu_args() if stub is not None else (),
        headers=headers,
        progress=progress,
    )


def _build(
    report: TryReport,
    headers: str,
    jobs: int | None,
    output: Callable[[str], None],
    make_vars: Sequence[str],
) -> list[str]:
    """Build the module into ``report`` (its modules in load order, notes,
    time); the booted kernel's modules they need."""
    from lkm.workflows.build import build

    started = time.monotonic()
    built = build(report.directory, headers, jobs, output, make_vars)
    report.seconds["build"] = time.monotonic() - started
    report.notes = list(built.notes)
    if not built.modules:
        raise TryError(f"{report.directory}: the build made no .ko file")
    report.modules, kernel_dependencies = load_order(list(built.modules))
    return kernel_dependencies


class _AfterTheBuild:
    """The boot's progress, held back while the build's output streams
    (one line rewritten in place would tangle with make's), then shown
    from its latest stage on."""

    def __init__(self, show: Callable[[str], None] | None) -> None:
        self.show = show
        self.held: str | None = None
        self.released = False

    def __call__(self, stage: str) -> None:
        if self.released and self.show is not None:
            self.show(stage)
        else:
            self.held = stage

    def release(self) -> None:
        self.released = True
        if self.held is not None and self.show is not None:
            self.show(self.held)


def check_reason(
    modules: list[tuple[str, str]], boot: BootKernel, headers: str, name: str
) -> str | None:
    """Why ``boot`` refuses the built module ``name``, as ``lkm check`` of
    the built modules together finds it (with its advice); None when it
    finds no reason or cannot read the kernel's facts."""
    from lkm.model.kernels import architecture
    from lkm.model.load_check import kernel_facts
    from lkm.workflows.check import check_all

    if name not in dict(modules):
        return None
    try:
        arch = architecture(boot.release, "amd64")
        facts = kernel_facts(boot.release, arch, boot.modules, headers, boot.image)
        built = [(path, "") for _, path in modules]
        verdicts = check_all(built, facts, sig_enforce=False, running=False)
    except LkmError:
        return None
    verdict = next(v for (n, _), v in zip(modules, verdicts, strict=True) if n == name)
    reason = verdict.reason
    if reason is None:
        return None
    return f"{reason.message} ({reason.advice})" if reason.advice else reason.message


def _guest_json(vm: VmSession, command: list[str], timeout: float) -> dict[str, Any]:
    """Run a guest helper step; the report it printed."""
    from lkm.vm.qemu import VmError
    from lkm.workflows.try_guest import read_report

    step = vm.run(command, timeout)
    if step.status != 0:
        raise VmError(_helper_failure(step.status, step.stderr), step.kmsg)
    try:
        return read_report(step.stdout)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise VmError(f"the guest helper's report is unreadable: {exc}", step.kmsg) from None


class _Held(Record):
    """What ``lkm try --gdb`` needs to hold the VM for gdb (and ``--shell``
    for a shell)."""

    report: TryReport
    image: str  # the kernel image booted (where its debug vmlinux may be)
    kernel_dependencies: list[str]
    test: list[str] | None
    request: GdbRequest | None
    stub: GdbStub | None
    output: Callable[[str], None]
    shell: Terminal | None = None


def _debug_in_guest(vm: VmSession, held: _Held, timeout: float) -> dict[str, Any]:
    """Load (the first guest step), write and print the gdb commands, wait
    for go, then test and unload (the second step, with no host time-out:
    the VM may sit at a breakpoint for as long as someone debugs; the guest
    still ends a test command after its own time-out). When a load failed,
    nothing is held: what loaded is unloaded at once."""
    report = held.report
    modules, directory = report.modules, report.directory
    load = guest_command(modules, held.kernel_dependencies, None, directory, step="load")
    data = _guest_json(vm, load, timeout)
    loaded: list[str] = data["loaded"]
    all_loaded = len(loaded) == len(modules)
    if all_loaded:
        if held.request is not None and held.stub is not None:
            _hold_for_gdb(held, data["sections"])
        if held.shell is not None:
            _shell_in_guest(vm, held, held.shell)
    rest = guest_command(
        modules,
        held.kernel_dependencies,
        held.test if all_loaded else None,
        directory,
        step="test",
        loaded=loaded,
        kmsg_sequence=data["kmsg_sequence"],
    )
    data.update(_guest_json(vm, rest, float("inf")))
    return data


def _shell_in_guest(vm: VmSession, held: _Held, terminal: Terminal) -> None:
    """``--shell``: a shell in the guest, in the module's directory, until it exits."""
    report = held.report
    names = " ".join(name for name, _ in report.modules)
    then = "test and unload" if held.test else "unload"
    held.output(f"== shell in the VM with {names} loaded; exit it to {then}")
    started = time.monotonic()
    status = vm.shell(terminal, cwd=report.directory)
    report.seconds["shell"] = time.monotonic() - started
    held.output(f"== the shell exited with status {status}: {then}")


def _hold_for_gdb(held: _Held, sections: dict[str, list[list[Any]]]) -> None:
    from lkm.workflows.gdb import (
        GDB_FILE,
        GO_SUFFIX,
        LoadedModule,
        gdb_commands,
        kernel_debug_file,
        remove_go_file,
        wait_for_go,
        write_commands,
    )

    assert held.request is not None and held.stub is not None  # --gdb was asked for
    report, output = held.report, held.output
    script = held.request.script or os.path.join(report.directory, GDB_FILE)
    go = script + GO_SUFFIX
    modules = [
        LoadedModule(name, path, tuple((s, a) for s, a in sections[name]))
        for name, path in report.modules
    ]
    vmlinux = kernel_debug_file(report.kernel, held.image)
    remove_go_file(go)  # a go file left from an earlier run does not count
    lines = gdb_commands(held.stub.target, modules, vmlinux, report.kernel, held.stub.directory, go)
    write_commands(script, lines)
    names = " ".join(name for name, _ in report.modules)
    output(f"== gdb: the VM is held with {names} loaded; the commands are in {script}:")
    for line in lines:
        output(f"  > {line}")
    enter = ", or press Enter here" if held.request.keyboard is not None else ""
    output(f"   debug with: gdb -x {script}")
    output(
        "   then set breakpoints and type lkm-go to run the test command and unload"
        f" (or create {go}{enter})"
    )
    started = time.monotonic()
    said = wait_for_go(go, held.request.keyboard)
    report.seconds["gdb"] = time.monotonic() - started
    output(f"== go ({said}): test and unload")


def _helper_failure(status: int, stderr: bytes) -> str:
    """What the guest helper's failure says: its exit status and the last
    line it wrote (a traceback's last line names the error)."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    said = f": {lines[-1]}" if lines else ""
    return f"the guest helper failed with exit status {status}{said}"


_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


def _strip_times(console: str) -> list[str]:
    return [_TIMESTAMP.sub("", line) for line in console.splitlines()]
