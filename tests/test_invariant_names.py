"""Invariants and trade-offs are cited by name (README, "Layout"): every
citation ``invariant "NAME"`` or ``trade-off "NAME"`` names an entry that
exists: in the module it names (``hubbub.x.y``, just before it), else in its own
file or, for a citation that names no module (a test citing the module it
tests, a module its package's), in some module of the package. Renaming an
entry cannot leave a citation pointing nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
#: An entry: a line that starts with its quoted name and a colon.
ENTRY = re.compile(r'^\s*"([^"\n]+)":', re.M)
#: A citation, maybe preceded by the module it names (within one parenthesis).
CITATION = re.compile(
    r'(?:(hubbub(?:\.\w+)+)`?,?\s*(?:#:?\s*)?)?\b(invariant|trade-off)s?\s+"([^"]+)"')


def _entries(path: Path) -> set[str]:
    return {_squash(m.group(1)) for m in ENTRY.finditer(path.read_text())}


def _squash(name: str) -> str:
    """A name as written, with a comment's line breaks (``#``, ``#:``) undone."""
    return re.sub(r"\s+", " ", re.sub(r"#:?", " ", name)).strip()


def _module_file(dotted: str) -> Path | None:
    base = SRC.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _citing_files() -> list[Path]:
    files = [*SRC.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    files += [*(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md"),
              ROOT / "README.md"]
    return sorted(f for f in files if f.is_file() and f != Path(__file__).resolve())


def _dangling() -> list[str]:
    everywhere = set().union(*(_entries(p) for p in SRC.rglob("*.py")))
    out = []
    for path in _citing_files():
        text = path.read_text()
        for m in CITATION.finditer(text):
            module, name = m.group(1), _squash(m.group(3))
            target = _module_file(module) if module else path
            if target is None:
                out.append(f"{path.relative_to(ROOT)}: {module} is no module")
            elif name not in _entries(target) and (module or name not in everywhere):
                where = target.relative_to(ROOT)
                out.append(f"{path.relative_to(ROOT)}: {m.group(2)} {name!r} is not in {where}")
    return out


def test_every_cited_invariant_and_trade_off_exists() -> None:
    assert _dangling() == []


def test_a_citation_of_a_name_that_is_not_there_is_found(tmp_path: Path) -> None:
    """The check itself can fail: a citation of a missing entry is reported."""
    text = '"kept promise": it holds.\n(invariant "kept promise") (trade-off "lost one")\n'
    found = [m.group(3) for m in CITATION.finditer(text)]
    assert found == ["kept promise", "lost one"]
    assert {_squash(n) for n in found} - {m.group(1) for m in ENTRY.finditer(text)} == {
        "lost one"}


def test_no_numbered_rules_are_left() -> None:
    """Rules are named, not numbered: inserting one renumbers nothing."""
    numbered = re.compile(r"\bRules? \d")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _citing_files()
             if p.suffix == ".py" or p.parent.name == "docs"
             for n, line in enumerate(p.read_text().splitlines(), 1) if numbered.search(line)]
    assert found == []
