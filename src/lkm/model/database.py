"""The module database of one kernel, for library users.

Image builders, installers and test frameworks ask the same questions
modprobe asks, without a shell: where is a module, what does it need,
which modules does an alias name, who exports a symbol, is it built in,
what firmware does it load — and, for an initramfs, the whole set to copy
(:meth:`ModuleDatabase.closure`). Answers come from the indexes depmod
wrote (kmod's or lkm's, they are the same), plus the module files for
firmware.
"""

from __future__ import annotations

from collections.abc import Iterable

from lkm.errors import AliasError, ModuleNotFound
from lkm.formats.module_file import module_name_from_path, open_module
from lkm.model.moddir import ModuleDirectory, normalize_modname
from lkm.records import Record
from lkm.system.files import CONFIGURATION, read_text


class SoftDeps(Record):
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


class Closure(Record):
    """What an initramfs needs for some modules."""

    modules: tuple[str, ...]  # module files, dependencies before dependents
    builtin: tuple[str, ...]  # names that need no file
    firmware: tuple[str, ...]  # firmware file names, relative to /lib/firmware
    missing: tuple[str, ...]  # requested names nothing matched


def parse_softdeps(text: str, keyword: str = "softdep") -> dict[str, SoftDeps]:
    """``modules.softdep`` (or ``modules.weakdep``) text: module → deps."""
    result: dict[str, SoftDeps] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != keyword:
            continue
        module = normalize_modname(words[1])
        pre: list[str] = []
        post: list[str] = []
        target = pre
        for word in words[2:]:
            if word == "pre:":
                target = pre
            elif word == "post:":
                target = post
            else:
                target.append(word)
        old = result.get(module, SoftDeps())
        result[module] = SoftDeps(old.pre + tuple(pre), old.post + tuple(post))
    return result


class ModuleDatabase:
    """Read-only view of ``/lib/modules/VERSION`` (or any module directory)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._moddir = ModuleDirectory(path)
        self._softdeps: dict[str, SoftDeps] | None = None
        self._weakdeps: dict[str, tuple[str, ...]] | None = None

    def __repr__(self) -> str:
        return f"ModuleDatabase({self.path!r})"

    def close(self) -> None:
        self._moddir.close()

    def __enter__(self) -> ModuleDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- single facts ---------------------------------------------------------

    def path_of(self, name: str) -> str | None:
        """Module file for a module name (None: built in or unknown)."""
        return self._moddir.module_path(normalize_modname(name))

    def is_builtin(self, name: str) -> bool:
        return self._moddir.is_builtin(normalize_modname(name))

    def dependencies(self, name: str) -> list[str]:
        """Module files NAME needs (all of them, as modules.dep lists them)."""
        return self._moddir.dependencies(normalize_modname(name))

    def load_order(self, name: str) -> list[str]:
        """Files in the order modprobe inserts them (without soft deps)."""
        path = self.path_of(name)
        if path is None:
            if self.is_builtin(name):
                return []
            raise ModuleNotFound(name, self.path)
        return [*reversed(self.dependencies(name)), path]

    def modules_for(self, alias: str) -> list[str]:
        """Module names an alias or name resolves to, in kmod's order."""
        return [ref.name for ref in self._moddir.lookup(alias)]

    def symbol_owner(self, symbol: str) -> str | None:
        """The module exporting ``symbol`` (None: the kernel or nobody)."""
        index = self._moddir.index("modules.symbols")
        if index is None:
            return None
        return index.lookup(f"symbol:{symbol}")

    def softdeps(self, name: str) -> SoftDeps:
        if self._softdeps is None:
            self._softdeps = parse_softdeps(self._read_text("modules.softdep"))
        return self._softdeps.get(normalize_modname(name), SoftDeps())

    def weakdeps(self, name: str) -> tuple[str, ...]:
        if self._weakdeps is None:
            parsed = parse_softdeps(self._read_text("modules.weakdep"), keyword="weakdep")
            self._weakdeps = {k: v.pre + v.post for k, v in parsed.items()}
        return self._weakdeps.get(normalize_modname(name), ())

    def firmware(self, name: str) -> list[str]:
        """Firmware files a module may request (its ``firmware=`` entries)."""
        path = self.path_of(name)
        if path is None:
            return []
        with open_module(path) as module:
            return [value for key, value in module.modinfo() or () if key == "firmware"]

    def _read_text(self, basename: str) -> str:
        """A text file of the directory (kmod reads these as modprobe.d
        files); "" when it is missing."""
        try:
            return read_text(f"{self.path}/{basename}", CONFIGURATION)
        except FileNotFoundError:
            return ""

    # -- closure --------------------------------------------------------------

    def closure(
        self, names: Iterable[str], firmware: bool = True, softdeps: bool = True
    ) -> Closure:
        """Every module file (and firmware) needed to load ``names``.

        Names may be module names or aliases. Hard dependencies always;
        soft dependencies (pre and post) and weak dependencies when
        ``softdeps``, since modprobe loads them too when it can.
        """
        files: dict[str, None] = {}
        builtin: dict[str, None] = {}
        missing: list[str] = []
        requested: set[str] = set()
        seen: set[str] = set()
        queue = list(names)
        while queue:
            request = queue.pop(0)
            if request in requested:
                continue
            requested.add(request)
            modules = self._resolve(request)
            if not modules:
                missing.append(request)
            for module in modules:
                if module in seen:
                    continue
                seen.add(module)
                added = self._add_module(module, files, builtin)
                if softdeps:
                    # Soft and weak dependencies of every module loaded,
                    # hard dependencies included (libcrc32c wants crc32c).
                    for name in [module, *(module_name_from_path(p) for p in added)]:
                        soft = self.softdeps(name)
                        queue.extend([*soft.pre, *soft.post, *self.weakdeps(name)])
        firmware_names: dict[str, None] = {}
        if firmware:
            for path in files:
                with open_module(path) as image:
                    for key, value in image.modinfo() or ():
                        if key == "firmware":
                            firmware_names[value] = None
        return Closure(tuple(files), tuple(builtin), tuple(firmware_names), tuple(missing))

    def _resolve(self, request: str) -> list[str]:
        try:
            return self.modules_for(request)
        except AliasError:  # not even a valid alias (unbalanced brackets)
            return []

    def _add_module(
        self, module: str, files: dict[str, None], builtin: dict[str, None]
    ) -> list[str]:
        """Add a module's file after its dependencies; returns the new dependency files."""
        path = self.path_of(module)
        if path is None:
            if self.is_builtin(module):
                builtin[module] = None
            return []
        added = []
        for dep in reversed(self.dependencies(module)):
            if dep not in files:
                files[dep] = None
                added.append(dep)
        files.setdefault(path, None)
        return added


__all__ = ["Closure", "ModuleDatabase", "SoftDeps", "parse_softdeps"]
