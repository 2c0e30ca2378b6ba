"""``-h``, ``--help`` and ``--version`` on every command and every kmod-named
link: exit 0 with text on stdout only; the help names every option the
command's option table has (lkm's extensions included: a kmod-named
tool's help is kmod's text, then them). A bad option is one line on
stderr: exit 2 for lkm's own commands, kmod's status 1 for kmod's tools
(scripts compare it with kmod's)."""

from __future__ import annotations

import gc
import sys

import pytest
from conftest import lkm

from lkm.cli import MULTICALL, QUICK_TOOLS, TOOLS

KMOD_TOOLS = frozenset(
    ("modinfo", "depmod", "insmod", "rmmod", "lsmod", "modprobe", "static-nodes")
)
# (how it is invoked, the arguments before the option)
COMMANDS = [("lkm", [tool]) for tool in sorted(TOOLS)] + [(link, []) for link in sorted(MULTICALL)]
IDS = [" ".join([name, *args]) for name, args in COMMANDS]


def _tool(name: str, args: list[str]) -> str:
    return args[0] if name == "lkm" else name


@pytest.mark.parametrize(("name", "args"), COMMANDS, ids=IDS)
def test_help_and_version_exit_0(name: str, args: list[str]) -> None:
    for option in ("-h", "--help", "--version"):
        result = lkm(name, [*args, option])
        assert (result.status, result.stderr) == (0, b""), (option, result)
        assert result.stdout.strip(), option


def test_the_collector_stays_off_for_kmods_quick_tools_only() -> None:
    # issue 20: the lkm script starts with the cyclic collector off; every
    # tool but kmod's gets it back before it runs.
    assert QUICK_TOOLS == KMOD_TOOLS
    was_enabled = gc.isenabled()
    try:
        for tool in sorted(TOOLS):
            gc.disable()
            assert lkm("lkm", [tool, "--version"]).status == 0, tool
            assert gc.isenabled() == (tool not in KMOD_TOOLS), tool
    finally:
        (gc.enable if was_enabled else gc.disable)()


@pytest.mark.parametrize(("name", "args"), COMMANDS, ids=IDS)
def test_help_names_every_option(name: str, args: list[str]) -> None:
    """Every long option of the tool's getopt table (tools parsed with
    argparse have their help made from the parser itself)."""
    tool = _tool(name, args)
    module = sys.modules.get(TOOLS[tool]) or __import__(TOOLS[tool], fromlist=["run"])
    table = getattr(module, "LONGOPTS", None) or getattr(module, "LONG", None) or ()
    shown = lkm(name, [*args, "--help"]).stdout.decode()
    missing = [o.rstrip("=") for o in table if f"--{o.rstrip('=')}" not in shown]
    assert missing == [], f"{tool} --help does not name {missing}"


@pytest.mark.parametrize(("name", "args"), COMMANDS, ids=IDS)
def test_a_bad_option_is_one_line(name: str, args: list[str]) -> None:
    result = lkm(name, [*args, "--no-such-option"])
    expected = 1 if _tool(name, args) in KMOD_TOOLS else 2
    assert result.status == expected and result.stdout == b"", result
    assert result.stderr.count(b"\n") == 1, result.stderr
