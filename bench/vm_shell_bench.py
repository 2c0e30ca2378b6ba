"""``lkm vm shell``: from the command's start to its prompt, against ``lkm vm
run -- true`` from start to exit, on the same kernel.

The shell runs on a pseudo-terminal, as under a user's terminal; the clock
stops when the prompt (``[lkm-vm RELEASE] # ``) arrives, and again when
``exit`` has ended the VM and the command. Runs are interleaved, several
rounds; the median and best of each and the ratio of the medians (the
shell's extra cost over a bare boot: the console port, the tty, bash's
start-up). Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import sys
import time
from pathlib import Path

from benchlib import compile_lkm, kernels_by_label, timed

from lkm.model.kernels import Kernel
from lkm.system.run import start
from lkm.vm.shell import prompt

LKM = str(Path(sys.executable).with_name("lkm"))
TIMEOUT = 300.0


def _shell_times(kernel: Kernel) -> tuple[float, float]:
    """(seconds to the prompt, seconds to the end after ``exit``)."""
    main, secondary = pty.openpty()
    started = time.perf_counter()
    process = start(
        [LKM, "vm", "shell", "--kernel", kernel.release],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=dict(os.environ, TERM="dumb"),
    )
    os.close(secondary)
    try:
        to_prompt = _wait_for(main, prompt(kernel.release).encode(), started)
        os.write(main, b"exit\n")
        _wait_for(main, b"", started)  # to the end of its output
        process.wait(TIMEOUT)
        return to_prompt, time.perf_counter() - started
    finally:
        process.close()
        os.close(main)


def _wait_for(fd: int, text: bytes, started: float) -> float:
    """Read ``fd`` until ``text`` has come (b"": until its end); when."""
    seen = b""
    while time.perf_counter() - started < TIMEOUT:
        if select.select([fd], [], [], 1.0)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                chunk = b""
            if not chunk and not text:
                return time.perf_counter() - started
            if not chunk:
                break
            seen += chunk
            if text and text in seen:
                return time.perf_counter() - started
    sys.exit(f"lkm vm shell gave no {text.decode() or 'end'} in time:\n{seen.decode()}")


def _summary(name: str, times: list[float]) -> str:
    return f"  {name:<28} median {statistics.median(times):5.2f} s   best {min(times):5.2f} s"


def bench(kernel: Kernel, rounds: int) -> None:
    run_cmd = [LKM, "vm", "run", "--kernel", kernel.release, "--", "true"]
    timed(run_cmd)  # warm: vmlinux extraction, KVM probe
    prompts: list[float] = []
    ends: list[float] = []
    runs: list[float] = []
    for _ in range(rounds):
        to_prompt, to_end = _shell_times(kernel)
        prompts.append(to_prompt)
        ends.append(to_end)
        runs.append(timed(run_cmd))
    print(f"lkm vm shell on {kernel.label} ({kernel.release}), {rounds} rounds")
    print(_summary("vm shell: start to prompt", prompts))
    print(_summary("vm shell: start to exit", ends))
    print(_summary("vm run -- true", runs))
    ratio = statistics.median(prompts) / statistics.median(runs)
    print(f"  ratio shell prompt / run -- true (medians): {ratio:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    args = parser.parse_args()
    compile_lkm()
    fixtures = {label: k for label, k in kernels_by_label().items() if k.arch == "amd64"}
    for label in args.labels:
        bench(fixtures[label], args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
