"""``lkm vm run -- true``, boot to exit, against virtme-ng on the same image.

For each cached Debian kernel (amd64): several runs of lkm's VM and of
virtme-ng's ``vng --run IMAGE -- true`` (TCG, 9p), interleaved; the median
and best wall times and the ratio lkm / virtme-ng. virtme-ng comes from
PyPI into a private virtualenv under lkm's cache the first time; when it
cannot be installed or cannot boot the image, the output says why. The
target for lkm is 2.5 s under TCG (issue 20). Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import kernels_by_label, module_tree

from lkm.model.kernels import Kernel
from lkm.system.paths import cache_path
from lkm.system.run import CommandError, run

TARGET_SECONDS = 2.5


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    start = time.monotonic()
    done = run(cmd, check=False, env=env, timeout=300)
    return time.monotonic() - start, done.status, done.stderr.decode(errors="replace")


def _virtme_ng() -> tuple[str | None, str]:
    """(path of vng, or None with the reason)."""
    found = shutil.which("vng")
    if found:
        return found, "from PATH"
    venv = Path(cache_path("bench", "virtme-ng"))
    vng = venv / "bin" / "vng"
    if not vng.exists():
        try:
            run(["/usr/bin/python3", "-m", "venv", str(venv)])
            run([str(venv / "bin" / "pip"), "install", "-q", "virtme-ng"])
        except CommandError as exc:
            return None, f"could not install virtme-ng from PyPI ({exc})"
    return str(vng), "installed from PyPI into lkm's cache"


def _summary(name: str, times: list[float]) -> str:
    return f"  {name:<10} median {statistics.median(times):5.2f} s   best {min(times):5.2f} s"


def _tree_copy(kernel: Kernel, work: Path) -> Path:
    """A hard-linked copy of the kernel's image and module tree: virtme-ng
    runs depmod in the module directory next to the image it boots, and
    the shared fixture must stay as it was fetched."""
    root = work / kernel.release
    (root / "boot").mkdir(parents=True)
    (root / "lib" / "modules").mkdir(parents=True)
    assert kernel.image is not None
    image = Path(kernel.image)
    os.link(image, root / "boot" / image.name)
    run(["cp", "-al", module_tree(kernel), str(root / "lib" / "modules" / kernel.release)])
    return root / "boot" / image.name


def bench(kernel: Kernel, rounds: int, vng: str | None, work: Path) -> None:
    lkm = str(Path(sys.executable).with_name("lkm"))
    lkm_cmd = [lkm, "vm", "run", "--kernel", kernel.release, "--", "true"]
    run(lkm_cmd, check=False)  # warm: vmlinux extraction, KVM probe
    env = dict(os.environ, PATH=f"{Path(vng).parent}:{os.environ['PATH']}") if vng else None
    vng_cmd = [
        vng or "vng",
        "--verbose",  # the guest log on stderr says how the command exited
        "--force-9p",
        "--disable-kvm",
        "--run",
        str(_tree_copy(kernel, work)),
        "--",
        "true",
    ]
    lkm_times: list[float] = []
    vng_times: list[float] = []
    vng_status: set[int] = set()
    vng_failure = ""
    for _ in range(rounds):
        seconds, status, stderr = _timed(lkm_cmd)
        if status != 0:
            sys.exit(f"lkm vm run failed on {kernel.release}:\n{stderr}")
        lkm_times.append(seconds)
        if vng is not None and not vng_failure:
            seconds, status, stderr = _timed(vng_cmd, env)
            vng_status.add(status)
            if "script exited with code 0" in stderr or status == 0:
                vng_times.append(seconds)
            else:
                vng_failure = (
                    stderr.strip().splitlines()[-1] if stderr.strip() else f"status {status}"
                )
    print(f"lkm vm run -- true on {kernel.label} ({kernel.release}), {rounds} rounds, TCG")
    print(_summary("lkm", lkm_times) + f"   (target {TARGET_SECONDS:.1f} s)")
    if vng_times:
        print(_summary("virtme-ng", vng_times))
        ratio = statistics.median(lkm_times) / statistics.median(vng_times)
        print(f"ratio lkm / virtme-ng (median): {ratio:.2f}")
        if vng_status != {0}:
            print(
                f"  note: vng exited with status {sorted(vng_status)} although its guest log"
                " says the command exited with 0 (its init found no virtio-serial script"
                " ports and fell back to the console, losing the status)"
            )
    elif vng is not None:
        print(f"  virtme-ng could not boot this image: {vng_failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    args = parser.parse_args()
    fixtures = {label: k for label, k in kernels_by_label().items() if k.arch == "amd64"}
    vng, how = _virtme_ng()
    print(f"virtme-ng: {vng} ({how})" if vng else f"virtme-ng unavailable: {how}")
    with tempfile.TemporaryDirectory(prefix="lkm-vm-bench-") as work:
        for label in args.labels:
            bench(fixtures[label], args.rounds, vng, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
