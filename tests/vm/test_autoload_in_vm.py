"""``lkm autoload`` in the real Debian kernels against systemd-udevd.

Coldplug: two fresh guests of each kernel with the same extra QEMU
devices (network cards, a sound card and codec, USB host controllers
with a tablet and a keyboard, AHCI, a watchdog, virtio rng/balloon/net,
pvpanic). In one, Debian's ``systemd-udevd`` (from the host root, with
``SYSTEMD_IGNORE_CHROOT=1`` and a tmpfs on /run) is started and
``udevadm trigger`` (subsystems, then devices) and ``udevadm settle``
run; in the other, ``lkm autoload --coldplug --once``. The modules each
left loaded (``/proc/modules``) must be the same set — the USB and HID
children included, which appear only after their parents' drivers bind
— and the wall times (udev: trigger to settled; lkm: start to settled)
are printed side by side.

Hotplug and hostile input, in one 6.1 guest: ``lkm autoload`` runs in
the background with ``blacklist e1000`` in /run/modprobe.d; QMP
``device_add`` of e1000 (blacklisted: logged, not loaded), virtio-rng-pci
and a USB tablet on an EHCI controller (loaded, with their children);
datagrams sent to the uevent group from a process (sender port id ≠ 0)
and malformed ones are logged as ignored and never acted on; a module
whose init fails is logged and the daemon goes on; index files replaced
while it runs (as depmod replaces them) are noticed (the database read
again, once); SIGTERM ends it. Then the same two devices once more, with
systemd-udevd in lkm's place (their modules removed first): the time from
``device_add`` to the module loaded, for each, side by side.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import json_of

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest
from lkm.testing.host import device_add
from lkm.vm.qemu import VmSession

Report = Callable[[str], None]
LKM = str(Path(sys.executable).with_name("lkm"))
DEVICES = (
    "e1000",
    "virtio-rng-pci",
    "intel-hda,id=hda",
    "hda-duplex,bus=hda.0",
    "usb-ehci,id=ehci",
    "usb-tablet,bus=ehci.0",
    "ich9-ahci",
    "virtio-balloon",
    "qemu-xhci,id=xhci",
    "usb-kbd,bus=xhci.0",
    "i6300esb",
    "rtl8139",
    "virtio-net-pci",
    "pvpanic",
)
MODULES = "cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' '"
NOW = "date +%s.%N"
UDEV_DAEMON = """
mountpoint -q /run || mount -t tmpfs tmpfs /run
export SYSTEMD_IGNORE_CHROOT=1
/lib/systemd/systemd-udevd --daemon
udevadm settle --timeout=60
"""
UDEV = f"""
{UDEV_DAEMON}
start=$({NOW})
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=180
end=$({NOW})
echo "seconds $start $end"
echo "modules $({MODULES})"
"""
AUTOLOAD = f"""
start=$({NOW})
{LKM} autoload --coldplug --once --json > /tmp/autoload.log
status=$?
end=$({NOW})
echo "seconds $start $end"
echo "status $status"
echo "modules $({MODULES})"
"""


def _device_args(devices: tuple[str, ...]) -> list[str]:
    return [arg for device in devices for arg in ("-device", device)]


def _facts(stdout: bytes) -> dict[str, str]:
    facts = {}
    for line in stdout.decode().splitlines():
        key, _, value = line.partition(" ")
        if key == "seconds":  # start and end, from date +%s.%N in the guest
            start, end = value.split()
            facts[key] = str(float(end) - float(start))
        elif key in ("status", "modules"):
            facts[key] = value.strip()
    return facts


def _in_fresh_guest(kernel: KernelFixture, script: str) -> dict[str, str]:
    extra = _device_args(DEVICES)
    with VmSession(str(kernel.vmlinuz), str(kernel.moddir), kernel.version, extra=extra) as vm:
        result = Guest(vm, kernel).check(["sh", "-c", script], timeout=400)
    facts = _facts(result.stdout)
    assert {"seconds", "modules"} <= set(facts), result.describe()
    return facts


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_coldplug_loads_what_udev_loads(
    label: str, kernels: list[KernelFixture], report: Report
) -> None:
    kernel = next(k for k in kernels if k.label == label)
    udev = _in_fresh_guest(kernel, UDEV)
    ours = _in_fresh_guest(kernel, AUTOLOAD)
    assert ours["status"] == "0"
    by_udev, by_lkm = set(udev["modules"].split()), set(ours["modules"].split())
    assert by_lkm == by_udev, (sorted(by_udev - by_lkm), sorted(by_lkm - by_udev))
    assert {"usbhid", "e1000", "virtio_rng", "ahci"} <= by_lkm  # children and parents
    ratio = float(ours["seconds"]) / float(udev["seconds"])
    report(
        f"autoload coldplug on {kernel.version}, {len(DEVICES)} extra devices: "
        f"{len(by_lkm)} modules, same set as systemd-udevd; "
        f"lkm {float(ours['seconds']):.1f} s (1 s of it the settle wait) vs udev trigger→settle "
        f"{float(udev['seconds']):.1f} s: ratio {ratio:.2f} (target ≤ 1.0)"
    )


# A process's datagrams to the uevent group: one shaped like a kernel
# uevent asking for e1000's alias, one malformed.
_FORGE = r"""
import socket
s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
s.bind((0, 0))
fake = b"add@/devices/fake\0ACTION=add\0DEVPATH=/devices/fake\0SUBSYSTEM=pci\0" \
    b"MODALIAS=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\0SEQNUM=1\0"
s.sendto(fake, (0, 1))
s.sendto(b"garbage without a header", (0, 1))
print("sent")
"""


def test_hotplug_blacklist_and_hostile_datagrams(
    kernel_61: KernelFixture, tmp_path: Path, report: Report
) -> None:
    kernel = kernel_61
    qmp = tmp_path / "qmp.sock"
    extra = ["-qmp", f"unix:{qmp},server=on,wait=off", *_device_args(("usb-ehci,id=ehci",))]
    start = (
        "mountpoint -q /run || mount -t tmpfs tmpfs /run; mkdir -p /run/modprobe.d; "
        "echo 'blacklist e1000' > /run/modprobe.d/lkm-test.conf; "
        f"setsid {LKM} autoload --coldplug --json > /run/autoload.log 2>&1 < /dev/null & "
        "echo $! > /run/autoload.pid; "
        # coldplug done and the events its loads caused handled (quiet 2 s)
        "until grep -q coldplugged /run/autoload.log; do sleep 0.2; done; "
        "size=-1; until [ $size = $(wc -c < /run/autoload.log) ]; do "
        "size=$(wc -c < /run/autoload.log); sleep 2; done; echo started"
    )
    wait_for = (
        "for i in $(seq {tries}); do grep -q '^{module} ' /proc/modules && break; sleep 0.1; done; "
        "grep -c '^{module} ' /proc/modules"
    )
    finish = (
        "pid=$(cat /run/autoload.pid); kill -TERM $pid; "
        "for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
        "kill -0 $pid 2>/dev/null && echo running || echo ended"
    )
    with VmSession(str(kernel.vmlinuz), str(kernel.moddir), kernel.version, extra=extra) as vm:
        guest = Guest(vm, kernel)
        assert guest.check(["sh", "-c", start], timeout=120).stdout.endswith(b"started\n")
        forged = guest.check([sys.executable, "-c", _FORGE]).stdout
        assert forged == b"sent\n"
        # the index files replaced under the running daemon, as depmod does
        replace = "cd /lib/modules/$(uname -r) && cp -p {0} {0}.new && mv {0}.new {0}"
        timings = {}
        for driver, module, tries, arguments in (
            ("virtio-rng-pci", "virtio_rng", 300, {"driver": "virtio-rng-pci", "id": "rng1"}),
            ("usb-tablet", "usbhid", 300, {"driver": "usb-tablet", "id": "tab1", "bus": "ehci.0"}),
            ("e1000", "e1000", 30, {"driver": "e1000", "id": "nic1"}),  # blacklisted
        ):
            if driver == "e1000":  # after the timed ones: a reload costs its own time
                guest.check(["sh", "-c", replace.format("modules.alias.bin")])
            device_add(str(qmp), **arguments)
            added = time.monotonic()
            wait = wait_for.format(module=module, tries=tries)
            count = guest.run(["sh", "-c", wait], timeout=90)
            timings[driver] = (count.stdout.decode().strip(), time.monotonic() - added)
        ended = guest.check(["sh", "-c", finish]).stdout.decode().strip()
        log = guest.check(["cat", "/run/autoload.log"]).stdout.decode()
        # The same two devices again with systemd-udevd in lkm's place.
        guest.check(["sh", "-c", f"rmmod hid_generic usbhid virtio_rng; {UDEV_DAEMON}"])
        by_udev = {}
        for driver, module, arguments in (
            ("virtio-rng-pci", "virtio_rng", {"driver": "virtio-rng-pci", "id": "rng2"}),
            ("usb-tablet", "usbhid", {"driver": "usb-tablet", "id": "tab2", "bus": "ehci.0"}),
        ):
            device_add(str(qmp), **arguments)
            added = time.monotonic()
            wait = wait_for.format(module=module, tries=300)
            count = guest.run(["sh", "-c", wait], timeout=90)
            by_udev[driver] = (count.stdout.decode().strip(), time.monotonic() - added)
    events = json_of("autoload", log)  # each line validated against its schema
    assert timings["virtio-rng-pci"][0] == "1" and timings["usb-tablet"][0] == "1", timings
    assert timings["e1000"][0] == "0", timings  # blacklisted
    results = {(e.get("alias", ""), e.get("result")) for e in events if e["event"] == "load"}
    assert any(a.startswith("pci:v00008086d0000100E") and r == "blacklisted" for a, r in results)
    ignored = [e for e in events if e["event"] == "ignored"]
    malformed = [e for e in events if e["event"] == "malformed"]
    assert len(ignored) == 2 and all("port id" in e["detail"] for e in ignored), events
    assert not malformed  # the forged ones are dropped on their sender before parsing
    assert any(r in ("failed", "partly loaded") for _, r in results)  # a module's init failed
    assert ended == "ended"
    assert [e["event"] for e in events].count("reload") == 1, events
    assert [e["event"] for e in events].count("coldplugged") == 1, events
    assert all(count == "1" for count, _ in by_udev.values()), by_udev
    shown = ", ".join(
        f"{driver} lkm {timings[driver][1]:.2f} s, udev {seconds:.2f} s "
        f"(ratio {timings[driver][1] / seconds:.2f})"
        for driver, (_, seconds) in by_udev.items()
    )
    report(
        f"autoload hotplug on {kernel.version}: QMP device_add to the module seen loaded by a "
        f"guest step (which takes its own start-up): {shown}; e1000 blacklisted; "
        "2 forged datagrams ignored"
    )
