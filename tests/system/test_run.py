"""lkm.system.run: the one way lkm starts processes, and its messages."""

from __future__ import annotations

import os
import sys

import pytest

from lkm.system.run import (
    NULL,
    PIPE,
    CommandError,
    CommandTimeout,
    ProgramNotFound,
    command_line,
    run,
    shell_status,
    start,
    stream,
    trace_with,
)


def test_run_captures_output_and_status() -> None:
    done = run(["sh", "-c", "echo out; echo err >&2; exit 0"])
    assert (done.status, done.stdout, done.stderr) == (0, b"out\n", b"err\n")
    assert run(["sh", "-c", "exit 3"], check=False).status == 3
    assert run(["cat"], input=b"fed").stdout == b"fed"


def test_failures_are_one_line_naming_the_command() -> None:
    with pytest.raises(CommandError) as failed:
        run(["sh", "-c", "echo first >&2; echo 'the last line' >&2; exit 2"])
    assert str(failed.value) == (
        "sh -c 'echo first >&2; echo '\"'\"'the last line'\"'\"' >&2; exit 2': "
        "failed with exit status 2: the last line"
    )
    assert failed.value.status == 2
    with pytest.raises(ProgramNotFound, match=r"^no-such-program-lkm: command not found$"):
        run(["no-such-program-lkm", "x"])
    with pytest.raises(FileNotFoundError):  # also the builtin it stands for
        run(["no-such-program-lkm"])
    with pytest.raises(CommandError, match=r"killed by SIGKILL$"):
        run(["sh", "-c", "kill -KILL $$"])
    with pytest.raises(CommandTimeout, match=r"^sleep 10: timed out after 0.2 s$"):
        run(["sleep", "10"], timeout=0.2)


def test_stream_hands_over_lines_as_they_come() -> None:
    seen: list[str] = []
    code = "import sys,time\nfor i in range(3): print(i, flush=True); time.sleep(0.05)\n"
    done = stream([sys.executable, "-c", code], seen.append)
    assert seen == ["0", "1", "2"] and done.stdout == b"0\n1\n2\n" and done.status == 0


def test_start_runs_in_the_background_until_killed() -> None:
    with start(["sleep", "30"], stderr=NULL) as process:
        assert process.poll() is None and process.wait(0.05) is None
        pid = process.pid
    assert process.poll() == -9
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    failing = start(["sh", "-c", "echo gone >&2; exit 4"], stderr=PIPE)
    assert failing.wait(10) == 4
    assert (
        str(failing.failure()) == "sh -c 'echo gone >&2; exit 4': failed with exit status 4: gone"
    )
    failing.close()


def test_commands_are_traced_as_a_shell_would_read_them() -> None:
    lines: list[str] = []
    trace_with(lines.append)
    try:
        run(["echo", "two words", "$x"], stdout=NULL)
    finally:
        trace_with(None)
    assert lines == ["echo 'two words' '$x'"] == [command_line(["echo", "two words", "$x"])]
    assert shell_status(-9) == 137 and shell_status(3) == 3
