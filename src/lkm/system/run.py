"""Every process lkm starts goes through here.

Three shapes cover what lkm runs: :func:`run` (to the end, its output
captured or passed through: apt-get, dpkg-deb, kmod's tools, an install
command), :func:`stream` (to the end, each output line handed over as it
comes: make) and :func:`start` (in the background until stopped: QEMU,
virtiofsd). Each logs the command as ``shlex.join`` would write it when
``LKM_TRACE`` is set (or a tracer is installed with :func:`trace_with`),
and turns a program that is missing or cannot be executed, a time-out or
a signal into a :class:`CommandError` whose message is one readable line.

:mod:`subprocess` is imported only when a process is started: a guest
under TCG pays a quarter of a second for its imports, and most lkm runs
start no process at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from lkm.errors import LkmError, one_line
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import resource
    import subprocess
    from typing import IO

# Where a child's standard stream goes: inherited from lkm, /dev/null, a
# pipe lkm reads (or writes, for stdin), stderr into stdout, an open file
# descriptor, or a file object.
INHERIT = "inherit"
NULL = "null"
PIPE = "pipe"
TO_STDOUT = "stdout"
Stream = str | int  # one of the names above, or a file descriptor

_tracer: Callable[[str], None] | None = None


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as a shell would need it typed (for logs and messages)."""
    import shlex

    return shlex.join(argv)


def trace_with(tracer: Callable[[str], None] | None) -> None:
    """Send each command line about to run to ``tracer`` (None: stop)."""
    global _tracer
    _tracer = tracer


def _trace(argv: Sequence[str]) -> None:
    if _tracer is not None:
        _tracer(command_line(argv))
    elif os.environ.get("LKM_TRACE"):
        os.write(2, f"lkm: + {command_line(argv)}\n".encode("utf-8", "surrogateescape"))


class CommandError(LkmError):
    """A command that could not run or did not succeed; one line that
    names it and says what happened (its last line of errors, if any)."""

    def __init__(
        self, argv: Sequence[str], problem: str, status: int | None = None, stderr: bytes = b""
    ) -> None:
        super().__init__(one_line(f"{command_line(argv)}: {problem}"))
        self.argv = tuple(argv)
        self.problem = problem
        self.status = status
        self.stderr = stderr


class ProgramNotFound(CommandError, FileNotFoundError):
    """The program is not installed (or not on ``PATH``): named alone."""

    def __init__(self, argv: Sequence[str]) -> None:
        super().__init__(argv, "command not found")
        self.args = (one_line(f"{argv[0]}: command not found"),)


class CommandTimeout(CommandError, TimeoutError):
    """The command ran past its time-out and was killed; ``stdout`` holds
    what it wrote until then."""

    def __init__(self, argv: Sequence[str], seconds: float, stdout: bytes, stderr: bytes) -> None:
        super().__init__(argv, f"timed out after {seconds:g} s", None, stderr)
        self.stdout = stdout


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def failure(argv: Sequence[str], status: int, stderr: bytes = b"") -> CommandError:
    """The error for a command that ended with ``status`` (negative: the
    signal that killed it, as :mod:`subprocess` reports it)."""
    if status < 0:
        import signal

        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        problem = f"killed by {name}"
    elif status == 127 and not stderr:
        problem = "exit status 127 (a program it runs was not found)"
    else:
        problem = f"failed with exit status {status}"
    last = _last_line(stderr)
    return CommandError(argv, f"{problem}: {last}" if last else problem, status, stderr)


def _not_started(argv: Sequence[str], exc: OSError) -> CommandError:
    if isinstance(exc, FileNotFoundError) and exc.filename in (argv[0], None):
        return ProgramNotFound(argv)
    return CommandError(argv, f"cannot run: {exc.strerror or exc}")


def _stream_arg(stream: Stream) -> int | None:
    import subprocess

    names: dict[str, int | None] = {
        INHERIT: None,
        NULL: subprocess.DEVNULL,
        PIPE: subprocess.PIPE,
    }
    if stream == TO_STDOUT:
        return subprocess.STDOUT
    if isinstance(stream, str):
        return names[stream]
    return stream


class Completed(Record):
    """A command that ran to its end."""

    argv: tuple[str, ...]
    status: int  # exit status; negative: killed by that signal
    stdout: bytes  # b"" unless captured
    stderr: bytes

    @property
    def text(self) -> str:
        """stdout decoded (UTF-8, bad bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    stdin: Stream = NULL,
    input: bytes | None = None,
    stdout: Stream = PIPE,
    stderr: Stream = PIPE,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    executable: str | None = None,
    pass_fds: Sequence[int] = (),
) -> Completed:
    """Run ``argv`` to its end. ``check``: a non-zero status raises
    :class:`CommandError`. ``input`` is written to its stdin. A missing
    program raises :class:`ProgramNotFound`, a time-out
    :class:`CommandTimeout` (the command killed). ``pass_fds``: descriptors
    the command inherits (a jobserver's pipe)."""
    import subprocess

    _trace(argv)
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else _stream_arg(stdin),
            stdout=_stream_arg(stdout),
            stderr=_stream_arg(stderr),
            cwd=cwd,
            env=env,
            executable=executable,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise _not_started(argv, exc) from None
    with popen:
        try:
            out, err = popen.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            out, err = popen.communicate()
            raise CommandTimeout(argv, timeout or 0.0, out or b"", err or b"") from None
    result = Completed(tuple(argv), popen.returncode, out or b"", err or b"")
    if check and result.status != 0:
        raise failure(argv, result.status, result.stderr)
    return result


def stream(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    check: bool = False,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run ``argv`` with stdout and stderr merged, handing each line
    (without its line break) to ``on_line`` as soon as it is written;
    the lines are also returned, as ``stdout``."""
    import subprocess

    _trace(argv)
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise _not_started(argv, exc) from None
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))
        status = proc.wait()
    output = "".join(lines).encode("utf-8", "replace")
    if check and status != 0:
        raise failure(argv, status, output)
    return Completed(tuple(argv), status, output, b"")


class Process:
    """A command running in the background (see :func:`start`). As a
    context manager, leaving kills it if it still runs."""

    def __init__(self, argv: Sequence[str], popen: subprocess.Popen[bytes]) -> None:
        self.argv = tuple(argv)
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        """Its stdout, when started with ``stdout=PIPE``."""
        return self._popen.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        """Its stderr, when started with ``stderr=PIPE``."""
        return self._popen.stderr

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._popen.stdin

    def poll(self) -> int | None:
        """Its exit status if it has ended, else None."""
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status once it ends; None if it still runs after
        ``timeout`` seconds."""
        import subprocess

        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_with_usage(self) -> tuple[int, resource.struct_rusage]:
        """Wait for it to end: its exit status and its resource usage (peak
        memory in ``ru_maxrss``, KiB), as ``wait4`` reports them."""
        _, wait_status, usage = os.wait4(self._popen.pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        self._popen.returncode = status  # reaped here: Popen must not wait again
        return status, usage

    def terminate(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()

    def kill(self) -> None:
        """Kill it (if it still runs) and wait for it."""
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait()

    def error_output(self) -> bytes:
        """What it wrote to a piped stderr (read to the end: only once it
        has ended or been killed)."""
        pipe = self._popen.stderr
        return pipe.read() if pipe is not None and not pipe.closed else b""

    def failure(self) -> CommandError:
        """The error describing how it ended (call once it has)."""
        status = self._popen.poll()
        return failure(self.argv, status if status is not None else -9, self.error_output())

    def close(self) -> None:
        """Kill it if it still runs; close the pipes lkm holds."""
        self.kill()
        for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start(
    argv: Sequence[str],
    *,
    stdin: Stream = NULL,
    stdout: Stream = NULL,
    stderr: Stream = PIPE,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> Process:
    """Start ``argv`` in the background. A missing program raises
    :class:`ProgramNotFound`."""
    import subprocess

    _trace(argv)
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=_stream_arg(stdin),
            stdout=_stream_arg(stdout),
            stderr=_stream_arg(stderr),
            cwd=cwd,
            env=env,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise _not_started(argv, exc) from None
    return Process(argv, popen)


def shell_status(status: int) -> int:
    """A status as the shell reports it: 128 + N for a command killed by
    signal N (what system(3)'s callers see)."""
    return 128 - status if status < 0 else status


__all__ = [
    "INHERIT",
    "NULL",
    "PIPE",
    "TO_STDOUT",
    "CommandError",
    "CommandTimeout",
    "Completed",
    "Process",
    "ProgramNotFound",
    "command_line",
    "failure",
    "run",
    "shell_status",
    "start",
    "stream",
    "trace_with",
]
