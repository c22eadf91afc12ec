"""The layering, checked on the source: every module under actors/, transport/ and scripts/ is
parsed (never imported) and each of its imports, lazy ones included, is held against LAYERS.

    transport <- actors.vocabulary, actors.config <- actors.rules, actors.reg_event, actors.auth
      <- actors.store <- actors.hosts <- actors.ops <- scripts
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("actors", "transport", "scripts")
FIRST_PARTY = ("actors", "transport", "scripts", "tests")

_PURE = ("transport", "actors.vocabulary", "actors.rules", "actors.reg_event", "actors.auth")
_STORE = _PURE + ("actors.config", "actors.store")
_HOSTS = _STORE + ("actors.hosts",)
_OPS = _HOSTS + ("actors.ops",)

# Package -> the first-party packages its modules may import (a module's layer is the longest
# package naming it). Third-party and standard modules are free unless BANNED below.
LAYERS: dict[str, tuple[str, ...]] = {
    "transport": ("transport",),  # the package itself
    "transport.sip": ("transport.sip",),
    "transport.diameter": ("transport.diameter",),
    "actors": ("transport", "actors"),  # the package itself: the public surface
    "actors.vocabulary": ("transport",),
    "actors.config": ("transport",),
    "actors.rules": _PURE,
    "actors.reg_event": _PURE,
    "actors.auth": _PURE,
    "actors.store": _STORE,
    "actors.hosts": _HOSTS,
    "actors.ops": _OPS,
    "scripts": ("transport", "actors", "scripts"),
}

# Package -> modules (or module attributes, such as asyncio.open_connection) it must not use:
# the pure layers do no I/O and know no Ray; the store knows no Ray either.
_IO = ("ray", "socket", "ssl", "selectors", "aiohttp", "asyncio.streams",
       "asyncio.open_connection", "asyncio.start_server", "asyncio.open_unix_connection",
       "asyncio.start_unix_server", "subprocess", "sqlite3", "redis")
BANNED: dict[str, tuple[str, ...]] = {
    "actors.vocabulary": _IO,
    "actors.config": ("ray",),
    "actors.rules": _IO,
    "actors.reg_event": _IO,
    "actors.auth": _IO,
    "actors.store": ("ray",),
    "transport": ("ray",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py"))


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def innermost(module: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The longest package of ``table`` that ``module`` lies in."""
    return max((p for p in table if under(module, p)), key=len, default=None)


def used_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) for every import anywhere in the file, ``from a import b`` as a.b,
    and every attribute read off an imported module (``asyncio.open_connection``)."""
    tree = ast.parse(path.read_text(), str(path))
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[tuple[int, str]] = []
    aliases: dict[str, str] = {}  # local name -> module, for `import x.y as z`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.append((node.lineno, alias.name))
                local = alias.asname or alias.name.partition(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            names.append((node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return sorted(names)


def violations(path: Path) -> list[str]:
    module = module_name(path)
    layer = innermost(module, LAYERS)
    banned = BANNED.get(innermost(module, BANNED) or "", ())
    where = path.relative_to(ROOT)
    found = []
    for line, name in used_names(path):
        if any(under(name, top) for top in FIRST_PARTY):
            if not any(under(name, allowed) for allowed in LAYERS[layer]):
                found.append(f"{where}:{line} imports {name} ({layer} may import "
                             f"{', '.join(LAYERS[layer])})")
        elif any(under(name, bad) for bad in banned):
            found.append(f"{where}:{line} uses {name} (not allowed in {layer})")
    return found


def test_every_module_lies_in_a_layer():
    # A module of its own directly under actors/ or transport/ would escape the table.
    unplaced = [str(p.relative_to(ROOT)) for p in sources()
                if (m := module_name(p)).count(".") >= 1
                and innermost(m, LAYERS) in ("actors", "transport")]
    assert unplaced == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    assert violations(path) == []


def test_no_test_imports_a_benchmark():
    # What tests and benchmarks share lives in scripts/harness; a benchmark is nobody's library.
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}"
             for p in sorted((ROOT / "tests").rglob("*.py")) for line, name in used_names(p)
             if name.startswith("scripts.bench_")]
    assert found == []


def ray_remote_classes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if ast.unparse(target) in ("ray.remote", "remote"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    return found


def test_actor_classes_are_plain_classes():
    # ray.remote is applied where an actor is created: the class itself stays a plain class
    # that unit tests construct and call directly.
    assert [c for p in sources() for c in ray_remote_classes(p)] == []


def test_the_public_surface_names_everything_without_loading_ray():
    # In a process of its own: another test may have loaded Ray into this one.
    script = ("import sys, actors\n"
              "print('ray' in sys.modules)\n"
              "print([n for n in actors.__all__ if getattr(actors, n, None) is None])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.splitlines() == ["False", "[]"]


def test_the_checker_sees_what_it_must(tmp_path, monkeypatch):
    """The checker itself: a relative import, a lazy import and an attribute of a module."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    rules = tmp_path / "actors" / "rules"
    rules.mkdir(parents=True)
    (rules / "__init__.py").write_text("")
    bad = rules / "bad.py"
    bad.write_text("import asyncio\nfrom ..config import Config\n\n"
                   "def f():\n    from actors.hosts import shard\n"
                   "    return asyncio.open_connection\n")
    assert violations(bad) == [
        f"actors/rules/bad.py:2 imports actors.config.Config (actors.rules may import "
        f"{', '.join(_PURE)})",
        f"actors/rules/bad.py:5 imports actors.hosts.shard (actors.rules may import "
        f"{', '.join(_PURE)})",
        "actors/rules/bad.py:6 uses asyncio.open_connection (not allowed in actors.rules)",
    ]
    (rules / "remote.py").write_text("import ray\n\n@ray.remote(num_cpus=0)\nclass Shard:\n"
                                     "    pass\n")
    assert ray_remote_classes(rules / "remote.py") == ["actors/rules/remote.py:4 class Shard"]
