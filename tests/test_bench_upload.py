"""The upload benchmark's instruments: the byte-for-byte check and the dd ceiling."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hubbub import bench
from hubbub.bench import scenarios


def test_same_file_compares_every_byte(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 100_000)
    b.write_bytes(b"x" * 100_000)
    assert scenarios._same_file(a, b)
    b.write_bytes(b"x" * 99_999 + b"y")
    assert not scenarios._same_file(a, b)
    b.write_bytes(b"x" * 99_999)
    assert not scenarios._same_file(a, b)


@pytest.mark.skipif(shutil.which("dd") is None, reason="dd is not installed")
def test_dd_ceiling_writes_the_source(tmp_path: Path) -> None:
    """The disk ceiling copies the very source bytes (and reports a rate)."""
    source = tmp_path / "source"
    source.write_bytes(bytes(range(256)) * 4096)
    result = scenarios._dd(source, tmp_path)
    assert (tmp_path / "dd.out").read_bytes() == source.read_bytes()
    assert result["mb_per_s"] > 0


def test_upload_scenario_runs_hub_and_disk() -> None:
    scenario = bench.SCENARIOS["upload"]
    assert [s.name for s in scenario.servers()] == ["hubbub (sqlite)", "disk write (dd)"]
    assert scenario.variants(bench.QUICK) == [("64 MiB", {})]
    assert scenario.variants(bench.FULL) == [("512 MiB", {})]
