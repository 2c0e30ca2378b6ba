"""insmod, rmmod, lsmod, dmesg and ksyms against the real Debian kernels.

Each test runs in the module's guest (one boot per kernel) and, where kmod
defines the behaviour, runs kmod's tool on the same input in the same
guest and compares stdout, stderr and status byte for byte.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import json_of

from lkm.formats.compression import Compression, compress
from lkm.formats.module_file import open_module
from lkm.testing.guest import Guest
from lkm.vm.qemu import StepResult

LKM = str(Path(sys.executable).with_name("lkm"))
Report = Callable[[str], None]


def module_path(vm: Guest, name: str) -> str:
    return vm.check([LKM, "modinfo", "-n", name]).stdout.decode().strip()


def on_host(vm: Guest, guest_path: str) -> str:
    """The host file the guest sees at ``guest_path`` (its module tree is a
    bind mount of the fixture's indexed tree)."""
    tree = f"/lib/modules/{vm.kernel.version}"
    return str(vm.kernel.indexed_moddir) + guest_path.removeprefix(tree)


def both(vm: Guest, tool: str, args: list[str], report: Report) -> tuple[StepResult, StepResult]:
    """kmod's ``tool`` and lkm's on the same arguments; their results."""
    # By name, as a user types it: glibc's getopt messages start with argv[0].
    kmod = vm.run([tool, *args])
    mine = vm.run([LKM, tool, *args])
    report(f"{tool} {' '.join(args)} on {vm.kernel.label}: lkm vs kmod in the guest")
    return kmod, mine


def same(kmod: StepResult, mine: StepResult) -> None:
    assert (mine.status, mine.stdout, mine.stderr) == (kmod.status, kmod.stdout, kmod.stderr)


def unsigned(image: bytes | bytearray) -> bytes:
    """A module without its appended signature (the kernel checks that first)."""
    magic = b"~Module signature appended~\n"
    if not image.endswith(magic):
        return bytes(image)
    sig_len = int.from_bytes(image[-len(magic) - 4 : -len(magic)], "big")
    return bytes(image[: -len(magic) - 12 - sig_len])


def lsmod_pair(vm: Guest) -> tuple[str, str]:
    """kmod's and lkm's lsmod, taken in one step so the state is the same."""
    out = vm.check(f"lsmod; echo ===; {LKM} lsmod").stdout.decode()
    kmod, _, mine = out.partition("===\n")
    return kmod, mine


def test_insmod_lsmod_rmmod_dummy_and_loop(vm: Guest, report: Report) -> None:
    dummy, loop = module_path(vm, "dummy"), module_path(vm, "loop")
    vm.check([LKM, "insmod", dummy])
    vm.check([LKM, "insmod", loop, "max_loop=4"])
    assert vm.check("cat /sys/module/loop/parameters/max_loop").stdout == b"4\n"
    kmod, mine = lsmod_pair(vm)
    assert mine == kmod
    report(f"lsmod on {vm.kernel.label}: lkm vs kmod in the guest")
    rows = mine.splitlines()[1:3]
    assert [r.split()[0] for r in rows] == ["loop", "dummy"]
    proc = vm.check("cut -d' ' -f1 /proc/modules").stdout.decode().split()
    assert [r.split()[0] for r in mine.splitlines()[1:]] == proc
    vm.check([LKM, "rmmod", "dummy", "loop"])
    kmod, mine = lsmod_pair(vm)
    assert mine == kmod and "dummy" not in mine and "\nloop " not in mine


def test_lsmod_json_and_tree(vm: Guest) -> None:
    vm.check(["modprobe", "8021q"])
    rows = json_of("lsmod", vm.check([LKM, "lsmod", "--json"]).stdout)
    by_name = {r["module"]: r for r in rows}
    assert "8021q" in by_name["garp"]["used_by"] and by_name["8021q"]["refcount"] == 0
    assert all(r["state"] == "Live" for r in rows)
    tree = vm.check([LKM, "lsmod", "--tree"]).stdout.decode().splitlines()
    top = tree.index("8021q")
    assert any(line.endswith("garp") for line in tree[top + 1 : top + 6])
    vm.check(["modprobe", "-r", "8021q"])


def test_rmmod_refusals_match_kmod(vm: Guest, report: Report) -> None:
    vm.check(["modprobe", "8021q"])
    builtin = vm.check("head -n1 /lib/modules/$(uname -r)/modules.builtin").stdout
    builtin_name = Path(builtin.decode().strip()).name.removesuffix(".ko")
    cases = [
        ["llc"],  # held by other modules: "is in use by: …"
        ["9p"],  # mounted, no holders: "is in use"
        ["not_a_loaded_module"],
        [builtin_name],
        ["-w", "x"],
        [],
    ]
    for args in cases:
        kmod, mine = both(vm, "rmmod", args, report)
        assert kmod.status != 0, kmod.describe()
        same(kmod, mine)
    vm.check([LKM, "rmmod", "8021q", "garp", "mrp", "stp", "llc"])
    assert b"llc" not in vm.check("cat /proc/modules").stdout


def test_insmod_failures_match_kmod(
    vm: Guest, tmp_path_factory: pytest.TempPathFactory, report: Report
) -> None:
    work = tmp_path_factory.mktemp(f"insmod-{vm.kernel.label}")
    dummy = module_path(vm, "dummy")
    with open_module(on_host(vm, dummy)) as module:
        image = bytearray(module.data[: len(module.data)])
    tampered = work / "tampered.ko"  # signature no longer matches: EKEYREJECTED
    tampered.write_bytes(bytes(image[:100]) + b"\xff" + bytes(image[101:]))
    corrupt = work / "dummy.ko"  # unsigned, no ELF magic: ENOEXEC
    corrupt.write_bytes(b"\0\0\0\0" + bytes(unsigned(image)[4:]))

    vlan = module_path(vm, "8021q")  # needs garp, mrp, stp, llc: not loaded
    vm.check([LKM, "insmod", dummy])
    cases = [
        [vlan],  # Unknown symbol in module
        [str(corrupt)],  # Invalid module format
        [str(tampered)],  # Key was rejected by service
        [dummy],  # already loaded: File exists
        [str(work / "missing.ko")],
        ["-"],
        [],
        ["--force", dummy],
    ]
    for args in cases:
        kmod, mine = both(vm, "insmod", args, report)
        assert kmod.status != 0, kmod.describe()
        same(kmod, mine)
    assert b"Unknown symbol in module" in vm.run([LKM, "insmod", vlan]).stderr
    assert b"Invalid module format" in vm.run([LKM, "insmod", str(corrupt)]).stderr
    vm.check([LKM, "rmmod", "dummy"])


def test_parameters_that_are_not_utf8_reach_the_kernel_as_bytes(
    vm: Guest, tmp_path_factory: pytest.TempPathFactory, report: Report
) -> None:
    """kmod passes a parameter's bytes on and reports the kernel's answer:
    on insmod's command line and from a modprobe.d ``options`` line."""
    conf = tmp_path_factory.mktemp(f"bytes-{vm.kernel.label}")
    (conf / "dummy.conf").write_bytes(b"options dummy numdummies=\xff\n")
    dummy = module_path(vm, "dummy")
    vm.run([LKM, "rmmod", "dummy"])
    commands = [
        f"insmod {dummy} numdummies=$(printf '\\377')",
        f"modprobe -C {conf} dummy",
        f"modprobe -C {conf} dummy numdummies=$(printf 'x\\377')",
    ]
    for command in commands:
        kmod, mine = vm.run(command), vm.run(f"{LKM} {command}")
        report(f"{command[:40]}… (bytes 0xff) on {vm.kernel.label}: lkm vs kmod in the guest")
        assert kmod.status != 0, kmod.describe()  # the kernel refuses the value
        same(kmod, mine)
    assert b"dummy" not in vm.check("cat /proc/modules").stdout


def test_dmesg_matches_util_linux_and_filters_by_module(vm: Guest, report: Report) -> None:
    dummy = module_path(vm, "dummy")
    vm.check([LKM, "insmod", dummy, "lkm_test_bogus=1"])
    runs = ["", "-x", "--color=always", "-x -t --color=always", "-l err,warn,info -L=always"]
    script = "; echo ===; ".join(f"dmesg {o}; echo ===; {LKM} dmesg {o}" for o in runs)
    outputs = vm.check(script).stdout.decode().split("===\n")
    for options, util, mine in zip(runs, outputs[::2], outputs[1::2], strict=True):
        assert mine == util, f"dmesg {options}"
    lines = sum(len(util.splitlines()) for util in outputs[::2])
    report(f"dmesg on {vm.kernel.label}: lkm vs util-linux, {len(runs)} option sets, {lines} lines")
    lines = vm.check([LKM, "dmesg", "--module", "dummy"]).stdout.decode().splitlines()
    assert lines and all("] dummy: " in line for line in lines)
    assert any("unknown parameter 'lkm_test_bogus' ignored" in line for line in lines)
    # --json: the same records, each as the text's line says it
    records = json_of("dmesg", vm.check([LKM, "dmesg", "--module", "dummy", "--json"]).stdout)
    # (earlier tests' values such as \xff reach the text escaped, the JSON decoded)
    assert len(records) == len(lines)
    for record, line in zip(records, lines, strict=True):
        stamp = f"[{record['usec'] // 10**6:5d}.{record['usec'] % 10**6:06d}] "
        assert line.startswith(stamp), (record, line)
        if record["message"].isascii() and record["message"].isprintable():
            assert line.removeprefix(stamp) == record["message"]
    everything = json_of("dmesg", vm.check([LKM, "dmesg", "--json"]).stdout)
    sequences = [r["sequence"] for r in everything]
    assert sequences == sorted(sequences) and len(everything) >= len(outputs[0].splitlines()) // 2
    vm.check([LKM, "rmmod", "dummy"])


def test_ksyms_module_symbols_as_kallsyms_has_them(vm: Guest) -> None:
    vm.check([LKM, "insmod", module_path(vm, "loop")])
    out = vm.check(f"grep '\\[loop\\]$' /proc/kallsyms; echo ===; {LKM} ksyms --module loop")
    kallsyms, mine = out.stdout.decode().split("===\n")
    assert kallsyms and mine == kallsyms
    records = json_of("ksyms", vm.check([LKM, "ksyms", "--module", "loop", "--json"]).stdout)
    as_lines = [f"{r['address']} {r['type']} {r['symbol']}\t[{r['module']}]" for r in records]
    assert as_lines == kallsyms.splitlines()
    vm.check([LKM, "rmmod", "loop"])
    vm.check(["modprobe", "garp"])
    with open_module(on_host(vm, module_path(vm, "garp"))) as module:
        exports = {s.name for s in module.exports()}
    out = vm.check([LKM, "ksyms", "--module", "garp", "--exported"]).stdout.decode()
    listed = {line.split()[2] for line in out.splitlines()}
    assert listed and listed <= exports and "garp_request_join" in listed
    vm.check(["modprobe", "-r", "garp"])


def test_compressed_module_kernel_and_user_paths(
    vm: Guest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """6.12 decompresses xz itself; any other format is lkm's job."""
    compression = vm.run("cat /sys/module/compression").stdout.decode().strip()
    dummy = module_path(vm, "dummy")
    if vm.kernel.label == "6.1":
        assert compression == "" and dummy.endswith(".ko")
    else:
        assert compression == "xz" and dummy.endswith(".ko.xz")
    work = tmp_path_factory.mktemp(f"zst-{vm.kernel.label}")
    with open_module(on_host(vm, dummy)) as module:
        zst = work / "dummy.ko.zst"
        zst.write_bytes(compress(bytes(module.data[: len(module.data)]), Compression.ZSTD))
    # The kernel refuses a format it was not built for; lkm's default
    # decompresses it in user space instead.
    refused = vm.run([LKM, "insmod", "--decompress=kernel", str(zst)])
    assert refused.status == 1 and b"could not insert module" in refused.stderr
    vm.check([LKM, "insmod", str(zst)])
    vm.check([LKM, "rmmod", "dummy"])
    if vm.kernel.label == "6.12":
        for mode in ("kernel", "user", "auto"):
            vm.check([LKM, "insmod", f"--decompress={mode}", dummy])
            assert vm.check("cat /sys/module/dummy/initstate").stdout == b"live\n"
            vm.check([LKM, "rmmod", "dummy"])


def test_lsmod_usage_matches_kmod(vm: Guest, report: Report) -> None:
    kmod, mine = both(vm, "lsmod", ["extra"], report)
    assert kmod.status == 1 and kmod.stderr == b"Usage: lsmod\n"
    same(kmod, mine)


def test_forced_load_taints_and_follow_sees_it(vm: Guest) -> None:
    """``-f`` reaches the kernel as IGNORE_VERMAGIC|IGNORE_MODVERSIONS (on
    the user-space decompression path too, through a memory file); a
    ``dmesg --follow`` started before sees the kernel's lines."""
    dummy = module_path(vm, "dummy")
    script = (
        f"timeout 20 {LKM} dmesg --follow --module dummy > /tmp/follow &"
        f" sleep 2; {LKM} insmod -f --decompress=user {dummy} lkm_follow=1;"
        f" cat /sys/module/dummy/taint; sleep 2; kill %1; wait; cat /tmp/follow"
    )
    out = vm.check(script).stdout.decode().splitlines()
    assert "F" in out[0]
    assert any("unknown parameter 'lkm_follow' ignored" in line for line in out[1:])
    vm.check([LKM, "rmmod", "dummy"])


# A kernel without finit_module, made in the guest: the syscall layer
# answers ENOSYS for it and passes init_module and delete_module through.
NO_FINIT = """
import errno, sys
from lkm.system.kernel import KernelCallError, KernelModules, Syscalls
from lkm.workflows.modprobe import Modprobe

class NoFinitModule(Syscalls):
    def finit_module(self, fd, params, flags, target):
        raise KernelCallError(errno.ENOSYS, "finit_module", target)

kernel = KernelModules(syscalls=NoFinitModule())
loop, unsigned_dummy = sys.argv[1:]
kernel.insert(loop, "max_loop=3")
print(open("/sys/module/loop/parameters/max_loop").read().strip())
with Modprobe.for_system(kernel=kernel) as modprobe:
    plan = modprobe.load("garp")
    print(plan.status, *[step.module for step in plan.steps])
kernel.insert(unsigned_dummy, force=True)
print(open("/sys/module/dummy/taint").read().strip())
"""


def test_without_finit_module_init_module_loads_the_files_bytes(
    vm: Guest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kmod's fallback on a real kernel: a plain .ko on 6.1, a .ko.xz the
    kernel could decompress on 6.12 (decompressed by lkm for init_module),
    modprobe by name with dependencies, and a forced load through kmod's
    image edits (of an unsigned module: the kernel rejects an edited signed
    one with EKEYREJECTED, for kmod as for lkm)."""
    loop, dummy = module_path(vm, "loop"), module_path(vm, "dummy")
    assert loop.endswith(".ko" if vm.kernel.label == "6.1" else ".ko.xz")
    work = tmp_path_factory.mktemp(f"no-finit-{vm.kernel.label}")
    with open_module(on_host(vm, dummy)) as module:
        (work / "dummy.ko").write_bytes(unsigned(module.data[: len(module.data)]))
    out = vm.check([sys.executable, "-c", NO_FINIT, loop, str(work / "dummy.ko")]).stdout
    lines = out.decode().splitlines()
    assert lines[0] == "3" and "F" in lines[2], lines  # F: forced (E: unsigned)
    status, *loaded = lines[1].split()
    # garp last, after whichever of its dependencies earlier tests left unloaded
    assert status == "0" and loaded[-1] == "garp" and set(loaded) <= {"llc", "stp", "garp"}
    states = vm.check("cat /sys/module/llc/initstate /sys/module/stp/initstate").stdout
    assert states == b"live\nlive\n"
    vm.check([LKM, "rmmod", "loop", "dummy"])
    vm.check([LKM, "modprobe", "-r", "garp"])
