"""``./dev demo``: lkm's main job today, shown on real Debian kernel modules.

Prints ``lkm modinfo`` for a real module of each Debian kernel fixture
(the 6.12 one is xz-compressed and signed), a lookup by alias through the
indexes kmod's depmod wrote, and whether kmod's modinfo says the same.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from lkm.testing.debian_kernels import load_manifest

DEMO_MODULE = "loop"


def _show(title: str, args: list[str]) -> bool:
    print(f"\n$ lkm modinfo {' '.join(args)}    # {title}", flush=True)
    lkm = subprocess.run([sys.executable, "-m", "lkm", "modinfo", *args], capture_output=True)
    sys.stdout.buffer.write(lkm.stdout[:1500] + (b"[...]\n" if len(lkm.stdout) > 1500 else b""))
    sys.stdout.flush()
    kmod = shutil.which("modinfo") or "/sbin/modinfo"
    ref = subprocess.run([kmod, *args], capture_output=True)
    same = (ref.stdout, ref.returncode) == (lkm.stdout, lkm.returncode)
    print(f"--> kmod's modinfo prints {'the same bytes' if same else 'something else'}")
    return same


def main() -> int:
    kernels = load_manifest()
    if not kernels:
        print("no kernel fixtures: run ./dev fixtures", file=sys.stderr)
        return 1
    ok = True
    for kernel in kernels:
        path = next(p for p in kernel.modules() if p.name.startswith(DEMO_MODULE + ".ko"))
        ok &= _show(f"Debian {kernel.label} ({kernel.version})", [str(path)])
    kernel = kernels[-1]
    root, version = kernel.indexed_root, kernel.version
    ok &= _show(
        "by alias, through modules.alias.bin",
        ["-b", root, "-k", version, "-F", "filename", "block-major-7-0"],
    )
    builtin = (kernel.moddir / "modules.builtin").read_text().split("\n", 1)[0]
    name = builtin.rsplit("/", 1)[-1].removesuffix(".ko")
    ok &= _show("a built-in module", ["-b", root, "-k", version, "-m", name])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
