"""hubbub uses other packages through their public APIs only: no module
imports another package's private module or name, reads a private attribute
of another package's module or class, or subclasses a server library's class
(its protocols are not an API). The fast paths are hubbub's own code; a
dependency's next release cannot break them from underneath (docs/operations.md,
"Dependencies").

What counts as private: a name or a module path part that starts with ``_``
(dunders other than ``__dict__`` and ``__code__`` are public protocol), and the
generator and code-object internals that reach into a parser's state. Imports
under ``if TYPE_CHECKING:`` are exempt: they are types for the checker
(``_typeshed``), never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "hubbub"
#: Libraries whose classes hubbub must not subclass: servers, protocols, parsers.
SERVERS = frozenset({"uvicorn", "websockets", "h2", "hpack", "httptools", "uvloop", "hypercorn"})
#: Attributes that reach into objects' internals whatever they belong to.
INTERNALS = frozenset({"__dict__", "__code__", "gi_yieldfrom", "gi_frame", "cr_frame"})


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")
                                         and name not in INTERNALS)


def _typing_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:``."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                   "typing.TYPE_CHECKING"):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def violations(source: str) -> list[str]:
    """Every use of another package's internals in ``source``, one line each."""
    tree = ast.parse(source)
    skipped = _typing_only(tree)
    foreign: dict[str, str] = {}  # local name -> what it names outside hubbub
    found: list[str] = []
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hubbub":
                    continue
                foreign[alias.asname or alias.name.split(".")[0]] = alias.name
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] not in ("hubbub", "__future__")):
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                foreign[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in INTERNALS:
                found.append(f"{node.lineno}: .{node.attr}")
            elif _private(node.attr):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in foreign:
                    found.append(f"{node.lineno}: {ast.unparse(node)} ({foreign[root.id]})")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if (isinstance(root, ast.Name) and root.id in foreign
                        and foreign[root.id].split(".")[0] in SERVERS):
                    found.append(f"{node.lineno}: class {node.name}({ast.unparse(base)}), "
                                 f"from {foreign[root.id]}")
    return sorted(found, key=lambda line: int(line.split(":")[0]))


def test_no_module_reaches_into_another_packages_internals() -> None:
    found = [f"{path.relative_to(SRC.parent)}:{line}"
             for path in sorted(SRC.rglob("*.py"))
             for line in violations(path.read_text())]
    assert found == []


def test_the_check_finds_what_it_looks_for() -> None:
    """Each kind of reach the check refuses, in a made-up module, and what it lets pass."""
    refused = violations(
        "import uvicorn._types\n"
        "from uvicorn.protocols.http.httptools_impl import _get_status_line\n"
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol\n"
        "from websockets.protocol import Protocol\n"
        "import uvloop\n"
        "class Fast(HttpToolsProtocol): pass\n"
        "class Frames(Protocol): pass\n"
        "kind = uvloop.loop._TCPTransport\n"
        "cycle.__dict__.pop('flow')\n"
        "code = Protocol.parse.__code__\n"
        "inner = parser.gi_yieldfrom\n"
    )
    assert [line.split(":")[0] for line in refused] == [
        "1", "2", "6", "7", "8", "9", "10", "11"], refused
    allowed = violations(
        "from __future__ import annotations\n"
        "import asyncio\n"
        "from typing import TYPE_CHECKING\n"
        "from starlette.responses import Response\n"
        "from .writes import _fd\n"
        "from hubbub.loop import tasks\n"
        "if TYPE_CHECKING:\n"
        "    from _typeshed import StrPath\n"
        "class P(asyncio.Protocol): pass\n"
        "class Sent(Response): pass\n"
        "x = tasks._Rest\n"
        "self._own = asyncio.__name__\n"
    )
    assert allowed == []
