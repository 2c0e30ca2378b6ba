"""lkm's make jobserver: N slots across makes, a taker waiting when none is
free — also after a make has made the shared pipe non-blocking — and real
GNU make running no more jobs than the slots allow."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from lkm.system.jobserver import Jobserver


def test_acquire_waits_on_a_non_blocking_pipe() -> None:
    jobserver = Jobserver(2)
    try:
        os.set_blocking(jobserver.read_fd, False)  # what GNU make does to it
        jobserver.acquire()
        jobserver.acquire()
        started = time.monotonic()
        threading.Timer(0.3, jobserver.release).start()
        jobserver.acquire()  # waits for the release
        assert time.monotonic() - started >= 0.25
    finally:
        jobserver.close()


def test_make_runs_at_most_the_slots(tmp_path: Path) -> None:
    """Four one-second jobs under two slots, the make's own slot taken by
    the caller as lkm's workers take it: two at a time, about two seconds."""
    (tmp_path / "Makefile").write_text(
        "all: a b c d\na b c d:\n\t@echo $@ $$(date +%s.%N) >> times; sleep 1\n"
    )
    jobserver = Jobserver(2)
    try:
        jobserver.acquire()
        env = dict(os.environ, MAKEFLAGS=jobserver.makeflags())
        started = time.monotonic()
        subprocess.run(["make", "-s"], cwd=tmp_path, env=env, pass_fds=jobserver.fds, check=True)
        took = time.monotonic() - started
        jobserver.release()
    finally:
        jobserver.close()
    assert 1.8 < took < 3.5, took  # not 1 s (4 at once) nor 4 s (one at a time)
