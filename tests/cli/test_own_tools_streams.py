"""lkm's own commands (new, build, sign, keygen, try, …) print help and usage
errors to the streams they are given, as the kmod-compatible tools do, so
a library caller or a test sees them."""

from __future__ import annotations

import io

import pytest

from lkm.cli import main

TOOLS = ("new", "build", "sign", "keygen", "try", "kernel", "prepare", "install", "uninstall")


@pytest.mark.parametrize("tool", TOOLS)
def test_help_goes_to_out_and_usage_errors_to_err(
    tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    assert main(["lkm", tool, "--help"], out, err) == 0
    assert out.getvalue().startswith(f"usage: lkm {tool} ".encode()) and err.getvalue() == b""
    out, err = io.BytesIO(), io.BytesIO()
    assert main(["lkm", tool, "--no-such-option"], out, err) == 2
    assert out.getvalue() == b""
    assert err.getvalue().splitlines()[-1].startswith(f"lkm {tool}: error: ".encode())
    assert capsys.readouterr() == ("", "")  # nothing went to the process's own streams
