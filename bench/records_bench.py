"""What a record style costs a tool's start: lkm.records against dataclasses.

Each style is measured in fresh interpreters (median of many), the way a
tool pays for it: importing the module that provides it, then declaring
twenty frozen records of five fields; and, in one process, building an
instance. Printed as times and as the ratio lkm.records / dataclasses.
"""

from __future__ import annotations

import statistics
import sys
import time

from lkm.system.run import NULL, run

ROUNDS = 25
CLASSES = 20

_DECLARE = {
    "dataclasses": (
        "from dataclasses import dataclass\n"
        "for i in range({n}):\n"
        "    @dataclass(frozen=True, slots=True)\n"
        "    class C:\n"
        "        a: int\n        b: str\n        c: int = 0\n        d: str = ''\n"
        "        e: tuple[int, ...] = ()\n"
    ),
    "lkm.records": (
        "from lkm.records import Record\n"
        "for i in range({n}):\n"
        "    class C(Record):\n"
        "        a: int\n        b: str\n        c: int = 0\n        d: str = ''\n"
        "        e: tuple[int, ...] = ()\n"
    ),
}


def _start_up(code: str) -> float:
    """Median wall time of ``python -c CODE`` minus that of ``python -c pass``."""

    def median(source: str) -> float:
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            run([sys.executable, "-c", source], stdout=NULL, stderr=NULL)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return median(code) - median("pass")


def _construction(style: str) -> float:
    """Seconds per instance built, in this process."""
    scope: dict[str, object] = {}
    exec(_DECLARE[style].format(n=1), scope)
    cls = scope["C"]
    count = 200_000
    start = time.perf_counter()
    for _ in range(count):
        cls(1, "x")  # type: ignore[operator]
    return (time.perf_counter() - start) / count


def main() -> int:
    startup = {style: _start_up(code.format(n=CLASSES)) for style, code in _DECLARE.items()}
    build = {style: _construction(style) for style in _DECLARE}
    print(f"record styles: import + {CLASSES} frozen 5-field classes, and one instance")
    for style in _DECLARE:
        print(
            f"  {style:12} start-up {startup[style] * 1000:6.1f} ms   "
            f"instance {build[style] * 1e9:5.0f} ns"
        )
    ours, theirs = startup["lkm.records"], startup["dataclasses"]
    print(
        f"  ratio lkm.records/dataclasses: start-up {ours / theirs:.2f}, "
        f"instance {build['lkm.records'] / build['dataclasses']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
