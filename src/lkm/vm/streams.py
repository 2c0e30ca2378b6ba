"""A guest step's streams on the host, moved while the step runs.

- stdin: bytes from a host file descriptor into the step's stdin (the
  guest's ``lkm.stdin`` port), its end passed on as end of file;
- stdout and stderr: the step's output files in the 9p scratch directory,
  read as they grow (9p writes reach the host file at once: QEMU's 9p
  server writes each guest ``write`` through, there is no cache to flush);
- a terminal: both ways between the host's terminal and the guest's
  console (``/dev/hvc0``), the terminal in raw mode, its size passed on.

One thread, one ``select`` per round: nothing blocks the loop that also
watches the step's status file, QEMU and the time-out.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable

from lkm.vm.serial import CONSOLE, STDIN, HostPorts
from lkm.vm.terminal import EOF_KEY, Terminal

_CHUNK = 65536
# How long the guest's console may stay quiet before the output of a
# finished shell counts as all there (it is in the socket before the
# step's status file is written; this is slack).
_DRAIN_SECONDS = 0.05
_EOF_AGAIN = 0.5


class Pump:
    """Bytes from ``source`` to ``target`` as either is ready, never blocking
    on a non-blocking target; ``at_end`` runs once the source has ended and
    all it gave is written. ``watch`` sees each piece read (and may raise)."""

    def __init__(
        self,
        source: int,
        target: int,
        at_end: Callable[[], None] | None = None,
        watch: Callable[[bytes], None] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.at_end = at_end
        self.watch = watch
        self.buffer = b""
        self.ended = False  # the source ended (or the target went away)
        self.done = False

    @property
    def wants_read(self) -> bool:
        return not self.ended and not self.buffer

    @property
    def wants_write(self) -> bool:
        return bool(self.buffer)

    def read(self) -> None:
        try:
            data = os.read(self.source, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if self.watch is not None and data:
            self.watch(data)
        self.buffer = data
        self.ended = not data
        self._maybe_done()

    def write(self) -> None:
        try:
            written = os.write(self.target, self.buffer)
        except BlockingIOError:
            return
        except OSError:  # the other side went away: stop, drop the rest
            self.buffer, self.ended = b"", True
            written = 0
        self.buffer = self.buffer[written:]
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.ended and not self.buffer and not self.done:
            self.done = True
            if self.at_end is not None:
                self.at_end()


def pump_round(pumps: list[Pump], seconds: float) -> bool:
    """Wait up to ``seconds`` for any pump to be ready, move what is ready;
    whether anything was."""
    readers = [p.source for p in pumps if p.wants_read]
    writers = [p.target for p in pumps if p.wants_write]
    readable, writable, _ = select.select(readers, writers, [], seconds)
    for pump in pumps:
        if pump.wants_write and pump.target in writable:
            pump.write()
        elif pump.wants_read and pump.source in readable:
            pump.read()
    return bool(readable or writable)


class Tail:
    """A file the guest writes, handed on as it grows."""

    def __init__(self, path: str, write: Callable[[bytes], None]) -> None:
        self.path = path
        self.write = write
        self._file: int | None = None

    def poll(self) -> None:
        if self._file is None:
            try:
                self._file = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return
        while data := os.read(self._file, _CHUNK):
            self.write(data)

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None


class StepStreams:
    """The streams of one step (see the module's docstring). ``output``
    gets (1 or 2, bytes) as the step writes its stdout or stderr;
    ``stdin``: a file descriptor read to its end into the step's stdin;
    ``terminal``: joined to the guest's console once :meth:`attach_terminal`
    is called (when the guest is up: until then ^C still stops lkm)."""

    def __init__(
        self,
        ports: HostPorts,
        step: str,
        output: Callable[[int, bytes], None] | None = None,
        stdin: int | None = None,
        terminal: Terminal | None = None,
    ) -> None:
        self._ports = ports
        self._terminal = terminal
        self._tails: list[Tail] = []
        if output is not None:
            self._tails = [
                Tail(f"{step}.out", lambda data: output(1, data)),
                Tail(f"{step}.err", lambda data: output(2, data)),
            ]
        self._pumps: list[Pump] = []
        if stdin is not None:
            self._pumps.append(Pump(stdin, ports.fileno(STDIN), ports.end_stdin))
        self._undo = contextlib.ExitStack()
        self._attached = False
        self._input_ended: float | None = None  # when a non-terminal input ended

    def attach_terminal(self) -> None:
        """Raw mode on, keys to the guest's console, its output to the terminal."""
        terminal = self._terminal
        if terminal is None or self._attached:
            return
        self._attached = True
        self._undo.enter_context(terminal.raw())
        console = self._ports.fileno(CONSOLE)

        def end_of_input() -> None:
            # A tty has no end of file: ^D is what its reader takes as one.
            self._input_ended = time.monotonic()
            self._send_eof()

        self._pumps.append(Pump(terminal.input, console, end_of_input, terminal.watch))
        self._pumps.append(Pump(console, terminal.output))
        self._send_size()

    def _send_size(self) -> None:
        assert self._terminal is not None
        self._terminal.resized = False
        size = self._terminal.size()
        if size is not None:
            self._ports.send_window_size(*size)

    def _send_eof(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._ports.fileno(CONSOLE), EOF_KEY)

    def wait(self, seconds: float) -> None:
        """One round: move what is ready, waiting at most ``seconds``."""
        if self._attached and self._terminal is not None and self._terminal.resized:
            self._send_size()
        if self._input_ended is not None and time.monotonic() > self._input_ended + _EOF_AGAIN:
            # The input has ended (a pipe, a file) and the guest still runs:
            # a ^D that came before the shell read its first line was taken
            # as a plain byte (readline had not set its mode yet), so the
            # end is said again until the shell leaves.
            self._input_ended = time.monotonic()
            self._send_eof()
        for tail in self._tails:
            tail.poll()
        pump_round(self._pumps, seconds)

    def finish(self) -> None:
        """The step has ended: hand on the output still to come."""
        for tail in self._tails:
            tail.poll()
        if self._attached:
            console = [p for p in self._pumps if p.source == self._ports.fileno(CONSOLE)]
            while pump_round(console, _DRAIN_SECONDS):
                pass

    def close(self) -> None:
        for tail in self._tails:
            tail.close()
        self._undo.close()
