"""modprobe's plans on a small module directory built in tmp_path, with
/proc and /sys trees standing in for the kernel's state.

The differential tests compare lkm with kmod on the Debian trees; these
pin down the rules one by one: load order, already-loaded modules,
options merged from configuration, kernel command line and command line,
softdeps, install commands, blacklists, and the removal order with
reference counts.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from lkm.formats.kmod_index_writer import IndexBuilder
from lkm.model.modprobe_config import read_config
from lkm.system.kernel import KernelModules
from lkm.workflows.modprobe import (
    BLACKLISTED,
    BLACKLISTED_ALIAS,
    KernelActions,
    LoadFlags,
    Modprobe,
    RemoveFlags,
    Request,
    Step,
    SymbolsUnreadable,
    options_from_words,
    parse_wait,
    split_env_options,
    symbol_crcs,
)

# name -> dependencies as modules.dep lists them (the last one loads first)
TREE = {"a": ["b", "c"], "b": ["c"], "c": [], "d": [], "e": ["c"]}
ALIASES = {"pci:v1234d*": ["a"], "pci:v12*": ["d"], "fs-e": ["e"]}
BUILTIN = ["zz"]


def _index(path: Path, entries: dict[str, list[str]]) -> None:
    builder = IndexBuilder()
    for key, values in entries.items():
        for rank, value in enumerate(values):
            builder.insert(key, value, rank)
    path.write_bytes(builder.to_bytes())


@pytest.fixture
def moddir(tmp_path: Path) -> Path:
    directory = tmp_path / "lib" / "modules" / "1.0"
    (directory / "kernel").mkdir(parents=True)
    dep = {}
    for name, deps in TREE.items():
        (directory / "kernel" / f"{name}.ko").write_bytes(b"")
        dep[name] = [f"kernel/{name}.ko: " + " ".join(f"kernel/{d}.ko" for d in deps)]
    _index(directory / "modules.dep.bin", dep)
    _index(directory / "modules.alias.bin", ALIASES)
    _index(directory / "modules.builtin.bin", {name: [""] for name in BUILTIN})
    return directory


def _kernel(tmp_path: Path, loaded: dict[str, list[str]]) -> KernelModules:
    """A kernel with ``loaded`` modules (name -> holders) in /proc and /sys."""
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, holders in loaded.items():
        used = ",".join(holders) + "," if holders else "-"
        lines.append(f"{name} 16384 {len(holders)} {used} Live 0x0000000000000000\n")
        module = sys / "module" / name
        (module / "holders").mkdir(parents=True, exist_ok=True)
        (module / "initstate").write_text("live\n")
        (module / "refcnt").write_text(f"{len(holders)}\n")
        for holder in holders:
            (module / "holders" / holder).touch()
    (proc / "modules").write_text("".join(lines))
    return KernelModules(proc=str(proc), sys=str(sys))


def _modprobe(moddir: Path, kernel: KernelModules, conf: str = "", cmdline: str = "") -> Modprobe:
    conf_file = moddir.parent / "test.conf"
    conf_file.write_text(conf)
    config = read_config(str(moddir), [str(conf_file)], cmdline)
    return Modprobe(str(moddir), config, kernel)


def _shown(steps: tuple[Step, ...]) -> list[str]:
    return [step.show().rstrip("\n").replace(" /", " ").split("/lib/modules/1.0/")[-1]
            if step.action == "insmod" else step.show().rstrip("\n")
            for step in steps]  # fmt: skip


def _names(steps: tuple[Step, ...]) -> list[tuple[str, str]]:
    return [(step.action, step.module) for step in steps]


def test_dependencies_load_first_in_modules_dep_reverse_order(moddir: Path, tmp_path: Path) -> None:
    plan = _modprobe(moddir, _kernel(tmp_path, {})).plan_load("a")
    assert _names(plan.steps) == [("insmod", "c"), ("insmod", "b"), ("insmod", "a")]
    assert plan.steps[0].path == f"{moddir}/kernel/c.ko" and plan.status == 0


def test_loaded_modules_are_skipped_and_first_time_fails(moddir: Path, tmp_path: Path) -> None:
    modprobe = _modprobe(moddir, _kernel(tmp_path, {"c": []}))
    assert _names(modprobe.plan_load("a").steps) == [("insmod", "b"), ("insmod", "a")]
    assert modprobe.plan_load("c").steps == () and modprobe.plan_load("c").status == 0
    first = modprobe.plan_load("c", flags=LoadFlags(first_time=True))
    assert first.status == -errno.EEXIST
    # -D plans as if nothing were loaded.
    assert len(modprobe.plan_load("a", flags=LoadFlags(ignore_loaded=True)).steps) == 3


def test_options_merge_config_then_kernel_command_line_then_arguments(
    moddir: Path, tmp_path: Path
) -> None:
    conf = "options a x=1\noptions pci:v1234d0001 via=alias\noptions pci:v1234d* never\n"
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}), conf, cmdline="quiet a.y=2 b.q=7\n")
    plan = modprobe.plan_load("a", options="z=3")
    assert [s.options for s in plan.steps] == ["", "q=7 ", "x=1 y=2 z=3"]
    # Options may name the alias a module was found by, as it was typed.
    by_alias = modprobe.plan_load("pci:v1234d0001")  # resolves to a, then d
    assert [(s.module, s.options) for s in by_alias.steps if s.module in "ad"] == [
        ("a", "x=1 via=alias y=2 "),
        ("d", "via=alias "),
    ]


def test_softdeps_wrap_the_module_and_builtin_shows_under_show_depends(
    moddir: Path, tmp_path: Path
) -> None:
    conf = "softdep a pre: d post: zz\n"
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}), conf)
    plan = modprobe.plan_load("a")
    assert _names(plan.steps) == [("insmod", "c"), ("insmod", "b"), ("insmod", "d"),
                                  ("insmod", "a")]  # fmt: skip
    shown = modprobe.plan_load("a", flags=LoadFlags(ignore_loaded=True, dry_run=True))
    assert _names(shown.steps)[-1] == ("builtin", "zz")


def test_install_command_replaces_the_load_unless_softdeps_or_ignored(
    moddir: Path, tmp_path: Path
) -> None:
    conf = "install d /bin/echo loading d $CMDLINE_OPTS\ninstall a /bin/false\n"
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}), conf)
    plan = modprobe.plan_load("d", options="p=1")
    assert plan.steps == (
        Step("install", "d", options="p=1", command="/bin/echo loading d $CMDLINE_OPTS"),
    )
    assert _names(modprobe.plan_load("d", flags=LoadFlags(ignore_commands=True)).steps) == [
        ("insmod", "d")
    ]
    # a module with softdeps ignores its install command (kmod does)
    softdep = _modprobe(moddir, _kernel(tmp_path, {}), conf + "softdep a pre: e\n")
    assert ("insmod", "a") in _names(softdep.plan_load("a").steps)


def test_blacklist_stops_aliases_and_with_b_names(moddir: Path, tmp_path: Path) -> None:
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}), "blacklist a\n")
    # The alias names a (blacklisted) and d: only d is loaded.
    by_alias = modprobe.plan_load("pci:v1234d0001")
    assert _names(by_alias.steps) == [("insmod", "d")]
    only_a = _modprobe(moddir, _kernel(tmp_path, {}), "blacklist a\nblacklist d\n")
    assert only_a.plan_load("pci:v1234d0001").status == BLACKLISTED_ALIAS
    assert _names(modprobe.plan_load("a").steps)[-1] == ("insmod", "a")
    assert modprobe.plan_load("a", flags=LoadFlags(use_blacklist=True)).status == BLACKLISTED
    # one alias, two modules in priority order: only the blacklisted one is skipped
    both = modprobe.resolve("pci:v1234d0001")
    assert sorted(both) == ["a", "d"]


def test_resolution_order_and_not_found(moddir: Path, tmp_path: Path) -> None:
    conf = "alias fs-e d\ninstall only-cmd /bin/true\n"
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}), conf)
    assert modprobe.resolve("fs-e") == ["d"]  # configuration beats modules.alias
    assert modprobe.resolve("only-cmd") == ["only_cmd"]
    assert modprobe.resolve("zz") == ["zz"]
    missing = modprobe.plan_load("nothing")
    assert missing.status == -errno.ENOENT
    assert missing.messages[0][1] == f"Module nothing not found in directory {moddir}\n"


def test_remove_takes_unused_dependencies_in_kmods_order(moddir: Path, tmp_path: Path) -> None:
    kernel = _kernel(tmp_path, {"a": [], "b": ["a"], "c": ["a", "b"]})
    modprobe = _modprobe(moddir, kernel)
    plan = modprobe.plan_remove("a")
    # kmod checks the dependencies once, in its list order (c, then b): c is
    # still held by b when its turn comes, so it stays loaded.
    assert _names(plan.steps) == [("rmmod", "a"), ("rmmod", "b")]
    busy = modprobe.plan_remove("c")
    assert busy.status == -errno.EBUSY and busy.messages[-1][1] == "Module c is in use.\n"
    # --remove-holders: the holder goes first, and takes c with it as a
    # dependency nobody uses; kmod then tries c itself once more and fails.
    held = _modprobe(moddir, _kernel(tmp_path / "held", {"c": ["e"], "e": []}))
    holders = held.plan_remove("c", RemoveFlags(remove_holders=True))
    assert _names(holders.steps) == [("rmmod", "e"), ("rmmod", "c"), ("rmmod", "c")]
    assert holders.status == -errno.ENOENT
    assert modprobe.plan_remove("d").status == 0
    assert modprobe.plan_remove("d", RemoveFlags(first_time=True)).status == -errno.ENOENT
    assert modprobe.plan_remove("zz").messages[-1][1] == "Module zz is builtin.\n"


def test_remove_command_runs_instead(moddir: Path, tmp_path: Path) -> None:
    modprobe = _modprobe(
        moddir, _kernel(tmp_path, {"d": []}), "remove d /bin/echo bye $CMDLINE_OPTS\n"
    )
    assert modprobe.plan_remove("d").steps == (Step("remove", "d", command="/bin/echo bye "),)


def test_install_command_environment(moddir: Path, tmp_path: Path) -> None:
    from lkm.workflows.modprobe import Module

    out = tmp_path / "env.txt"
    actions = KernelActions(KernelModules(), {"MODPROBE_OPTIONS": "-q"})
    status = actions.run_command(
        Module("d"), f'echo "$MODPROBE_MODULE $MODPROBE_OPTIONS" > {out}; exit 3'
    )
    assert status == 3 and out.read_text() == "d -q\n"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ("-v -q", ["-v", "-q"]),
        ("-v  -q", ["-v", "", "-q"]),  # kmod: two spaces make an empty word
        ("'-d /a b' -v", ["-d /a b", "", "-v"]),  # and so does a closing quote
        ('-C"x y"z', ["-Cx yz"]),
        ("", []),
    ],
)
def test_modprobe_options_split_like_kmod(env: str, words: list[str]) -> None:
    assert split_env_options(env) == words


def test_command_line_options_are_quoted_like_kmod() -> None:
    assert options_from_words([]) is None
    assert options_from_words(["a=1", "b=x y", "c='q r'", "flag"]) == "a=1 b=\"x y\" c='q r' flag"
    assert [parse_wait(v) for v in ("10", "0x10", "010", "1x", "")] == [10, 16, 8, None, None]


def test_softdep_cycle_removal_ends(moddir: Path, tmp_path: Path) -> None:
    """kmod 30 overflows its stack here (exit 139); lkm removes each once."""
    kernel = _kernel(tmp_path, {"d": [], "e": []})
    modprobe = _modprobe(moddir, kernel, "softdep d post: e\nsoftdep e post: d\n")
    assert _names(modprobe.plan_remove("d").steps) == [("rmmod", "e"), ("rmmod", "d")]


def test_a_path_operand_loads_that_file_as_the_command_line_does(
    moddir: Path, tmp_path: Path
) -> None:
    modprobe = _modprobe(moddir, _kernel(tmp_path, {}))
    own = tmp_path / "mine.ko"
    own.write_bytes(b"")
    relative = "./" + str(own.relative_to(Path.cwd())) if own.is_relative_to(Path.cwd()) else None
    plan = modprobe.plan_load(str(own), options="x=1")
    assert plan.steps == (Step("insmod", "mine", path=str(own), options="x=1"),)
    if relative is not None:
        assert modprobe.plan_load(relative).steps[0].path == relative
    missing = modprobe.plan_load(str(tmp_path / "gone.ko"))
    assert missing.status == -errno.ENOENT and missing.steps == ()
    assert missing.messages == (
        (-1, f"Failed to get module from path {tmp_path}/gone.ko: No such file or directory\n"),
    )


def test_request_maps_options_to_flags_as_kmod() -> None:
    forced = Request(force=True).load_flags()
    assert forced.force_modversion and forced.force_vermagic
    assert Request(force_vermagic=True).load_flags() == LoadFlags(force_vermagic=True)
    assert Request(show_depends=True, dry_run=True).load_flags() == LoadFlags(
        ignore_loaded=True, dry_run=True
    )
    removing = Request(remove=True, force=True, wait_msec=5, remove_holders=True).remove_flags()
    assert removing == RemoveFlags(force=True, wait_msec=5, remove_holders=True)


def test_run_walks_the_names_as_the_command_does(moddir: Path, tmp_path: Path) -> None:
    """The per-name loop behind ``lkm modprobe``: -R prints, -a loads every
    name and keeps going past a missing one, without -a the rest are options."""
    steps: list[Step] = []
    messages: list[tuple[int, str]] = []
    emitted: list[str] = []
    conf = moddir.parent / "run.conf"
    conf.write_text("")
    modprobe = Modprobe(
        str(moddir), read_config(str(moddir), [str(conf)], ""), _kernel(tmp_path, {}),
        report=lambda p, t: messages.append((p, t)), show=steps.append,
    )  # fmt: skip
    assert modprobe.run(Request(lookup_only=True), ["pci:v1234d0001"], emitted.append) == 0
    assert sorted(emitted) == ["a\n", "d\n"] and steps == []
    status = modprobe.run(Request(use_all=True, dry_run=True), ["d", "nothing", "e"], print)
    assert status == -errno.ENOENT
    assert [s.module for s in steps] == ["d", "c", "e"]
    assert messages == [(-1, f"Module nothing not found in directory {moddir}\n")]
    steps.clear()
    assert modprobe.run(Request(dry_run=True), ["d", "x=1", "y=a b"], print) == 0
    assert steps == [Step("insmod", "d", path=f"{moddir}/kernel/d.ko", options='x=1 y="a b"')]


def test_symbol_crcs_tells_kmods_errnos_apart(tmp_path: Path) -> None:
    not_elf = tmp_path / "text.ko"
    not_elf.write_bytes(b"just some text, not a module at all\n" * 4)
    damaged = tmp_path / "damaged.ko"
    damaged.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(100))
    for path, code in ((not_elf, errno.ENOEXEC), (damaged, errno.EINVAL)):
        with pytest.raises(SymbolsUnreadable) as caught:
            symbol_crcs(str(path), exports=False)
        assert caught.value.code == code, path
    with pytest.raises(SymbolsUnreadable) as caught:
        symbol_crcs(str(tmp_path / "gone.ko"), exports=True)
    assert caught.value.code == errno.ENOENT
