"""Shared test helpers: the Debian kernel fixtures and runners for both tools.

The fixtures are real Debian kernels fetched by ``./dev fixtures``
(lkm.testing.debian_kernels). Tests that need them fail, not skip, when
they are missing: a missing fixture is a broken setup, not a pass.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from lkm.cli import main as lkm_main
from lkm.records import Record
from lkm.system.run import PIPE, Stream, run
from lkm.testing.debian_kernels import KernelFixture, load_manifest
from lkm.testing.guest import Guest
from lkm.vm.qemu import VmSession

# The index files depmod writes that every kmod version writes alike: the
# text ones, and the binary ones (compared byte for byte in a layout, or
# key by key across layouts).
INDEX_TEXT_FILES = (
    "modules.dep",
    "modules.alias",
    "modules.softdep",
    "modules.symbols",
    "modules.devname",
)
INDEX_BINARY_FILES = (
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
)


class Result(Record):
    stdout: bytes
    stderr: bytes
    status: int


class Ran(Record):
    """A command the tests ran: its status and output (text when asked)."""

    returncode: int
    stdout: Any  # bytes, or str with text=True
    stderr: Any


def command(
    argv: Sequence[str],
    *,
    text: bool = False,
    check: bool = False,
    input: bytes | None = None,
    stdin: Stream | None = None,
    stdout: Stream = PIPE,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    executable: str | None = None,
) -> Ran:
    """Run a command (kmod's tools, openssl, make, lkm's script) through
    lkm's runner; ``check`` raises its CommandError on failure."""
    streams = {"stdin": stdin} if stdin is not None else {}
    done = run(
        [str(a) for a in argv],
        check=check,
        input=input,
        stdout=stdout,
        cwd=str(cwd) if cwd is not None else None,
        env=env,
        timeout=timeout,
        executable=executable,
        **streams,  # type: ignore[arg-type]
    )
    if text:
        return Ran(done.status, done.stdout.decode(), done.stderr.decode())
    return Ran(done.status, done.stdout, done.stderr)


def _kmod_tool(name: str) -> str:
    for candidate in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}", f"/bin/{name}"):
        if os.path.exists(candidate) and os.path.realpath(candidate).endswith("/kmod"):
            return candidate
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"kmod's {name} is not installed (Debian package kmod); run ./dev setup")
    return found


def kmod(tool: str, args: Sequence[str], cwd: str | None = None) -> Result:
    """Run kmod's tool (the reference) with the C locale."""
    env = dict(os.environ, LC_ALL="C")
    # argv[0] is the bare tool name, as lkm is called in-process: getopt
    # errors start with argv[0].
    proc = command([tool, *args], executable=_kmod_tool(tool), env=env, cwd=cwd)
    return Result(proc.stdout, proc.stderr, proc.returncode)


def lkm(tool: str, args: Sequence[str]) -> Result:
    """Run an lkm tool in-process, as if invoked through a link named ``tool``."""
    out, err = io.BytesIO(), io.BytesIO()
    status = lkm_main([tool, *args], out, err)
    return Result(out.getvalue(), err.getvalue(), status)


@pytest.fixture(scope="session")
def kernels() -> list[KernelFixture]:
    fixtures = load_manifest()
    if len(fixtures) < 2:
        pytest.fail("Debian kernel fixtures are missing: run ./dev fixtures")
    return fixtures


@pytest.fixture(scope="session")
def kernel_61(kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == "6.1")


@pytest.fixture(scope="session")
def kernel_612(kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == "6.12")


def json_of(command: str, output: bytes | str) -> Any:
    """``--json`` output parsed and validated against the command's schema
    (lkm/schemas/COMMAND.schema.json); a stream's lines each on their own."""
    import json

    import jsonschema

    from lkm.schemas import load_schema

    schema = load_schema(command)
    text = output.decode() if isinstance(output, bytes) else output
    stream = schema.get("type") == "object"
    document = [json.loads(line) for line in text.splitlines()] if stream else json.loads(text)
    for item in document if stream else [document]:
        jsonschema.validate(item, schema, cls=jsonschema.Draft202012Validator)
    return document


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def modules_in(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*.ko*"))


# Differential tests say how many cases they compared; the lines are
# printed in pytest's terminal summary (captured output would hide them).
COMPARED: list[str] = []


@pytest.fixture
def report():  # type: ignore[no-untyped-def]
    def add(line: str) -> None:
        COMPARED.append(line)

    return add


# Fuzz tests count the examples they ran, printed in the same summary.
FUZZ_EXAMPLES: dict[str, int] = {}


def fuzz_example(what: str) -> None:
    """Count one example of the fuzz test ``what``."""
    FUZZ_EXAMPLES[what] = FUZZ_EXAMPLES.get(what, 0) + 1


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if COMPARED:
        terminalreporter.section("differential cases compared")
        for line in COMPARED:
            terminalreporter.write_line(line)
    if FUZZ_EXAMPLES:
        terminalreporter.section("fuzz examples run")
        for what, count in FUZZ_EXAMPLES.items():
            terminalreporter.write_line(f"{count:7d}  {what}")


# -- real-kernel tests: one VM per test module and kernel ---------------------
# Tests run many steps in the same guest; when one fails, pytest shows every
# step it ran (command, status, stdout, stderr, kernel log) and the tail of
# the guest's console.


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def vm(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> Iterator[Guest]:
    kernel = next(k for k in kernels if k.label == request.param)
    with VmSession(str(kernel.vmlinuz), str(kernel.indexed_moddir), kernel.version) as session:
        yield Guest(session, kernel)


@pytest.fixture(autouse=True)
def _system_cache_untouched() -> Iterator[None]:
    """root's depmod cache on the system's own trees (/var/cache/lkm)
    belongs to the host: a test that made it wrote outside its directory
    (set LKM_CACHE for lkm runs against the system's paths)."""
    from lkm.workflows.depmod.cache import SYSTEM_CACHE_DIR

    top = os.path.dirname(SYSTEM_CACHE_DIR)
    before = os.path.exists(top)
    yield
    if not before and os.path.exists(top):
        shutil.rmtree(top, ignore_errors=True)
        pytest.fail(f"the test wrote {top} (removed now)")


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


# -- markers: what a test needs ------------------------------------------------
# Derived from the fixtures a test uses (directly or through other fixtures),
# so no test can forget its marker: ``vm`` boots a real kernel under QEMU,
# ``fixtures`` needs the Debian kernels fetched by ``./dev fixtures``. The
# quick run without either: ``pytest -m "not vm and not fixtures"``.
_VM_FIXTURES = frozenset({"vm"})
_KERNEL_FIXTURES = frozenset({"kernels", "kernel_61", "kernel_612", "seed_modules"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        in_vm_dir = item.path.parent.name == "vm"
        if in_vm_dir or used & _VM_FIXTURES:
            item.add_marker(pytest.mark.vm)
        if in_vm_dir or used & (_VM_FIXTURES | _KERNEL_FIXTURES):
            item.add_marker(pytest.mark.fixtures)
