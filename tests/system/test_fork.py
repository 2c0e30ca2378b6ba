"""lkm.system.fork's worker: a forked helper exchanging frames with its
parent (depmod's second core), its errors and its end."""

from __future__ import annotations

import os
import time

import pytest

from lkm.errors import IndexFormatError
from lkm.system.fork import Channel, WorkerError, start_worker


def _echo_twice(channel: Channel) -> None:
    first = channel.receive()
    channel.send(first * 2)
    channel.send(b"%d" % len(channel.receive()))


def test_frames_go_both_ways_and_may_be_large() -> None:
    worker = start_worker(_echo_twice)
    assert worker is not None
    with worker:
        big = os.urandom(3 << 20)  # larger than a pipe holds
        worker.send(big)
        assert worker.receive() == big * 2
        worker.send(b"")
        assert worker.receive() == b"0"
        worker.finish()


def _lkm_error(channel: Channel) -> None:
    channel.send(b"first")
    raise IndexFormatError("/x/modules.dep.bin", "broken")


def test_an_lkm_error_comes_back_with_its_message() -> None:
    worker = start_worker(_lkm_error)
    assert worker is not None
    with worker:
        assert worker.receive() == b"first"
        with pytest.raises(WorkerError, match=r"^/x/modules.dep.bin: broken$"):
            worker.receive()


def _bug(channel: Channel) -> None:
    raise KeyError("no such group")


def test_a_bug_comes_back_with_its_traceback() -> None:
    worker = start_worker(_bug)
    assert worker is not None
    with worker, pytest.raises(RuntimeError, match="KeyError: 'no such group'"):
        worker.receive()


def _exit_silently(channel: Channel) -> None:
    os._exit(3)


def test_a_child_that_dies_is_an_error() -> None:
    worker = start_worker(_exit_silently)
    assert worker is not None
    with worker, pytest.raises(WorkerError, match="worker process failed"):
        worker.receive()


def _sleep(channel: Channel) -> None:
    time.sleep(60)


def test_leaving_early_kills_the_child() -> None:
    start = time.monotonic()
    worker = start_worker(_sleep)
    assert worker is not None
    with worker:
        pid = worker.pid
    assert time.monotonic() - start < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no such child any more


def test_no_worker_when_parallelism_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LKM_JOBS", "1")
    assert start_worker(_echo_twice) is None
