"""``lkm dkms`` on small trees in tmp_path: dkms.conf evaluated by bash,
the state tree, status lines, and failures reported in one line. No kernel
fixture: a fake headers directory and MAKE commands that need no compiler."""

from __future__ import annotations

import io
import os
from pathlib import Path

from conftest import json_of

from lkm.cli import main as lkm_main
from lkm.workflows.dkms.build import make_command
from lkm.workflows.dkms.conf import Context, read_conf
from lkm.workflows.dkms.versions import padded

KVER = os.uname().release  # any release: nothing here builds for it


def _context(tmp_path: Path, headers: Path | None = None) -> Context:
    source = str(headers or tmp_path / "headers")
    return Context(
        KVER,
        "x86_64",
        source,
        f"{source}/.config",
        str(tmp_path / "tree"),
        str(tmp_path / "src"),
        str(tmp_path / "lib/modules"),
        "pkg",
        "1.0",
    )


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dkms.conf"
    path.write_text(text)
    return path


def test_conf_is_bash(tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    headers.mkdir()
    (headers / ".config").write_text("CONFIG_FOO=y\nCONFIG_BAR=m\n")
    text = (
        'PACKAGE_NAME="pkg"\nPACKAGE_VERSION=1.0\n'
        "for i in 0 1 2; do BUILT_MODULE_NAME[$i]=mod$i; DEST_MODULE_LOCATION[$i]=/extra; done\n"
        'BUILT_MODULE_LOCATION[1]="sub"\nSTRIP[0]=no\nSTRIP[2]=yes\n'
        'MAKE="make -C $kernel_source_dir KVER=$kernelver"\nUNKNOWN=ignored\n'
        "CLEAN='echo $kernelver'\n"  # quoted, yet expanded by dkms's round trip
        'BUILD_EXCLUSIVE_CONFIG="CONFIG_FOO !CONFIG_BAR"\n'
    )
    conf = read_conf(str(_conf(tmp_path, text)), _context(tmp_path, headers))
    assert conf.problems == ()
    assert [m.built_name for m in conf.modules] == ["mod0", "mod1", "mod2"]
    assert [m.built_location for m in conf.modules] == ["", "sub/", ""]
    assert [m.strip for m in conf.modules] == [False, False, True]
    assert {m.dest_location for m in conf.modules} == {"/updates/dkms"}
    assert conf.make_command == f"make -C {headers} KVER={KVER}"
    assert conf.clean == f"echo {KVER}"
    assert conf.excluded == ("BUILD_EXCLUSIVE_CONFIG=!CONFIG_BAR",)
    assert make_command(conf, "3").startswith(f"make -j3 KERNELRELEASE={KVER} -C ")
    assert make_command(conf, "0").startswith(f"make -j KERNELRELEASE={KVER} -C ")


def test_conf_problems_and_defaults(tmp_path: Path) -> None:
    text = 'PACKAGE_NAME=pkg\nDEST_MODULE_LOCATION=/lib\nBUILT_MODULE_NAME[0]="x.ko"\n'
    conf = read_conf(str(_conf(tmp_path, text)), _context(tmp_path))
    assert any("PACKAGE_VERSION" in p for p in conf.problems)
    assert any("does not begin with '/kernel'" in p for p in conf.problems)
    assert any("ends in '.o' or '.ko'" in p for p in conf.problems)
    single = read_conf(
        str(_conf(tmp_path, "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1\nDEST_MODULE_LOCATION=/extra\n")),
        _context(tmp_path),
    )
    assert single.modules[0].built_name == "pkg"  # one location: the package's name
    assert single.make_command.startswith("make -C ")
    assert single.make_command.endswith(f"{tmp_path}/tree/pkg/1.0/build")


def test_version_padding() -> None:
    assert padded("2.6.9-1cvs200409091247") == "002.006.009-001cvs200409091247"
    assert padded("1.2.10") > padded("1.2.9")


def _dkms(args: list[str]) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = lkm_main(["/usr/sbin/dkms", *args], out, err)  # the multi-call name
    return status, out.getvalue().decode(), err.getvalue().decode()


def _package(tmp_path: Path, conf: str) -> list[str]:
    source = tmp_path / "src" / "pkg-1.0"
    source.mkdir(parents=True)
    (source / "dkms.conf").write_text(conf)
    (source / "pkg.c").write_text("/* nothing */\n")
    headers = tmp_path / "headers"
    (headers / "include").mkdir(parents=True)
    (tmp_path / "tree").mkdir()
    (tmp_path / "lib/modules" / KVER).mkdir(parents=True)
    return [
        "--dkmstree",
        str(tmp_path / "tree"),
        "--sourcetree",
        str(tmp_path / "src"),
        "--installtree",
        str(tmp_path / "lib/modules"),
        "--kernelsourcedir",
        str(headers),
        "-k",
        f"{KVER}/x86_64",
    ]


def test_make_hiding_failure_reports_compiler_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("mok_signing_key", str(tmp_path / "mok.key"))
    monkeypatch.setenv("mok_certificate", str(tmp_path / "mok.pub"))
    conf = (
        "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME=pkg\n"
        "DEST_MODULE_LOCATION=/extra\n"
        "MAKE=\"echo 'pkg.c:3:1: error: expected declaration' ; true\"\nCLEAN=true\n"
    )
    options = _package(tmp_path, conf)
    status, out, err = _dkms(["build", "pkg/1.0", *options])
    assert status == 7
    assert err.count("\n") == 1
    assert "pkg.c:3:1: error: expected declaration" in err and KVER in err
    assert ".lkm-results/" in err and err.rstrip().endswith(".make.log")
    assert (tmp_path / "mok.key").exists() and (tmp_path / "mok.pub").read_bytes()[:1] == b"\x30"
    status, out, _ = _dkms(["status", *options[:6]])
    assert (status, out) == (0, "pkg/1.0: added\n")


def test_build_exclusive_is_skipped_with_77(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("mok_signing_key", str(tmp_path / "mok.key"))
    monkeypatch.setenv("mok_certificate", str(tmp_path / "mok.pub"))
    conf = (
        "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME=pkg\n"
        "DEST_MODULE_LOCATION=/extra\nBUILD_EXCLUSIVE_KERNEL='^0\\.'\n"
    )
    options = _package(tmp_path, conf)
    status, _, err = _dkms(["build", "pkg/1.0", *options])
    assert status == 77 and "skipped" in err and "BUILD_EXCLUSIVE_KERNEL" in err
    status, out, _ = _dkms(["status", "--json", *options[:6]])
    (entry,) = json_of("dkms-status", out)
    assert (entry["state"], entry["kernel"]) == ("skipped", KVER)
    assert "BUILD_EXCLUSIVE_KERNEL" in entry["reason"]
    assert _dkms(["status", *options[:6]])[1] == "pkg/1.0: added\n"


def test_bad_conf_is_status_8(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("mok_signing_key", str(tmp_path / "mok.key"))
    monkeypatch.setenv("mok_certificate", str(tmp_path / "mok.pub"))
    options = _package(tmp_path, "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\n")
    status, _, err = _dkms(["build", "pkg/1.0", *options])
    assert status == 8 and "DEST_MODULE_LOCATION" in err


def test_autoinstall_skipped_is_not_a_failure(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("mok_signing_key", str(tmp_path / "mok.key"))
    monkeypatch.setenv("mok_certificate", str(tmp_path / "mok.pub"))
    conf = (
        "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME=pkg\n"
        "DEST_MODULE_LOCATION=/extra\nBUILD_EXCLUSIVE_KERNEL='^0\\.'\nAUTOINSTALL=yes\n"
    )
    options = _package(tmp_path, conf)
    assert _dkms(["add", "pkg/1.0", *options])[0] == 0
    status, out, err = _dkms(["autoinstall", *options])
    assert (status, err) == (0, "") and "skipped" in out and "BUILD_EXCLUSIVE_KERNEL" in out
    (tmp_path / "src/pkg-1.0/dkms.conf").write_text(conf.replace("AUTOINSTALL=yes\n", ""))
    assert _dkms(["autoinstall", *options]) == (0, "", "")  # not asked for: nothing done


def test_verbose_shows_makes_output_and_keeps_its_status(tmp_path: Path) -> None:
    import subprocess
    import sys

    conf = (
        "PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME=pkg\n"
        "DEST_MODULE_LOCATION=/extra\n"
        "MAKE=\"echo 'pkg.c:3:1: error: compiling failed' ; false\"\nCLEAN=true\n"
    )
    options = _package(tmp_path, conf)
    env = dict(
        os.environ,
        mok_signing_key=str(tmp_path / "mok.key"),
        mok_certificate=str(tmp_path / "mok.pub"),
    )
    lkm = str(Path(sys.executable).with_name("lkm"))
    shown = {}
    for flags in ([], ["--verbose"]):
        done = subprocess.run(
            [lkm, "dkms", "build", "pkg/1.0", *flags, *options],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        # make's status through the tee, and the log has its output either way
        assert done.returncode == 10, done.stderr
        assert "pkg.c:3:1: error: compiling failed" in done.stderr
        shown[bool(flags)] = done.stdout
    made = "\npkg.c:3:1: error: compiling failed\n"  # the line make printed, not the command
    assert made in shown[True] and made not in shown[False]
