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
PART_MARK = "@@ "  # starts the line naming each part of a titled script's output


def titled_script(parts: dict[str, str], prelude: str = "") -> str:
    """One guest step running each part in turn (its stderr with its
    stdout): a line naming the part, its output, ``status N``; read back
    with :func:`titled_output`."""
    lines = [prelude] if prelude else []
    for title, script in parts.items():
        lines.append(
            f"printf '\\n{PART_MARK}%s\\n' '{title}'; ( {script} ) 2>&1; echo \"status $?\""
        )
    return "\n".join(lines)


def titled_output(stdout: bytes) -> dict[str, str]:
    """Title → output (ending in ``status N``) of a :func:`titled_script`."""
    parts = stdout.decode().split(f"\n{PART_MARK}")[1:]
    return dict(part.split("\n", 1) for part in parts)


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
