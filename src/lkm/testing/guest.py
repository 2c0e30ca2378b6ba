"""Test plumbing for real-kernel tests: one booted guest, many steps.

Booting is the expensive part, so a test module boots one guest and runs
all its steps there. :class:`Guest` remembers the steps of the current
test; :func:`failure_sections` turns them and the console tail into the
sections pytest prints when the test fails (see ``tests/vm/conftest.py``).
"""

from __future__ import annotations

from lkm.testing.debian_kernels import KernelFixture
from lkm.vm.qemu import StepResult, VmSession

CONSOLE_LINES = 60


class Guest:
    """A running VM of one fixture kernel, with a log of the steps run."""

    def __init__(self, session: VmSession, kernel: KernelFixture) -> None:
        self.session = session
        self.kernel = kernel
        self.log: list[StepResult] = []

    def run(self, command: list[str] | str, timeout: float = 120.0) -> StepResult:
        result = self.session.run(command, timeout)
        self.log.append(result)
        return result

    def check(self, command: list[str] | str, timeout: float = 120.0) -> StepResult:
        """Run ``command`` and fail the test unless it exits with 0."""
        result = self.run(command, timeout)
        if result.status != 0:
            raise AssertionError(f"guest step failed:\n{result.describe()}")
        return result

    def failure_sections(self) -> list[tuple[str, str]]:
        steps = "\n\n".join(step.describe() for step in self.log) or "(no steps)"
        console = "\n".join(self.session.console.splitlines()[-CONSOLE_LINES:])
        return [
            (f"guest steps ({self.kernel.label})", steps),
            (f"guest console, last {CONSOLE_LINES} lines", console),
        ]
