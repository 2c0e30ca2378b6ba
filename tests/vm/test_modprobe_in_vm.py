"""modprobe against the real Debian kernels: lkm's and kmod's, run by turn.

Each test is a scenario: a few modprobe commands run one after the other.
kmod's modprobe runs the scenario, then lkm's does, each from the same
starting state: every module loaded since boot is unloaded (kmod's rmmod,
newest first), the scenario's setup runs (kmod's modprobe), then the
commands. Each command of lkm's run is compared with the same command of
kmod's: exit status, stdout, stderr, and ``/proc/modules`` before and
after, in its order (newest first, so the order of loading shows).

The guest's root is an in-memory overlay of the host's, so configuration
written under /tmp in the guest never reaches the host; ``-C`` points both
tools at it. The modules the guest loaded at boot (virtio, 9p, netfs,
fscache, overlay) carry the shared root and are never removed.

Deliberate differences, each asserted exactly where it shows:

* kmod prints libkmod's errors with libkmod's source file, line and
  function (``modprobe: ERROR: ../libkmod/libkmod-module.c:856
  kmod_module_remove_module() could not remove …``); lkm, which has no C
  source, prints the rest of the line.
* ``-w`` running out of time: kmod 30 spins for ever or reports success
  (fixed upstream after kmod 34); lkm fails as the fixed kmod does.
* ``-f`` of a kernel-decompressed ``.ko.xz`` (6.12): kmod 30 breaks the
  signature and is refused; lkm, as kmod 34, loads it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lkm.testing.guest import Guest

LKM = str(Path(sys.executable).with_name("lkm"))
Report = Callable[[str], None]

CONF = "/tmp/lkm-modprobe-in-vm"  # in the guest's overlay, not on the host
INSTALL = "/bin/echo hello $CMDLINE_OPTS; echo module=$MODPROBE_MODULE"
REMOVE = "/bin/echo bye; /sbin/rmmod dummy"
CONFIGS = {
    "softdep": "softdep dummy pre: loop post: tun\n",
    "install": f"options dummy numdummies=2\ninstall dummy {INSTALL}\nremove dummy {REMOVE}\n",
    "blacklist": "blacklist dummy\nalias mynet dummy\n",
}
MARK = "@@@ lkm-modprobe-in-vm @@@"
SEP = f"\n{MARK}\n".encode()
SECTIONS = 6  # stdout, stderr, status, after, probe, before
SETUP_FAILED = 125
LIBKMOD_WHERE = re.compile(rb"^modprobe: ERROR: \.\./libkmod/[\w.-]+:\d+ \w+\(\) ", re.M)


@dataclass(frozen=True)
class Outcome:
    """What one modprobe command did."""

    status: int
    stdout: bytes
    stderr: bytes
    modules: tuple[str, ...]  # /proc/modules after the command, newest first
    probe: bytes  # what the scenario's probe command printed after it
    before: tuple[str, ...]  # /proc/modules right before it

    def new(self) -> list[str]:
        """Modules the command loaded, in the order it loaded them."""
        return [m for m in reversed(self.modules) if m not in self.before]

    def gone(self) -> set[str]:
        return set(self.before) - set(self.modules)


@dataclass(frozen=True)
class Boot:
    """The guest as it booted: its modules; the configuration written."""

    modules: tuple[str, ...]

    @staticmethod
    def conf(name: str) -> str:
        return f"{CONF}/{name}"


@pytest.fixture(scope="module")
def boot(vm: Guest) -> Iterator[Boot]:
    modules = tuple(vm.check("cut -d' ' -f1 /proc/modules").stdout.decode().split())
    script = [f"rm -rf {CONF}"]
    for name, text in CONFIGS.items():
        script.append(f"mkdir -p {CONF}/{name}")
        script.append(f"printf %s {shlex.quote(text)} > {CONF}/{name}/{name}.conf")
    vm.check("\n".join(script))
    yield Boot(modules)


def run_tool(
    vm: Guest,
    boot: Boot,
    tool: str,
    commands: list[list[str]],
    setup: str = "",
    probe: str = "",
    strict: bool = True,
) -> list[Outcome]:
    """Reset the guest to its boot modules, run ``setup``, then each
    command with ``tool``; one guest step."""
    kept = " ".join(boot.modules)
    unload = "rmmod $m" if strict else "rmmod $m 2>/dev/null || true"
    script = [
        f"""(
set -e
for m in $(cut -d' ' -f1 /proc/modules); do
    case ' {kept} ' in *" $m "*) ;; *) {unload};; esac
done
{setup}
) >/tmp/lkm-vm-setup.log 2>&1 || {{ cat /tmp/lkm-vm-setup.log >&2; exit {SETUP_FAILED}; }}"""
    ]
    mark = f"printf '\\n%s\\n' '{MARK}'"
    for args in commands:
        script.append(f"""\
before=$(cut -d' ' -f1 /proc/modules)
{tool} {shlex.join(args)} 2>/tmp/lkm-vm-stderr
status=$?
{mark}; cat /tmp/lkm-vm-stderr
{mark}; echo $status
{mark}; cut -d' ' -f1 /proc/modules
{mark}; {probe or ":"} 2>&1
{mark}; echo "$before"
{mark}""")
    result = vm.run("\n".join(script))
    if result.status == SETUP_FAILED:
        raise AssertionError(f"the scenario's setup failed:\n{result.describe()}")
    assert (result.status, result.stderr) == (0, b""), result.describe()
    parts = result.stdout.split(SEP)
    assert len(parts) == SECTIONS * len(commands) + 1 and parts[-1] == b"", result.describe()
    outcomes = []
    for i in range(len(commands)):
        out, err, status, after, probed, before = parts[SECTIONS * i : SECTIONS * (i + 1)]
        outcomes.append(
            Outcome(
                int(status),
                out,
                err,
                tuple(after.decode().split()),
                probed,
                tuple(before.decode().split()),
            )
        )
    return outcomes


def compare(
    vm: Guest,
    boot: Boot,
    commands: list[list[str]],
    report: Report,
    setup: str = "",
    probe: str = "",
    strict: bool = True,
) -> tuple[list[Outcome], list[Outcome]]:
    """kmod's modprobe, then lkm's, each from the same state; their outcomes."""
    kmod = run_tool(vm, boot, "modprobe", commands, setup, probe, strict)
    mine = run_tool(vm, boot, f"{LKM} modprobe", commands, setup, probe, strict)
    for args in commands:
        shown = " ".join(args) if len(args) < 8 else f"{' '.join(args[:2])} … ({len(args)} args)"
        report(f"modprobe {shown} on {vm.kernel.label}: lkm vs kmod in the guest")
    return kmod, mine


def same(
    vm: Guest,
    boot: Boot,
    commands: list[list[str]],
    report: Report,
    setup: str = "",
    probe: str = "",
) -> list[Outcome]:
    """Compare, every command equal; kmod's outcomes."""
    kmod, mine = compare(vm, boot, commands, report, setup, probe)
    for theirs, ours in zip(kmod, mine, strict=True):
        assert ours == theirs
    return kmod


def module_name(path: str) -> str:
    return Path(path).name.split(".")[0].replace("-", "_")


def insmod_names(stdout: bytes) -> list[str]:
    return [
        module_name(line.split()[1])
        for line in stdout.decode().splitlines()
        if line.startswith("insmod ")
    ]


def rmmod_names(stdout: bytes) -> list[str]:
    return [line.split()[1] for line in stdout.decode().splitlines()]


def in_use(name: str) -> bytes:
    return f"modprobe: FATAL: Module {name} is in use.\n".encode()


# -- loading and unloading chains -------------------------------------------------


def test_8021q_loads_after_its_dependencies_and_unloads_those_nobody_uses(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """8021q needs garp, mrp, stp, llc, none loaded at boot: ``-v`` loads
    them in the order ``-D`` gives. ``-r llc`` refuses (in use). ``-r``
    looks at each dependency once, in loading order, and unloads those with
    no user left at that moment: garp and mrp go, stp and llc (whose user
    garp is still there when their turn comes) stay. ``--remove-holders -r
    llc`` then unloads stp first, and with it llc; kmod then tries llc
    itself again and reports ENOENT (with libkmod's source position)."""
    commands = [
        ["-D", "8021q"],
        ["-v", "8021q"],
        ["-r", "llc"],
        ["-r", "-v", "8021q"],
        ["--remove-holders", "-r", "-v", "llc"],
    ]
    kmod, mine = compare(vm, boot, commands, report)
    holders = len(commands) - 1
    assert LIBKMOD_WHERE.search(kmod[holders].stderr), kmod[holders]
    kmod[holders] = dataclasses.replace(
        kmod[holders], stderr=LIBKMOD_WHERE.sub(b"modprobe: ERROR: ", kmod[holders].stderr)
    )
    for theirs, ours in zip(kmod, mine, strict=True):
        assert ours == theirs
    shown, loaded, refused, removed, holders_removed = kmod

    assert shown.modules == shown.before == boot.modules
    order = insmod_names(shown.stdout)
    assert order[-1] == "8021q" and set(order) == {"8021q", "garp", "mrp", "stp", "llc"}
    assert (loaded.status, loaded.stderr) == (0, b"")
    assert loaded.new() == order and insmod_names(loaded.stdout) == order

    assert (refused.status, refused.stderr) == (1, in_use("llc"))
    assert refused.modules == refused.before

    assert removed.status == 0 and removed.gone() == {"8021q", "garp", "mrp"}
    assert rmmod_names(removed.stdout) == ["8021q", "mrp", "garp"]

    assert rmmod_names(holders_removed.stdout) == ["stp", "llc", "llc"]
    assert holders_removed.status == 1 and holders_removed.gone() == {"stp", "llc"}
    assert holders_removed.modules == boot.modules
    assert (
        holders_removed.stderr
        == b"modprobe: ERROR: could not remove 'llc': No such file or directory\n"
    )


def test_ext4_loads_its_softdeps_and_dependencies_first(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """ext4 has a ``softdep ext4 pre: crypto-crc32c`` in modules.softdep
    (an alias several modules provide) and needs jbd2, mbcache, crc16:
    ``-v`` loads them in the order ``-D`` gives."""
    shown, loaded = same(vm, boot, [["-D", "ext4"], ["-v", "ext4"]], report)
    order = [m for m in insmod_names(shown.stdout) if m not in boot.modules]
    assert order[-1] == "ext4" and {"jbd2", "mbcache", "crc16"} < set(order)
    assert (loaded.status, loaded.stderr) == (0, b"")
    assert loaded.new() == order and insmod_names(loaded.stdout) == order


def test_show_depends_lists_a_loaded_chain_and_dry_run_only_what_is_missing(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``--show-depends 9p`` lists 9p's chain although all of it is loaded;
    ``-n -v nfsv4`` lists only what nfsv4 needs beyond netfs (and on 6.1
    fscache), loaded at boot; ``-r 9pnet`` refuses: 9p uses it. Nothing
    changes."""
    shown, planned, refused = same(
        vm, boot, [["--show-depends", "9p"], ["-n", "-v", "nfsv4"], ["-r", "9pnet"]], report
    )
    names = insmod_names(shown.stdout)
    assert names[-1] == "9p" and {"9pnet", "netfs"} < set(names) <= set(boot.modules)
    order = insmod_names(planned.stdout)
    assert order[-1] == "nfsv4" and "sunrpc" in order and "netfs" not in order
    assert (refused.status, refused.stderr) == (1, in_use("9pnet"))
    for outcome in (shown, planned, refused):
        assert outcome.modules == boot.modules


def test_remove_with_wait_on_a_module_that_stays_in_use_fails(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``-w 300 -r llc`` while 8021q holds it: the wait runs out, and lkm
    says so and fails, llc still loaded. kmod is not run: when the wait
    runs out kmod 30 (and 34) either spins for ever (its backoff loops
    once the clock is past the deadline) or, when the last sleep ends
    exactly on it, reports success silently. Upstream fixed both after
    34 (f14f260 "util: fix endless loop in get_backoff_delta_msec",
    2537c17 "modprobe: return error on timeout"); lkm does what the
    fixed kmod does."""
    (mine,) = run_tool(
        vm, boot, f"{LKM} modprobe", [["-w", "300", "-r", "llc"]], setup="modprobe 8021q"
    )
    expected = b"modprobe: ERROR: could not remove 'llc': Resource temporarily unavailable\n"
    assert (mine.status, mine.stdout, mine.stderr) == (1, b"", expected)
    assert mine.modules == mine.before and "llc" in mine.modules
    report(f"modprobe -w 300 -r llc on {vm.kernel.label}: lkm against fixed upstream kmod")


# -- configuration ---------------------------------------------------------------


def test_softdep_pre_loads_before_and_post_after_and_both_unload(
    vm: Guest, boot: Boot, report: Report
) -> None:
    conf = Boot.conf("softdep")
    loaded, removed = same(
        vm, boot, [["-C", conf, "-v", "dummy"], ["-C", conf, "-v", "-r", "dummy"]], report
    )
    assert loaded.new() == ["loop", "dummy", "tun"]
    assert insmod_names(loaded.stdout) == ["loop", "dummy", "tun"]
    assert rmmod_names(removed.stdout) == ["tun", "dummy", "loop"]
    assert removed.modules == boot.modules


def test_install_and_remove_commands_run_instead_of_loading(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """The install command gets the configured options and the command
    line's ($CMDLINE_OPTS; a value with a space quoted) and
    $MODPROBE_MODULE; nothing is loaded. ``-r`` of dummy (loaded with
    ``-i``, which ignores the commands) runs the remove command, which
    unloads it."""
    conf = Boot.conf("install")
    removed, installed = same(
        vm,
        boot,
        [["-C", conf, "-v", "-r", "dummy"], ["-C", conf, "-v", "dummy", "x=a b"]],
        report,
        setup=f"modprobe -C {conf} -i dummy",
    )
    options = 'numdummies=2 x="a b"'
    # The command's own output comes first: modprobe's -v line waits in
    # its stdout buffer until it exits (kmod's printf, lkm's writer alike).
    expected = f"hello numdummies=2 x=a b\nmodule=dummy\ninstall {INSTALL} {options}\n"
    assert (installed.status, installed.stdout) == (0, expected.encode())
    assert installed.modules == boot.modules
    assert (removed.status, removed.stdout) == (0, f"remove {REMOVE}\nbye\n".encode())
    assert removed.modules == boot.modules


def test_blacklist_skips_an_alias_but_not_a_name_unless_b(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``blacklist dummy``, ``alias mynet dummy``: ``-b dummy`` loads
    nothing, ``mynet`` loads nothing (both succeed), ``dummy`` by name
    loads (``-v``: the bare insmod line, no options: ``-C`` replaces the
    default configuration)."""
    conf = Boot.conf("blacklist")
    by_b, by_alias, by_name = same(
        vm,
        boot,
        [
            ["-C", conf, "-v", "-b", "dummy"],
            ["-C", conf, "-v", "mynet"],
            ["-C", conf, "-v", "dummy"],
        ],
        report,
    )
    for skipped in (by_b, by_alias):
        assert (skipped.status, skipped.stdout, skipped.stderr) == (0, b"", b"")
        assert skipped.modules == boot.modules
    moddir = re.escape(f"/lib/modules/{vm.kernel.version}/".encode())
    assert re.fullmatch(b"insmod " + moddir + rb"\S+/dummy\.ko(\.xz)? \n", by_name.stdout)
    assert (by_name.status, by_name.new()) == (0, ["dummy"])


# -- options ---------------------------------------------------------------------


def test_loop_takes_parameters_and_first_time_fails_when_there_is_nothing_to_do(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``loop max_loop=3`` reaches the kernel (systemd's modprobe.d, on the
    default path, has nothing for loop); ``--first-time`` fails on a loaded
    module and, with ``-r``, on one that is not loaded; ``-w`` with nothing
    holding the module removes it at once."""
    loaded, again, removed, absent = same(
        vm,
        boot,
        [
            ["-v", "loop", "max_loop=3"],
            ["--first-time", "loop"],
            ["-w", "1000", "-r", "-v", "loop"],
            ["--first-time", "-r", "loop"],
        ],
        report,
        probe="cat /sys/module/loop/parameters/max_loop",
    )
    moddir = re.escape(f"/lib/modules/{vm.kernel.version}/".encode())
    assert re.fullmatch(b"insmod " + moddir + rb"\S+/loop\.ko(\.xz)? max_loop=3\n", loaded.stdout)
    assert (loaded.probe, loaded.new()) == (b"3\n", ["loop"])
    message = b"modprobe: ERROR: could not insert 'loop': Module already in kernel\n"
    assert (again.status, again.stderr) == (1, message)
    assert (removed.status, removed.stdout) == (0, b"rmmod loop\n")
    assert removed.modules == boot.modules
    assert (absent.status, absent.stderr) == (
        1,
        b"modprobe: FATAL: Module loop is not in kernel.\n",
    )


def test_force_reaches_the_kernel_as_finit_module_flags(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``-f`` loads a signed module with its version checks off: the
    kernel skips the signature and taints (F for forced, E unsigned).

    On 6.12 (``.ko.xz``, decompressed by the kernel) kmod 30 differs, as
    it cannot hand the kernel a compressed file (MODULE_INIT_COMPRESSED_FILE
    came in kmod 31): it decompresses, strips vermagic and ``__versions``
    from the image in memory and calls init_module, and the altered image
    fails the signature check (EKEYREJECTED). kmod 34 passes the file to
    finit_module with the flags, as lkm does, and the module loads."""
    probe = "cat /sys/module/dummy/taint"
    kmod, mine = compare(vm, boot, [["-f", "-v", "dummy"]], report, probe=probe)
    (theirs,), (ours,) = kmod, mine
    assert ours.new() == ["dummy"] and b"F" in ours.probe and ours.status == 0
    if vm.kernel.label == "6.1":
        assert ours == theirs
    else:
        rejected = b"modprobe: ERROR: could not insert 'dummy': Key was rejected by service\n"
        assert (theirs.status, theirs.stderr, theirs.new()) == (1, rejected, [])
        assert (ours.stdout, ours.stderr) == (theirs.stdout, b"")


# -- the guest's own devices (last: a module may stay pinned once loaded) ----------


def test_modaliases_of_the_guest_devices_load_what_kmod_loads(
    vm: Guest, boot: Boot, report: Report
) -> None:
    """``modprobe -a`` of every modalias under /sys/devices. Some drivers
    find no device under TCG (ENODEV) and many aliases match nothing: the
    messages and status must be the same. A module that cannot be
    unloaded after kmod's run (6.12's crct10dif_pclmul, pinned by the
    built-in crc-t10dif once registered) is already there for lkm's run."""
    found = vm.check("find /sys/devices -name modalias -exec cat {} + | sort -u").stdout
    aliases = found.decode().split("\n")[:-1]
    assert len(aliases) > 20
    (kmod,), (mine,) = compare(vm, boot, [["-a", *aliases]], report, strict=False)
    assert (mine.status, mine.stdout, mine.stderr) == (kmod.status, kmod.stdout, kmod.stderr)
    assert set(mine.modules) == set(kmod.modules)
    pinned = set(mine.before) - set(kmod.before)
    assert pinned <= set(kmod.new())
    assert mine.new() == [m for m in kmod.new() if m not in pinned]
    assert len(kmod.new()) > 10
    report(
        f"  {len(aliases)} modaliases on {vm.kernel.label}: {len(kmod.new())} modules loaded"
        + (f", {' '.join(sorted(pinned))} pinned after kmod's run" if pinned else "")
    )
