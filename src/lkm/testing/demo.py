"""``./dev demo``: lkm's main job, the hello-world module story, on a real kernel.

Scaffold a module with ``lkm new``, then ``lkm try`` it: build it against
the headers of the default kernel (the running one when it can be booted,
else the newest Debian fixture), boot that kernel in a disposable VM, load
the module, show its ``lsmod`` line and kernel log lines, unload it. Last,
``lkm modinfo`` on the module that was built, and whether kmod's modinfo
says the same. Exits non-zero when a step fails.
"""

from __future__ import annotations

import shutil
import sys
import tempfile

from lkm.system.run import INHERIT, run


def _step(title: str, args: list[str], cwd: str) -> int:
    """Run ``lkm ARGS``, its output shown as it comes; its exit status."""
    print(f"\n# {title}\n$ lkm {' '.join(args)}", flush=True)
    argv = [sys.executable, "-m", "lkm", *args]
    return run(argv, check=False, cwd=cwd, stdout=INHERIT, stderr=INHERIT).status


def main() -> int:
    work = tempfile.mkdtemp(prefix="lkm-demo-")
    try:
        steps = [
            ("write a hello-world module", ["new", "hello"]),
            ("build it, load it into a real kernel in a VM, unload it", ["try", "hello"]),
            ("what the module says about itself", ["modinfo", "hello/hello.ko"]),
        ]
        for title, args in steps:
            if _step(title, args, work) != 0:
                print(f"\ndemo: 'lkm {' '.join(args)}' failed", file=sys.stderr)
                return 1
        kmod = shutil.which("modinfo") or "/sbin/modinfo"
        mine = run([sys.executable, "-m", "lkm", "modinfo", "hello/hello.ko"], cwd=work)
        theirs = run([kmod, "hello/hello.ko"], cwd=work, check=False)
        same = mine.stdout == theirs.stdout
        print(f"--> kmod's modinfo prints {'the same bytes' if same else 'something else'}")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
