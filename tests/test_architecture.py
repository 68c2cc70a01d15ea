"""The package imports one way, as docs/architecture.md draws it.

`cli` → `app` → `routes`/`sockets` → the domains (`chat` on `accounts` and
`files`) → `fanout` → `encryption`, and everything → the kernel (`config`,
`errors`, `db`, `wire`, `ratelimit`, `schema`). A sub-package reaches another
only through its face, the names its `__init__` exports in `__all__`: never a
private name, never a module the face does not export. Nothing imports `app`
or `cli`, but `__main__` (which runs `cli`) and `cli` (whose `serve` builds the
app for one worker).

Read from the source (every import, at any depth, TYPE_CHECKING ones too),
not from the running package, so a violation fails here before it is ever run.
"""

from __future__ import annotations

import ast
import functools
import importlib
from dataclasses import dataclass
from pathlib import Path

from secure_link.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "secure_link"
KERNEL = {"config", "errors", "db", "wire", "ratelimit", "schema"}
DOMAINS = {"accounts", "chat", "files", "fanout", "encryption", "http", "ops"}
# What each part may import beside itself and the kernel (the package's own `__init__` is open to all).
MAY_IMPORT: dict[str, set[str]] = {
    **{name: set() for name in KERNEL},
    "encryption": set(),
    "http": set(),
    "ops": set(),
    "fanout": {"encryption"},
    "files": {"encryption"},
    "accounts": {"fanout", "http", "ops"},
    "chat": {"accounts", "files", "fanout", "encryption", "ops"},
    "services": DOMAINS,
    "housekeeping": DOMAINS | {"services"},
    "sockets": DOMAINS | {"services"},
    "routes": DOMAINS | {"services", "sockets"},
    "app": DOMAINS | {"services", "housekeeping", "routes", "sockets"},
    "operator": DOMAINS | {"services"},
    "cli": DOMAINS | {"app", "operator", "services"},
    "__main__": {"cli"},
}


@dataclass(frozen=True)
class Import:
    """One import statement's target: a module, and the names taken from it (none for `import x`)."""

    where: str  # file:line
    module: str  # dotted, absolute
    names: tuple[str, ...]


def part_of(module: str) -> str:
    """The part a module of the package belongs to: its sub-package, or its own name at the top."""
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def imports_of(path: Path) -> list[Import]:
    """Every import of secure_link in one file, relative ones resolved."""
    module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Import(where, alias.name, ()) for alias in node.names if alias.name.startswith("secure_link")]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else node.module or ""
            if not target.startswith("secure_link"):
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [name for name in names if f"{target}.{name}" in modules()]  # `from package import module`
            found += [Import(where, f"{target}.{name}", ()) for name in submodules]
            if len(submodules) < len(names):
                found.append(Import(where, target, tuple(name for name in names if name not in submodules)))
    return found


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own: `secure_link.chat`)."""
    return {".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


def exported(package: str) -> set[str]:
    """What a sub-package's face hands on: its `__all__`."""
    return set(importlib.import_module(package).__all__)


def face_problems(item: Import, own: str) -> list[str]:
    """A sibling sub-package reached other than through its face."""
    parts = item.module.split(".")
    target = parts[1] if len(parts) > 1 else "__init__"
    if target == own or target not in DOMAINS:
        return []
    face = exported(f"secure_link.{target}")
    if len(parts) == 2:  # `from secure_link.chat import send_message`, or `import secure_link.chat`
        return [f"{item.where}: {name} is not in secure_link.{target}'s __all__"
                for name in item.names if name not in face or name.startswith("_")]
    if parts[2] not in face:  # `from secure_link.chat.writer import x`, `from secure_link.chat import writer`
        return [f"{item.where}: {item.module} is a module secure_link.{target}'s __init__ does not export"]
    return [f"{item.where}: {name} is private to {item.module}" for name in item.names if name.startswith("_")]


def direction_problems(item: Import, own: str) -> list[str]:
    """An import against the direction the package's parts depend on each other."""
    target = part_of(item.module)
    if target in (own, "__init__") or target in KERNEL or target in MAY_IMPORT[own]:
        return []
    return [f"{item.where}: {own} may not import {item.module}"]


def problems() -> list[str]:
    found = []
    for module, path in sorted(modules().items()):
        own = part_of(module)
        for item in imports_of(path):
            found += face_problems(item, own) + direction_problems(item, own)
    return found


def test_every_part_of_the_package_is_placed_in_the_table() -> None:
    parts = {part_of(module) for module in modules()} - {"__init__"}
    assert parts == set(MAY_IMPORT), "a new part of the package needs its place in MAY_IMPORT (and in the docs)"


def test_the_package_imports_one_way_and_through_faces_only() -> None:
    assert problems() == []


def test_nothing_imports_app_or_cli_but_main_and_the_serve_command() -> None:
    reaching = sorted({(part_of(module), item.module) for module, path in modules().items()
                       for item in imports_of(path) if part_of(item.module) in ("app", "cli")})
    assert reaching == [("__main__", "secure_link.cli"), ("cli", "secure_link.app")]
