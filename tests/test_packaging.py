"""What a fresh install gets: its dependencies and bounds, its extras, and one
clear line when an extra a command needs is missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from tests.conftest import UNIT

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_runtime_dependency_is_bounded_both_ways() -> None:
    """Each runtime dependency names a tested lower (>=) and upper (<) bound."""
    for line in pyproject()["project"]["dependencies"]:
        operators = {spec.operator for spec in Requirement(line).specifier}
        assert operators == {">=", "<"}, line


def test_the_default_install_is_the_hub_alone() -> None:
    """No test tool, checker or optional engine comes with ``pip install hubbub``;
    each extra is there to be asked for."""
    project = pyproject()["project"]
    names = {Requirement(line).name.lower() for line in project["dependencies"]}
    assert not names & {"pytest", "mypy", "ruff", "hypothesis", "playwright", "fastapi",
                        "redis", "import-linter", "tuspy"}
    assert {"redis", "fastapi", "test", "dev"} <= set(project["optional-dependencies"])
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def without_redis(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``hubbub ARGV`` in a process where the redis package cannot be imported,
    as after ``pip install hubbub`` with no extra."""
    code = ("import sys; sys.modules['redis'] = None\n"  # import redis -> ModuleNotFoundError
            "from hubbub.cli import main\n"
            f"raise SystemExit(main({list(argv)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20 * UNIT)


def test_a_redis_store_without_the_extra_says_which_to_install() -> None:
    """``--store redis://`` without the redis package: one line naming the extra,
    exit status 2, no traceback."""
    out = without_redis("serve", "--port", "0", "--store", "redis://127.0.0.1:1/0")
    assert out.returncode == 2, out.stderr
    assert out.stderr == ("hubbub: error: redis:// stores need the redis package: "
                          "pip install 'hubbub[redis]'\n")
    assert out.stdout == ""
