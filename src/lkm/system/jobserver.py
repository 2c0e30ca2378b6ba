"""GNU make's jobserver, held by lkm: N job slots shared by several makes.

A jobserver is a pipe holding tokens. A make started with ``-j`` and
``--jobserver-auth=R,W`` in MAKEFLAGS (and the two descriptors inherited)
has one implicit slot and reads a token from the pipe for every further
job, writing it back when the job ends; recursive makes share the same
pipe. lkm starts several makes at once (one per package build): each
worker takes a token for its make's implicit slot before starting it and
gives it back after, so all the makes together never run more than N
jobs, and a make running alone may use every slot the others left.
"""

from __future__ import annotations

import os

TOKEN = b"+"


class Jobserver:
    """``slots`` tokens in a pipe; the descriptors stay open until :meth:`close`."""

    def __init__(self, slots: int) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.slots = max(1, slots)
        os.write(self.write_fd, TOKEN * self.slots)

    @property
    def fds(self) -> tuple[int, int]:
        return self.read_fd, self.write_fd

    def makeflags(self) -> str:
        """MAKEFLAGS for a make that is to use these slots (its command
        line must not say ``-jN``: that makes a jobserver of its own)."""
        return f" -j --jobserver-auth={self.read_fd},{self.write_fd}"

    def acquire(self) -> None:
        """Take a slot (waits for one): the implicit slot of a make about
        to start. The makes share the pipe's open file and may have made it
        non-blocking (GNU make does): then wait until a token is there,
        and try again, since another reader may take it first."""
        import select

        while True:
            try:
                if os.read(self.read_fd, 1):
                    return
            except BlockingIOError:
                pass
            select.select([self.read_fd], [], [])

    def release(self) -> None:
        os.write(self.write_fd, TOKEN)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


__all__ = ["Jobserver"]
