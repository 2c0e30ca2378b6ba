"""Linters as tests: ruff (style, common bugs) and mypy --strict (types)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import Ran, command

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> Ran:
    return command([sys.executable, "-m", *args], cwd=ROOT, text=True)


def test_ruff_check() -> None:
    result = _run("ruff", "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "--strict", "src", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
