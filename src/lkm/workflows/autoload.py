"""Load modules when devices appear: what kerneld did, and what udev's
``RUN{builtin}+="kmod load"`` does for every ``add`` uevent with a
MODALIAS — in one process, with lkm's modprobe library.

Coldplug reads the ``modalias`` of every device already in
``/sys/devices`` (parents before children); then the uevent socket
brings the devices that appear, those the new drivers make among them
(a USB host controller's driver makes its hubs and their devices). Each
alias is loaded once, as ``modprobe -b -q ALIAS`` would: the
configuration, blacklist (``-b``: udev's), softdeps and options apply. A
datagram not from the kernel (sender port id ≠ 0: any process that may
send to the uevent group) is logged and ignored, as are malformed ones.
The module database is reopened when depmod replaces its index files.

``--once`` returns when coldplug has settled: no uevent for a quiet
period, within a bound on the whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.system.uevent_socket import UeventSocket
    from lkm.workflows.modprobe import Modprobe, Plan

# Aliases remembered as handled (a device's alias is not loaded twice);
# forgotten all at once past this many, so memory stays bounded.
MAX_REMEMBERED = 4096
_DATABASE_FILES = ("modules.dep.bin", "modules.alias.bin")


class LoadEvent(Record):
    """One alias handled: what it loaded, or why not."""

    devpath: str
    alias: str
    # loaded, partly loaded, loaded already, blacklisted, no module, failed, would load
    result: str
    modules: tuple[str, ...] = ()
    detail: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        names = ",".join(self.modules) or "-"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.devpath} {self.alias}: {names}: {self.result}{detail}"

    def as_json(self) -> dict[str, object]:
        return {
            "event": "load",
            "devpath": self.devpath,
            "alias": self.alias,
            "modules": list(self.modules),
            "result": self.result,
            "detail": self.detail,
            "seconds": round(self.seconds, 6),
        }


class Notice(Record):
    """Something the daemon saw that is not a load: an ignored datagram, a
    database reload, events lost."""

    kind: str
    text: str

    def line(self) -> str:
        return f"{self.kind}: {self.text}"

    def as_json(self) -> dict[str, object]:
        # The keys of a load, so every line has one shape (lkm.cli.json_output).
        return {
            "event": self.kind,
            "devpath": None,
            "alias": None,
            "modules": [],
            "result": None,
            "detail": self.text,
            "seconds": None,
        }


Log = Callable[[LoadEvent | Notice], None]


class Autoloader:
    """The module database and what has been handled."""

    def __init__(self, root: str | None, version: str | None, *, dry_run: bool, log: Log) -> None:
        self.root, self.version = root, version
        self.dry_run = dry_run
        self.log = log
        self.handled: set[str] = set()
        self._modprobe: Modprobe | None = None
        self._identity: tuple[tuple[int, int], ...] = ()

    def close(self) -> None:
        if self._modprobe is not None:
            self._modprobe.close()
            self._modprobe = None

    def _database(self) -> Modprobe:
        """The open database; opened again when depmod replaced it."""
        from lkm.model.moddir import module_dir_path
        from lkm.workflows.modprobe import Modprobe

        moddir = module_dir_path(self.root, self.version)
        identity = tuple(_identity(f"{moddir}/{name}") for name in _DATABASE_FILES)
        if self._modprobe is not None and identity == self._identity:
            return self._modprobe
        if self._modprobe is not None:
            self._modprobe.close()
            self.handled.clear()
            self.log(Notice("reload", f"{moddir}: the module database changed; read again"))
        self._modprobe = Modprobe.for_system(self.root, self.version)
        self._identity = identity
        return self._modprobe

    def handle(self, devpath: str, alias: str) -> LoadEvent | None:
        """Load what ``alias`` names (None: handled before, or an error,
        logged: nothing a device or a broken database brings stops the
        daemon)."""
        from lkm.errors import LkmError

        try:
            return self._handle(devpath, alias)
        except (LkmError, OSError, ValueError) as exc:
            self.log(Notice("error", f"{devpath} {alias}: {exc}"))
            self.close()  # read the database again next time
            return None

    def forget(self, alias: str) -> None:
        """The device is gone: a device with this alias added again is
        loaded again (udev runs ``kmod load`` on every add)."""
        self.handled.discard(alias)

    def _handle(self, devpath: str, alias: str) -> LoadEvent | None:
        from lkm.workflows.modprobe import LoadFlags, is_path_operand

        if is_path_operand(alias):  # modprobe would take it for a file
            self.log(Notice("ignored", f"{devpath}: MODALIAS {alias!r} is a path"))
            return None
        modprobe = self._database()
        if alias in self.handled:
            return None
        if len(self.handled) >= MAX_REMEMBERED:
            self.handled.clear()
        started = time.monotonic()
        if not modprobe.resolve(alias):
            # udev's "kmod load" is quiet about aliases no module has (most
            # platform, ACPI and DMI ones): so is the log, at a glance.
            self.handled.add(alias)
            event = LoadEvent(devpath, alias, "no module", seconds=time.monotonic() - started)
            self.log(event)
            return event
        flags = LoadFlags(use_blacklist=True)
        if self.dry_run:
            plan = modprobe.plan_load(alias, flags=flags)
        else:
            plan = modprobe.load(alias, flags=flags)
        event = _event(devpath, alias, plan, self.dry_run, modprobe)
        event = event.replace(seconds=time.monotonic() - started)
        if event.result not in ("failed", "partly loaded"):
            self.handled.add(alias)  # a failure is tried again for the next device
        self.log(event)
        return event


def _event(devpath: str, alias: str, plan: Plan, dry_run: bool, modprobe: Modprobe) -> LoadEvent:
    from lkm.workflows.modprobe import BLACKLISTED, BLACKLISTED_ALIAS

    inserted = tuple(step.module for step in plan.steps if step.action in ("insmod", "install"))
    detail = "; ".join(text.strip() for _, text in plan.messages)
    if plan.status in (BLACKLISTED, BLACKLISTED_ALIAS):
        return LoadEvent(devpath, alias, "blacklisted", tuple(modprobe.resolve(alias)), detail)
    if plan.status < 0:
        reason = detail or os.strerror(-plan.status)
        if inserted:  # an alias several modules share: some loaded
            return LoadEvent(devpath, alias, "partly loaded", inserted, reason)
        return LoadEvent(devpath, alias, "failed", tuple(modprobe.resolve(alias)), reason)
    if inserted:
        return LoadEvent(devpath, alias, "would load" if dry_run else "loaded", inserted)
    names = tuple(modprobe.resolve(alias))
    return LoadEvent(devpath, alias, "loaded already" if names else "no module", names)


def _identity(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)


def existing_devices(sysfs: str = "/sys") -> Iterator[tuple[str, str]]:
    """(devpath, modalias) of every device in ``/sys/devices`` that has a
    modalias, parents before children (links not followed)."""
    top = f"{sysfs}/devices"
    for directory, dirs, files in os.walk(top):
        dirs.sort()
        if "modalias" not in files:
            continue
        try:
            with open(f"{directory}/modalias", encoding="utf-8", errors="surrogateescape") as f:
                alias = f.read().strip()
        except OSError:
            continue
        if alias:
            yield directory[len(sysfs) :], alias


class Limits(Record):
    once: bool = False
    quiet: float = 1.0  # --once: settled after this long without a uevent
    bound: float = 120.0  # --once: at most this long in all


def follow(
    loader: Autoloader,
    sock: UeventSocket,
    *,
    coldplug: bool,
    limits: Limits,
    stopped: Callable[[], bool],
    sysfs: str = "/sys",
) -> bool:
    """Coldplug (when asked), then uevents until ``stopped()`` — or, with
    ``limits.once``, until they settle (False: the bound came first)."""
    from lkm.formats.uevent import NotAUevent, parse_uevent

    started = time.monotonic()
    if coldplug:
        _coldplug(loader, sysfs, stopped)
    while not stopped():
        if limits.once and time.monotonic() - started > limits.bound:
            loader.log(Notice("unsettled", f"uevents still coming after {limits.bound:g} s"))
            return False
        datagram = sock.receive(limits.quiet if limits.once else 0.5)
        if datagram is None:
            if limits.once:
                return True
            continue
        if datagram.overrun:
            loader.log(Notice("overrun", "uevents were lost (receive buffer full)"))
            if coldplug:
                _coldplug(loader, sysfs, stopped)
            continue
        if datagram.sender != 0:
            loader.log(
                Notice("ignored", f"a datagram from port id {datagram.sender}, not the kernel")
            )
            continue
        try:
            uevent = parse_uevent(datagram.data)
        except NotAUevent as exc:
            loader.log(Notice("malformed", f"not a uevent: {exc}"))
            continue
        if uevent.action == "add" and uevent.modalias:
            loader.handle(uevent.devpath, uevent.modalias)
        elif uevent.action == "remove" and uevent.modalias:
            loader.forget(uevent.modalias)
    return True


def _coldplug(loader: Autoloader, sysfs: str, stopped: Callable[[], bool]) -> None:
    started = time.monotonic()
    devices = 0
    for devpath, alias in existing_devices(sysfs):
        if stopped():
            return
        devices += 1
        loader.handle(devpath, alias)
    # What a supervisor waits for (as for udev's trigger): the devices
    # present at start are handled; their children come as uevents.
    seconds = time.monotonic() - started
    loader.log(Notice("coldplugged", f"{devices} devices with a modalias in {seconds:.2f} s"))


__all__ = ["Autoloader", "Limits", "LoadEvent", "Notice", "existing_devices", "follow"]
