"""One JSON shape: every ``--json`` output validates against its schema
(lkm/schemas), and says what the command's text (or kmod's) says.

Here: the schemas themselves, which commands have one, and modinfo,
modprobe's plan, depmod's database and dmesg over the Debian trees or
crafted records. lsmod, dmesg, ksyms and try are validated in the VM
(tests/vm), check, dkms status, kernel list and autoload where those are
tested.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
from conftest import json_of, kmod, lkm

from lkm.cli import dmesg
from lkm.schemas import load_schema, schema_names
from lkm.testing.debian_kernels import KernelFixture

# The schema of each command that takes --json (a subcommand's after a dash).
SCHEMA_OF = {
    "autoload": "autoload",
    "check": "check",
    "depmod": "depmod",
    "dkms": "dkms-status",
    "dmesg": "dmesg",
    "kernel": "kernel-list",
    "ksyms": "ksyms",
    "lsmod": "lsmod",
    "modinfo": "modinfo",
    "modprobe": "modprobe",
    "try": "try",
}


def _has_json_option(spec: object) -> bool:
    options = getattr(spec, "options", ())
    subcommands = getattr(spec, "subcommands", ())
    return "--json" in options or any(_has_json_option(s) for _, s in subcommands)


def test_every_json_option_has_a_valid_schema() -> None:
    from lkm.cli.completion import specs

    taking = {name for name, spec in specs().items() if _has_json_option(spec)}
    taking -= {"lkm"}  # the multi-call entry names no option of its own
    assert taking == set(SCHEMA_OF) | {"dkms"}
    assert sorted(SCHEMA_OF.values()) == schema_names()
    for name in schema_names():
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"{name}.schema.json" and schema["description"]


def test_modinfo_json_over_compressed_modules(kernel_612: KernelFixture, report: object) -> None:
    files = sorted(str(p) for p in kernel_612.modules())[::5]  # compressed, every 5th
    records = json_of("modinfo", lkm("modinfo", ["--json", *files]).stdout)
    assert [r["path"] for r in records] == files
    by_name = {r["module"]: r for r in records}
    # -F keeps one field; the text output's values are the JSON's
    ext4 = next(str(p) for p in kernel_612.modules() if p.name == "ext4.ko.xz")
    (only,) = json_of("modinfo", lkm("modinfo", ["--json", "-F", "alias", ext4]).stdout)
    text = lkm("modinfo", ["-F", "alias", ext4]).stdout.decode().splitlines()
    assert [f["value"] for f in only["fields"]] == text and {f["key"] for f in only["fields"]} == {
        "alias"
    }
    assert all(r["signature"]["hash_algorithm"] == "sha256" for r in by_name.values())
    report(f"modinfo --json on {kernel_612.label}: {len(records)} modules valid against the schema")


def _plan_lines(records: list[dict[str, str | None]]) -> list[str]:
    """The records as kmod's --show-depends lines."""
    shown = {
        "insmod": "insmod {path} {options}",
        "install": "install {command} {options}",
        "builtin": "builtin {module}",
        "remove": "remove {command}",
        "rmmod": "rmmod {module}",
    }
    return [shown[r["action"] or ""].format(**r) for r in records]


def test_modprobe_plan_json_is_kmods_show_depends(kernel_61: KernelFixture, report: object) -> None:
    moddir = kernel_61.indexed_moddir
    dep_lines = (moddir / "modules.dep").read_text().splitlines()
    builtin = (moddir / "modules.builtin").read_text().split()
    names = [Path(line.split(":", 1)[0]).name.split(".", 1)[0] for line in dep_lines][::8]
    names += [Path(path).name.split(".", 1)[0] for path in builtin][::40]
    tree = ["-d", kernel_61.indexed_root, "-S", kernel_61.version, "-a", "-D"]
    reference = kmod("modprobe", [*tree, *names])
    mine = lkm("modprobe", [*tree, "--json", *names])
    assert mine.status == reference.status == 0
    records = json_of("modprobe", mine.stdout)
    assert _plan_lines(records) == reference.stdout.decode().splitlines()
    assert lkm("modprobe", [*tree[:4], "--json", "ext4"]).stderr == (
        b"modprobe: ERROR: --json needs --show-depends or --dry-run.\n"
    )
    report(f"modprobe -D --json on {kernel_61.label}: {len(names)} names, {len(records)} steps")
    report("  as kmod's -D lines")


def test_depmod_json_says_what_kmods_indexes_say(
    kernel_61: KernelFixture, tmp_path: Path, report: object
) -> None:
    args = ["-b", kernel_61.indexed_root, "--cache-dir", str(tmp_path), "--json", kernel_61.version]
    before = {p.name: p.stat().st_mtime_ns for p in kernel_61.indexed_moddir.glob("modules.*")}
    records = json_of("depmod", lkm("depmod", args).stdout)
    after = {p.name: p.stat().st_mtime_ns for p in kernel_61.indexed_moddir.glob("modules.*")}
    assert after == before  # --json writes no index
    moddir = kernel_61.indexed_moddir
    path_of = {r["module"]: r["path"] for r in records}
    dep = [f"{r['path']}: {' '.join(path_of[d] for d in r['depends'])}".rstrip() for r in records]
    assert dep == [line.rstrip() for line in (moddir / "modules.dep").read_text().splitlines()]
    aliases = {(a, r["module"]) for r in records for a in r["aliases"]}
    assert aliases == set(_pairs(moddir / "modules.alias", "alias"))
    symbols = {(f"symbol:{s}", r["module"]) for r in records for s in r["exports"]}
    assert symbols == set(_pairs(moddir / "modules.symbols", "alias"))
    softdeps = {r["module"]: r["softdeps"] for r in records if any(r["softdeps"].values())}
    # kmod takes the words after pre: or post: (cifs's "softdep cifs gcm" says neither)
    lines = _words(moddir / "modules.softdep")
    assert set(softdeps) == {w[1] for w in lines if {"pre:", "post:"} & set(w[2:-1])}
    assert softdeps["ext4"]["pre"] == ["crypto-crc32c"]
    devnames = [
        f"{r['module']} {d['node']} {d['type']}{d['major']}:{d['minor']}"
        for r in records
        if (d := r["devname"]) is not None
    ]
    assert sorted(devnames) == sorted(" ".join(w) for w in _words(moddir / "modules.devname"))
    report(f"depmod --json on {kernel_61.label}: {len(records)} modules, {len(aliases)} aliases")
    report("  as kmod's modules.dep/alias/symbols/softdep/devname")


def _words(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [line.split() for line in lines if line and not line.startswith("#")]


def _pairs(path: Path, keyword: str) -> list[tuple[str, str]]:
    return [(w[1], w[2]) for w in _words(path) if w[0] == keyword]


RECORDS = [
    b"6,1,1000000,-;plain \\x7f text\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0",
    b"3,2,2500000,-;caf\\xc3\\xa9 and \\xff not UTF-8",
    b"12,3,3000001,c;user facility, warn",
    b"not a record",
]


def test_dmesg_json_records_and_follow_lines() -> None:
    out = io.BytesIO()
    assert dmesg.run(["--json"], out, io.BytesIO(), records=RECORDS) == 0
    records = json_of("dmesg", out.getvalue())
    assert [r["sequence"] for r in records] == [1, 2, 3]
    assert records[0] == {
        "sequence": 1,
        "usec": 1000000,
        "facility": "kern",
        "level": "info",
        "message": "plain \x7f text",
        "fields": {"SUBSYSTEM": "pci", "DEVICE": "+pci:0000:00:01.0"},
    }
    assert records[1]["message"] == "café and \ufffd not UTF-8" and records[1]["level"] == "err"
    assert (records[2]["facility"], records[2]["level"]) == ("user", "warn")
    followed = io.BytesIO()
    assert dmesg.run(["--json", "-w", "-l", "err"], followed, io.BytesIO(), records=RECORDS) == 0
    lines = followed.getvalue().decode().splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == [2]
    assert json_of("dmesg", lines[0])["level"] == "err"
