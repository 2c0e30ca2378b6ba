"""The guest half of ``lkm try``: load, test, unload, and watch the kernel.

Runs inside the VM as :func:`guest_argv` says: one Python start for the
whole try, without ``site`` or ``runpy`` and importing no more than it
needs (no ``json``, which pulls in ``re`` and ``enum``): under TCG a bare
start costs 0.3-0.5 s and those imports as much again. The plan comes as
the hex of its :mod:`marshal` bytes (the host made it); the guest loads
the modules in the order given, runs the test command, unloads them
newest first, and prints one report on stdout as a Python literal (the
host reads it with :func:`ast.literal_eval`, which only builds data): what each
system call returned, ``/proc/modules`` lines, the kernel log records of
each phase (read from ``/dev/kmsg``, so nothing else on the console mixes
in) and the kernel's taint before and after.

For ``lkm try --gdb`` the same work is two steps (``"step": "load"``, then
``"step": "test"``): the first also reports where the kernel put each
module's sections, and the VM is held between them while gdb attaches.

Each system call runs in a forked child: when a module's init or exit
function oopses, the kernel kills the calling task, and that must not be
the process that writes the report.
"""

from __future__ import annotations

import os
import sys
import time

from lkm.formats.kmsg import parse_record
from lkm.system.fork import in_child
from lkm.system.kernel import KernelCallError, KernelModules, kmsg_records

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable

TEST_TIMEOUT = 600.0


def failed(result: dict[str, object]) -> bool:
    """Whether a call's result (see :func:`_in_child`) is a failure."""
    return any(key in result for key in ("errno", "signal", "error"))


def _in_child(call: str, target: str, work: Callable[[], None]) -> dict[str, object]:
    """Run ``work()`` in a forked child; the errno, signal or error it ended with."""

    def kernel_call() -> int:
        try:
            work()
        except KernelCallError as exc:
            return exc.code
        return 0

    started = time.monotonic()
    end = in_child(kernel_call)
    result: dict[str, object] = {
        "call": call,
        "module": target,
        "seconds": time.monotonic() - started,
    }
    if end.signal is not None:
        result["signal"] = end.signal
    elif end.error is not None:
        result["error"] = end.error
    elif end.exit_code:
        result["errno"] = end.exit_code
    return result


def _bound(work: Callable[[str], object], argument: str) -> Callable[[], None]:
    """``work(argument)`` as a call without arguments (functools.partial,
    without importing functools)."""

    def call() -> None:
        work(argument)

    return call


class KernelLog:
    """``/dev/kmsg`` from now on (or after record ``after``), drained phase by phase."""

    def __init__(self, kernel: KernelModules, after: int | None = None) -> None:
        if after is None:
            self._fd = kernel.kmsg_from_now()
        else:
            path = os.path.join(kernel.dev, "kmsg")
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_DATA)  # after the last "dmesg --clear", as kmsg()
        self._after = after
        self.sequence = -1 if after is None else after  # the last record drained

    def drain(self, phase: str) -> list[dict[str, object]]:
        """The records written since the last drain, tagged with ``phase``."""
        records = []
        for raw in kmsg_records(self._fd):
            record = parse_record(raw)
            if self._after is not None and record.sequence <= self._after:
                continue
            self.sequence = record.sequence
            records.append(
                {
                    "phase": phase,
                    "level": record.level,
                    "usec": record.microseconds,
                    "text": record.message.decode("utf-8", "replace"),
                }
            )
        return records


def newest_sequence(kernel: KernelModules) -> int:
    """The sequence number of the kernel log's newest record (-1: none)."""
    newest = -1
    for raw in kernel.kmsg():
        newest = parse_record(raw).sequence
    return newest


def _lsmod(kernel: KernelModules, names: set[str]) -> tuple[list[str], list[dict[str, object]]]:
    """What lsmod prints for ``names`` (its header first), and what lsmod
    --json would."""
    from lkm.workflows.live import loaded_modules, lsmod_table

    modules = [m for m in loaded_modules(kernel) if m.name in names]
    return lsmod_table(modules).splitlines(), [m.as_json() for m in modules]


def _run_test(argv: list[str], cwd: str) -> dict[str, object]:
    # Imported only here: the runner's imports cost a quarter second under TCG.
    from lkm.system.run import CommandError, CommandTimeout, ProgramNotFound, run

    # The tools next to this interpreter (lkm itself) come first on PATH.
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}")
    started = time.monotonic()
    try:
        done = run(argv, check=False, cwd=cwd, env=env, timeout=TEST_TIMEOUT)
    except ProgramNotFound:
        return _test_result(127, f"{argv[0]}: command not found\n", started)
    except CommandTimeout:
        return _test_result(124, f"timed out after {TEST_TIMEOUT:.0f} s\n", started)
    except CommandError as exc:
        return _test_result(126, f"{exc}\n", started)
    return {
        "status": done.status,
        "stdout": done.stdout.decode("utf-8", "replace"),
        "stderr": done.stderr.decode("utf-8", "replace"),
        "seconds": time.monotonic() - started,
    }


def _test_result(status: int, stderr: str, started: float) -> dict[str, object]:
    return {
        "status": status,
        "stdout": "",
        "stderr": stderr,
        "seconds": time.monotonic() - started,
    }


def _load_kernel_dependencies(names: list[str]) -> list[dict[str, object]]:
    """Modules of the booted kernel the built ones need, loaded as modprobe would."""
    if not names:
        return []  # the module database is not even opened (0.2 s of imports under TCG)
    from lkm.workflows.modprobe import Modprobe

    results: list[dict[str, object]] = []
    with Modprobe(f"/lib/modules/{os.uname().release}") as modprobe:
        for name in names:
            started = time.monotonic()
            plan = modprobe.load(name)
            seconds = time.monotonic() - started
            result: dict[str, object] = {"call": "modprobe", "module": name, "seconds": seconds}
            if plan.status:
                result["errno"] = -plan.status
                result["error"] = "; ".join(text for _, text in plan.messages)
            results.append(result)
    return results


def load(
    kernel: KernelModules,
    log: KernelLog,
    modules: list[tuple[str, str]],
    kernel_dependencies: list[str],
) -> tuple[dict[str, object], list[str]]:
    """Load ``modules`` ((name, path), in order) after the booted kernel's
    ``kernel_dependencies``; the report's load part and the names loaded."""
    report: dict[str, object] = {"taint_before": kernel.tainted()}
    loads = _load_kernel_dependencies(kernel_dependencies)
    loaded: list[str] = []
    for name, path in modules:
        result = _in_child("insmod", name, _bound(kernel.insert, path))
        loads.append(result)
        if failed(result):
            break
        loaded.append(name)
    report["load"] = loads
    report["log_load"] = log.drain("load")
    shown = {*loaded, *(name.replace("-", "_") for name in kernel_dependencies)}
    report["lsmod"], report["loaded"] = _lsmod(kernel, shown)
    report["module_taint"] = {name: kernel.taint(name) for name in loaded}
    report["parameters"] = {name: kernel.parameters(name) for name in loaded}
    return report, loaded


def test_and_unload(
    kernel: KernelModules, log: KernelLog, loaded: list[str], test: list[str] | None, cwd: str
) -> dict[str, object]:
    """Run ``test`` in ``cwd`` (None: none), unload ``loaded`` newest first;
    the report's rest."""
    report: dict[str, object] = {}
    if test:
        report["test"] = _run_test(test, cwd)
        report["log_test"] = log.drain("test")
    unloads: list[dict[str, object]] = []
    for name in reversed(loaded):
        if kernel.initstate(name) is None:  # the test command unloaded it
            unloads.append({"call": "rmmod", "module": name, "seconds": 0.0, "gone": True})
            continue
        unloads.append(_in_child("rmmod", name, _bound(kernel.remove, name)))
    report["unload"] = unloads
    report["log_unload"] = log.drain("unload")
    report["taint_after"] = kernel.tainted()
    return report


def run(
    modules: list[tuple[str, str]],
    kernel_dependencies: list[str],
    test: list[str] | None,
    cwd: str,
) -> dict[str, object]:
    """Load ``modules`` ((name, path), in order), run ``test`` in ``cwd``,
    unload; the report (see the module's docstring)."""
    kernel = KernelModules()
    log = KernelLog(kernel)
    report, loaded = load(kernel, log, modules, kernel_dependencies)
    all_loaded = len(loaded) == len(modules)
    report.update(test_and_unload(kernel, log, loaded, test if all_loaded else None, cwd))
    return report


# -- lkm try --gdb: two steps, the VM held between them ------------------------
# The load step also reports where the kernel put each module's sections and
# the kernel log's last sequence number; the second step's log starts after
# it, so the records logged between the steps (while gdb holds the VM, or
# from the debugger's own pokes) are the test phase's.


def load_for_debugging(
    modules: list[tuple[str, str]], kernel_dependencies: list[str]
) -> dict[str, object]:
    """The load step of ``lkm try --gdb``: the load report, ``loaded``,
    ``sections`` (name -> [(section, address)]) and ``kmsg_sequence``."""
    from lkm.workflows.gdb import module_sections

    kernel = KernelModules()
    log = KernelLog(kernel, newest_sequence(kernel))
    report, loaded = load(kernel, log, modules, kernel_dependencies)
    report["loaded"] = loaded
    report["sections"] = {name: module_sections(kernel.module_dir(name)) for name in loaded}
    report["kmsg_sequence"] = log.sequence
    return report


def test_and_unload_after_debugging(
    loaded: list[str], test: list[str] | None, cwd: str, kmsg_sequence: int
) -> dict[str, object]:
    """The second step of ``lkm try --gdb``: test and unload, the kernel log
    from after record ``kmsg_sequence``."""
    kernel = KernelModules()
    return test_and_unload(kernel, KernelLog(kernel, kmsg_sequence), loaded, test, cwd)


def guest_argv(plan: dict[str, object]) -> list[str]:
    """The command that runs :func:`main` on ``plan`` in the guest, with
    this interpreter and the import path it has here (the host's root is
    the guest's, read-only): ``-S`` leaves ``site`` out, ``-c`` runpy."""
    import marshal

    start = (
        f"import sys; sys.path[:] = {[p for p in sys.path if p]!r}; "
        "from lkm.workflows.try_guest import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-S", "-c", start, marshal.dumps(plan).hex()]


def read_report(stdout: bytes) -> dict[str, object]:
    """The report :func:`main` printed; ValueError when it is not one."""
    import ast

    report = ast.literal_eval(stdout.decode("utf-8", "surrogateescape").strip())
    if not isinstance(report, dict):
        raise ValueError("not a report")
    return report


def main(argv: list[str]) -> int:
    import marshal

    plan = marshal.loads(bytes.fromhex(argv[0]))
    modules = [(name, path) for name, path in plan["modules"]]
    step = plan.get("step", "all")
    if step == "load":
        report = load_for_debugging(modules, plan["kernel_dependencies"])
    elif step == "test":
        report = test_and_unload_after_debugging(
            plan["loaded"], plan["test"], plan["cwd"], plan["kmsg_sequence"]
        )
    else:
        report = run(modules, plan["kernel_dependencies"], plan["test"], plan["cwd"])
    sys.stdout.write(repr(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
