"""lkm's manual pages: made from the commands (their summaries, their own
descriptions, their option tables), kept under man/ and installed by the
package; man-db renders each without a warning, and each page names every
option its command's parser has."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

from lkm.cli.completion import specs
from lkm.cli.manpages import page_name, pages

REPO = Path(__file__).resolve().parents[2]


def test_the_kept_pages_are_what_lkm_makes() -> None:
    made = pages()
    kept = {str(p.relative_to(REPO / "man")): p.read_text() for p in REPO.glob("man/man*/*")}
    assert sorted(kept) == sorted(made), "run: python -m lkm.cli.manpages man"
    stale = [path for path, text in made.items() if kept[path] != text]
    assert stale == [], f"stale pages {stale}: run python -m lkm.cli.manpages man"
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    installed = config["tool"]["setuptools"]["data-files"]
    listed = {f for key, files in installed.items() if key.startswith("share/man") for f in files}
    assert listed == {f"man/{path}" for path in made}


def test_man_renders_every_page_without_warnings(report) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    for path in sorted(REPO.glob("man/man*/*")):
        done = subprocess.run(
            ["man", "--warnings", "-l", str(path)], capture_output=True, env=env, timeout=60
        )
        assert (done.returncode, done.stderr) == (0, b""), (path.name, done.stderr)
        assert done.stdout.count(b"\n") > 10, path.name
    report(f"man --warnings -l: {len(pages())} pages")


def test_each_page_names_every_option() -> None:
    made = pages()
    for command, spec in specs().items():
        name, section = page_name(command)
        text = made[f"man{section}/{name}"].replace("\\-", "-")
        options = list(spec.options) + [o for _, sub in spec.subcommands for o in sub.options]
        missing = [option for option in options if option not in text]
        assert missing == [], f"{name} does not name {missing}"
