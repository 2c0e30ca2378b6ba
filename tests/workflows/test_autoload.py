"""``lkm autoload``'s handling of one alias, on the Debian 6.1 tree with
``--dry-run`` (nothing is loaded on this host): what would load, aliases
no module has, and aliases that are errors — logged, never raised, so a
device with a strange firmware string cannot stop the daemon."""

from __future__ import annotations

from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.autoload import Autoloader, LoadEvent, Notice

E1000 = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"


def test_dry_run_bad_aliases_and_paths(kernel_61: KernelFixture) -> None:
    logged: list[LoadEvent | Notice] = []
    loader = Autoloader(kernel_61.root, kernel_61.version, dry_run=True, log=logged.append)
    try:
        first = loader.handle("/devices/pci0000:00/0000:00:05.0", E1000)
        assert first is not None and first.result == "would load" and "e1000" in first.modules
        assert loader.handle("/devices/other", E1000) is None  # an alias is handled once
        nothing = loader.handle("/devices/platform/x", "platform:no-such-driver")
        assert nothing is not None and nothing.result == "no module"
        # firmware strings reach DMI modaliases unfiltered: a bracket there
        assert loader.handle("/devices/virtual/dmi/id", "dmi:bvnX:pnThinkPad]:") is None
        assert loader.handle("/devices/odd", "./x.ko") is None  # not taken for a file
        again = loader.handle("/devices/pci0000:00/0000:00:06.0", "pci:v00008086d000024CD*")
        assert again is not None  # still working after the error
    finally:
        loader.close()
    kinds = [item.kind if isinstance(item, Notice) else item.result for item in logged]
    assert kinds[:2] == ["would load", "no module"]
    assert kinds[2:4] == ["error", "ignored"], logged
