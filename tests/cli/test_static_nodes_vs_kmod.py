"""``lkm static-nodes`` against kmod 30's ``kmod static-nodes``: stdout,
stderr, exit status and the ``--output`` file, byte for byte, in every
format, on the Debian trees' modules.devname and on crafted ones (blank
lines, comments, bad types, signs and overflowing numbers, NULs, lines
longer than kmod's 4096-byte buffer, a missing file, a directory).

kmod reads only ``/lib/modules/$(uname -r)/modules.devname``: each case
is a directory holding ``lib/modules/RELEASE/modules.devname``, and kmod
runs once per case and format in a mount namespace where that directory's
``lib/modules`` is bound over ``/lib/modules`` (made, and removed, when
the host has none), all in one ``unshare``. lkm reads the same file with
its ``--basedir``/``--kernel`` options, in-process.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from conftest import command, lkm

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.host import mountpoints

FORMATS = ("human", "tmpfiles", "devname")
RELEASE = os.uname().release
# Per case and format: kmod's stdout, stderr, status and --output file.
_RUN_KMOD = """
set -u
out=$1; shift
for case in "$@"; do
    mount --bind "$case/lib/modules" /lib/modules || exit 99  # stacked: the last one shows
    name=$(basename "$case")
    for fmt in human tmpfiles devname; do
        base="$out/$name.$fmt"
        kmod static-nodes -f "$fmt" > "$base.stdout" 2> "$base.stderr"
        echo $? > "$base.status"
        kmod static-nodes --format="$fmt" -o "$base.dir/sub/nodes" 2>/dev/null
        echo $? > "$base.ostatus"
    done
done
"""

CRAFTED: dict[str, bytes | None] = {
    "comments-and-blanks": b"# a comment\n\nloop loop-control c10:237\n#x\n   \n",
    "bad-type": b"fuse fuse x10:229\nfuse fuse c10:229\n",
    "signs": b"a b c+10:-1\nc d b-0:+7\ne f c 1 : 2\ng h c1 :2\n",
    "overflow": b"a b c4294967296:18446744073709551616\nc d c99999999999999999999999:1\n",
    "nul": b"a b\x00c c1:2\nd e c1:2\x00junk\n",
    "long-line": b"m " + b"x" * 5000 + b" c1:2\nn n c3:4\n",
    "tabs-and-cr": b"a\tb\tc1:2\r\nc d\x0bb3:4\n",
    "subdirs": b"snd-timer snd/timer c116:33\nvhost vhost/deep/net c10:238\n",
    "no-newline": b"a b c1:2",
    "truncated": b"a b c1:\na b c\na b\n",
    "missing": None,
}


def _case(where: Path, name: str, data: bytes | None, directory: bool = False) -> Path:
    moddir = where / name / "lib" / "modules" / RELEASE
    moddir.mkdir(parents=True)
    if directory:
        (moddir / "modules.devname").mkdir()
    elif data is not None:
        (moddir / "modules.devname").write_bytes(data)
    return where / name


def _random_cases(where: Path, count: int) -> list[Path]:
    """Files of plausible and broken lines (seeded)."""
    rng = random.Random(17)
    pieces = [b"a", b"b/c", b" ", b"\t", b"c", b"b", b"x", b"1", b"22", b":", b"-", b"+", b"#"]
    cases = []
    for n in range(count):
        lines = []
        for _ in range(rng.randrange(0, 6)):
            lines.append(b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 9))))
        cases.append(_case(where, f"random-{n}", b"\n".join(lines) + b"\n"))
    return cases


def _lkm_results(
    case: Path, fmt: str, scratch: Path
) -> tuple[bytes, bytes, int, int, bytes | None]:
    base = ["-b", str(case), "--kernel", RELEASE]
    done = lkm("lkm", ["static-nodes", *base, "-f", fmt])
    target = scratch / f"{case.name}.{fmt}.dir" / "sub" / "nodes"
    to_file = lkm("lkm", ["static-nodes", *base, f"--format={fmt}", "-o", str(target)])
    written = target.read_bytes() if target.exists() else None
    return done.stdout, done.stderr, done.status, to_file.status, written


def test_static_nodes_byte_identical_to_kmod(
    kernels: list[KernelFixture],
    tmp_path: Path,
    report,  # type: ignore[no-untyped-def]
) -> None:
    cases_dir = tmp_path / "cases"
    cases = [
        _case(cases_dir, f"debian-{k.label}", (Path(k.moddir) / "modules.devname").read_bytes())
        for k in kernels
    ]
    cases += [_case(cases_dir, name, data) for name, data in CRAFTED.items()]
    cases.append(_case(cases_dir, "directory", None, directory=True))
    cases += _random_cases(cases_dir, 150)
    theirs = tmp_path / "kmod"
    theirs.mkdir()
    argv = ["unshare", "-m", "sh", "-c", _RUN_KMOD, "sh", str(theirs), *map(str, cases)]
    with mountpoints("/lib/modules"):
        done = command(argv, timeout=600)
    assert done.returncode == 0, done.stderr
    ours = tmp_path / "lkm"
    compared = 0
    for case in cases:
        for fmt in FORMATS:
            base = f"{theirs}/{case.name}.{fmt}"
            written = Path(f"{base}.dir/sub/nodes")
            expected = (
                Path(f"{base}.stdout").read_bytes(),
                Path(f"{base}.stderr").read_bytes(),
                int(Path(f"{base}.status").read_text()),
                int(Path(f"{base}.ostatus").read_text()),
                written.read_bytes() if written.exists() else None,
            )
            got = _lkm_results(case, fmt, ours)
            # kmod names the running kernel's tree; lkm the one it was given
            assert got[0] == expected[0], (case.name, fmt)
            assert got[1].replace(str(case).encode(), b"") == expected[1], (case.name, fmt)
            assert got[2:] == expected[2:], (case.name, fmt)
            compared += 1
    report(f"lkm static-nodes vs kmod static-nodes: {len(cases)} files x 3 formats: {compared}")


def test_help_and_bad_format_as_kmod(tmp_path: Path) -> None:
    kmod = shutil.which("kmod")
    assert kmod is not None
    for args in (["--help"], ["-f", "bogus"]):
        theirs = command([kmod, "static-nodes", *args])
        ours = lkm("lkm", ["static-nodes", *args])
        assert ours.status == theirs.returncode, args
        # kmod's text, then lkm's extensions
        shown = ours.stdout.replace(b"\tlkm static-nodes", b"\tkmod static-nodes")
        assert shown.startswith(theirs.stdout) and b"--basedir" in shown[len(theirs.stdout) :]
        assert ours.stderr == theirs.stderr
