"""One VM per test module and kernel: the ``vm`` fixture.

Tests run many steps in the same guest; when one fails, pytest shows every
step it ran (command, status, stdout, stderr, kernel log) and the tail of
the guest's console.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest
from lkm.vm.qemu import VmSession


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def vm(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> Iterator[Guest]:
    kernel = next(k for k in kernels if k.label == request.param)
    with VmSession(str(kernel.vmlinuz), str(kernel.indexed_moddir), kernel.version) as session:
        yield Guest(session, kernel)


@pytest.fixture(autouse=True)
def _fresh_step_log(request: pytest.FixtureRequest) -> None:
    if "vm" in request.fixturenames:
        guest: Guest = request.getfixturevalue("vm")
        guest.log.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    guest = getattr(item, "funcargs", {}).get("vm")
    if report.failed and isinstance(guest, Guest):
        for title, text in guest.failure_sections():
            report.sections.append((title, text))
