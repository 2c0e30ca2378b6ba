"""The module database against kmod's modprobe and the index text files."""

from __future__ import annotations

import pytest
from conftest import kmod

from lkm.errors import ModuleNotFound
from lkm.formats.module_file import module_name_from_path
from lkm.model.database import ModuleDatabase, SoftDeps
from lkm.testing.debian_kernels import KernelFixture


@pytest.fixture(scope="module")
def db(kernel_61: KernelFixture) -> ModuleDatabase:
    return ModuleDatabase(str(kernel_61.indexed_moddir))


def _show_depends(kernel: KernelFixture, name: str) -> list[str]:
    out = kmod("modprobe", ["-d", kernel.indexed_root, "-S", kernel.version, "-D", name]).stdout
    return [line.split()[1] for line in out.decode().splitlines() if line.startswith("insmod ")]


def test_load_order_matches_modprobe_without_softdeps(
    kernel_61: KernelFixture, db: ModuleDatabase, report
) -> None:  # type: ignore[no-untyped-def]
    names = [p.name.split(".")[0].replace("-", "_") for p in kernel_61.modules()[::25]]
    compared = 0
    for name in names:
        order = db.load_order(name)
        if any(db.softdeps(module_name_from_path(path)) != SoftDeps() for path in order):
            continue  # modprobe adds soft dependencies; its planner covers them
        assert order == _show_depends(kernel_61, name), name
        compared += 1
    assert compared > 100
    report(f"module database load_order vs modprobe -D: {compared} modules")


def test_closure_covers_modprobe(kernel_61: KernelFixture, db: ModuleDatabase) -> None:
    for name in ("btrfs", "ext4", "nvme", "xfs", "i915", "virtio_blk", "9p"):
        closure = db.closure([name])
        assert set(_show_depends(kernel_61, name)) <= set(closure.modules), name
    i915 = db.closure(["i915"])
    assert any(f.startswith("i915/") for f in i915.firmware)
    mixed = db.closure(["loop", "block-major-7-0", "no_such_thing", "zbud"])
    assert mixed.missing == ("no_such_thing",) and mixed.builtin == ("zbud",)
    assert len(mixed.modules) == 1 and mixed.modules[0].endswith("/loop.ko")


def test_single_facts(kernel_61: KernelFixture, db: ModuleDatabase) -> None:
    lines = (kernel_61.indexed_moddir / "modules.symbols").read_text().splitlines()[1::400]
    for line in lines:
        _, symbol, owner = line.split()
        assert db.symbol_owner(symbol.removeprefix("symbol:")) == owner
    assert db.symbol_owner("printk") is None
    assert db.is_builtin("zbud") and not db.is_builtin("loop")
    assert db.path_of("loop") is not None and db.path_of("zbud") is None
    assert db.modules_for("fs-vfat") == ["vfat"]
    assert "crc32c" in db.softdeps("libcrc32c").pre
    assert db.load_order("zbud") == []
    with pytest.raises(ModuleNotFound):
        db.load_order("no_such_module")
