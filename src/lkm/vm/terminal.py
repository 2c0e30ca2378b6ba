"""The host's terminal around a guest: raw mode while it is the guest
console's other end, its window size, and the one-line boot progress.

In raw mode every key goes to the guest as typed (``^C`` interrupts the
guest's foreground process, not lkm); the terminal's settings come back
on every way out, SIGTERM and SIGHUP included. Three ``^]`` in a row leave
a guest that no longer answers (telnet's escape key, rarely typed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from lkm.errors import LkmError

ESCAPE = 0x1D  # ^]
ESCAPES_TO_LEAVE = 3
EOF_KEY = b"\x04"  # ^D: what a tty's reader takes as the end of input


class TerminalEscape(LkmError):
    """The user typed the escape keys to leave the guest."""

    def __init__(self) -> None:
        super().__init__(f"left the VM with {ESCAPES_TO_LEAVE} x ^]")


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, or None."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return (size.lines, size.columns) if size.lines and size.columns else None


class Terminal:
    """What a guest console's bytes come from and go to: by default the
    host's stdin and stdout, which need not be a terminal."""

    def __init__(self, input: int = 0, output: int = 1) -> None:
        self.input = input
        self.output = output
        self.resized = False  # a SIGWINCH came since the last look
        self._escapes = 0

    @property
    def is_tty(self) -> bool:
        return os.isatty(self.input)

    def size(self) -> tuple[int, int] | None:
        return window_size(self.output) or window_size(self.input)

    def term(self) -> str:
        """The terminal type the guest's programs should assume."""
        return (os.environ.get("TERM") or "vt100") if self.is_tty else "dumb"

    def watch(self, data: bytes) -> None:
        """Look at keys typed: raises :class:`TerminalEscape` after
        ``ESCAPES_TO_LEAVE`` escape keys in a row."""
        for byte in data:
            self._escapes = self._escapes + 1 if byte == ESCAPE else 0
            if self._escapes >= ESCAPES_TO_LEAVE:
                raise TerminalEscape()

    @contextlib.contextmanager
    def raw(self) -> Iterator[None]:
        """Raw mode (when the input is a terminal) and SIGWINCH noted in
        :attr:`resized`, both undone on the way out."""
        import termios
        import tty

        saved = termios.tcgetattr(self.input) if self.is_tty else None
        with contextlib.ExitStack() as undo:
            undo.enter_context(_signal(signal.SIGWINCH, self._note_resize))
            undo.enter_context(ending_on_signals())
            if saved is not None:
                tty.setraw(self.input, termios.TCSANOW)
                undo.callback(termios.tcsetattr, self.input, termios.TCSADRAIN, saved)
            yield

    def _note_resize(self, signum: int, frame: object) -> None:
        self.resized = True


class Terminated(SystemExit):
    """SIGTERM or SIGHUP asked lkm to stop: everything is unwound (the
    terminal restored, the guest killed rather than powered off), and the
    process ends with the status a shell gives that signal."""


def _leave(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def ending_on_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP unwind the stack (raising
    :class:`Terminated`) instead of ending the process on the spot, which
    would leave QEMU running and the terminal raw."""
    with _signal(signal.SIGTERM, _leave), _signal(signal.SIGHUP, _leave):
        yield


@contextlib.contextmanager
def _signal(signum: int, handler: object) -> Iterator[None]:
    try:
        previous = signal.signal(signum, handler)  # type: ignore[arg-type]
    except ValueError:  # not the main thread: leave the signal alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


class BootProgress:
    """One line on a terminal saying how far a guest's boot is (booting,
    init, ready), rewritten in place; nothing at all when ``fd`` is not a
    terminal. ``label`` starts the line (``lkm vm: RELEASE``). ``keep``:
    leave the ready line (a shell's prompt follows); else it is wiped, so a
    command's output starts on a clean line."""

    def __init__(self, label: str, fd: int = 2, keep: bool = False) -> None:
        self.label = label
        self.fd = fd
        self.keep = keep
        self.enabled = os.isatty(fd)
        self.started = time.monotonic()  # again at "booting"
        self._shown = False  # a line is on the terminal, not yet ended

    def __call__(self, stage: str) -> None:
        if not self.enabled:
            return
        if stage == "booting":
            self.started = time.monotonic()
        seconds = time.monotonic() - self.started
        if stage == "booting":
            text = f"{self.label}: booting"
        elif stage == "ready":
            text = f"{self.label}: ready in {seconds:.1f} s"
        else:
            text = f"{self.label}: {stage} ({seconds:.1f} s)"
        end = "\r\n" if self.keep else "\r\x1b[K"
        tail = end if stage == "ready" else ""
        self._write(f"\r\x1b[K{text}{tail}")
        self._shown = stage != "ready"

    def clear(self) -> None:
        """Wipe a line left unfinished (the boot failed, or was stopped)."""
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode("utf-8", "replace"))


__all__ = ["BootProgress", "Terminal", "TerminalEscape", "window_size"]
