"""Shell completion: the scripts come from the option tables the commands
parse with, name every option of every command in each shell, load in
bash, zsh and fish, and bash's function completes module names from a
tree (``lkm modprobe -d ROOT -S VERSION ext<TAB>``) as a user's TAB
would. The copies the package installs equal what lkm makes now."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lkm

from lkm.cli import TOOLS
from lkm.cli.completion import Spec, bash_script, candidates, fish_script, specs, zsh_script
from lkm.testing.debian_kernels import KernelFixture

REPO = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)
SHIPPED = {"bash": "completions/lkm", "zsh": "completions/_lkm", "fish": "completions/lkm.fish"}


def _every_option(table: dict[str, Spec]) -> list[tuple[str, str, Spec]]:
    found = []
    for name, spec in table.items():
        found += [(name, option, spec) for option in spec.options]
        for sub, subspec in spec.subcommands:
            found += [(f"{name} {sub}", option, subspec) for option in subspec.options]
    return found


def test_the_shipped_scripts_are_what_lkm_makes() -> None:
    for shell, path in SHIPPED.items():
        made = lkm("lkm", ["completion", shell])
        assert made.status == 0
        assert (REPO / path).read_bytes() == made.stdout, (
            f"{path} is stale: run lkm completion {shell} > {path}"
        )


def test_every_option_of_every_command_is_in_each_script() -> None:
    table = specs()
    assert set(table) == set(TOOLS)
    options = _every_option(table)
    assert len(options) > 250
    scripts = {"bash": bash_script(table), "zsh": zsh_script(table), "fish": fish_script(table)}
    for shell, text in scripts.items():
        words = set(text.replace('"', " ").replace("'", " ").split())
        for name, option, _ in options:
            if shell == "fish":
                flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
                assert flag in text, (shell, name, option)
            else:
                assert option in words, (shell, name, option)
    # argparse commands: their real parser's options (a subcommand's too)
    assert "--no-archive" in {o for _, o, _ in options}  # lkm kernel list
    assert {"--key", "--cert", "--keyid"} <= set(table["sign"].options)
    # --color=WHEN takes its value in the same word: nothing is offered after it
    assert "--color" in table["try"].options and "--color" not in table["try"].valued
    assert "--kernel" in table["try"].valued


def _bash_complete(words: list[str]) -> list[str]:
    script = (
        f"export PATH={shlex.quote(BIN)}:$PATH\n"
        "source <(lkm completion bash)\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_lkm\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.fixtures
def test_bash_completes_module_names_of_the_tree(kernel_61: KernelFixture, report) -> None:  # type: ignore[no-untyped-def]
    root = str(kernel_61.indexed_moddir.parents[2])
    got = _bash_complete(["lkm", "modprobe", "-d", root, "-S", kernel_61.version, "ext"])
    names = candidates("modules", root, kernel_61.version)
    assert "ext4" in got and got == [n for n in names if n.startswith("ext")]
    assert "--show-depends" in _bash_complete(["lkm", "modprobe", "--show-d"])
    assert _bash_complete(["lkm", "kernel", "f"]) == ["fetch"]
    assert _bash_complete(["lkm", "dkms", "sta"]) == ["status"]
    assert "completion" in _bash_complete(["lkm", "comp"])
    report(f"bash completion of modprobe ext<TAB> on {kernel_61.version}: {len(got)} names")


def test_dkms_pairs_and_kinds(tmp_path: Path) -> None:
    for pair in ("acpi-call/1.2.2", "tp_smapi/0.43"):
        (tmp_path / "var/lib/dkms" / pair).mkdir(parents=True)
    (tmp_path / "var/lib/dkms/acpi-call/kernel-6.1-x86_64").mkdir()
    assert candidates("dkms", str(tmp_path)) == ["acpi-call/1.2.2", "tp_smapi/0.43"]
    assert candidates("modules", str(tmp_path), "none") == []
    shown = lkm("lkm", ["completion", "--candidates", "dkms", "--root", str(tmp_path)])
    assert shown.stdout == b"acpi-call/1.2.2\ntp_smapi/0.43\n"
    assert lkm("lkm", ["completion", "tcsh"]).status == 2


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_load_the_scripts(shell: str, tmp_path: Path) -> None:
    script = tmp_path / f"lkm.{shell}"
    script.write_bytes(lkm("lkm", ["completion", shell]).stdout)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(tmp_path))
    if shell == "zsh":
        check = f"source {script} && echo loaded"
    else:
        check = f"source {script}; and complete -C 'lkm modprobe --show-d'; and echo loaded"
    done = subprocess.run([shell, "-c", check], capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.splitlines()[-1] == "loaded"
    if shell == "fish":
        assert "--show-depends" in done.stdout
