"""Old against new, interleaved: ``hubbub bench`` from two checkouts, alternately.

    python benchmarks/tools/interleave.py OLD_CHECKOUT NEW_CHECKOUT --rounds 3 \\
        --out DIR http-publish long-poll

Each round runs ``hubbub bench --runs 1 --json DIR/SIDE-ROUND.json SCENARIO...``
in the old checkout, then in the new one (each with its own ``.venv``, as
``make`` makes it), so that a drift of the machine during the session falls on
both sides alike. Every run's JSON is kept in ``DIR``; then, and with
``--table DIR`` alone, it prints one Markdown row per figure: every run's value
on each side, the ratio of the medians (new/old) and each side's spread
((max - min) / median). A figure whose spread is over 5% is marked: it is
reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The figures compared (per run, as ``hubbub bench --json`` writes them).
FIGURES = ("requests_per_s", "requests_per_core_s", "deliveries_per_s",
           "deliveries_per_core_s", "messages_per_s", "ws_msgs_per_s", "poll_msgs_per_s",
           "publish_per_s", "publish_p99_ms", "mb_per_s", "kb_per_conn", "p50_ms", "p99_ms")
#: The fan-out's fixed-rate latency points (``at500_p99_ms``...), compared too.
FIXED_RATE = re.compile(r"at[0-9.]+_p(50|99)_ms")
#: A spread over this share makes a figure too noisy to judge.
NOISY = 0.05


def run(old: Path, new: Path, rounds: int, out: Path, scenarios: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, rounds + 1):
        for side, checkout in (("old", old), ("new", new)):
            started = time.monotonic()
            with (out / f"{side}-{i}.txt").open("w") as log:
                rc = subprocess.call(
                    [str(checkout / ".venv/bin/hubbub"), "bench", "--runs", "1",
                     "--json", str(out / f"{side}-{i}.json"), *scenarios],
                    cwd=checkout, stdout=log, stderr=subprocess.STDOUT)
            print(f"round {i}/{rounds} {side}: exit {rc} in {time.monotonic() - started:.0f} s",
                  file=sys.stderr, flush=True)


def collect(out: Path) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """{(scenario and variant, server, figure): {"old": [...], "new": [...]}}, run order."""
    rows: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for path in sorted(out.glob("*-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        side = path.stem.split("-")[0]
        for entry in json.loads(path.read_text()):
            name = f"{entry['scenario']} {entry['variant']}".strip()
            for figures in entry["runs"]:
                fixed = sorted((k for k in figures if FIXED_RATE.fullmatch(k)),
                               key=lambda k: (float(k[2:].split("_")[0]), k))
                for figure in (*FIGURES, *fixed):
                    value = figures.get(figure)
                    if isinstance(value, int | float):
                        key = (name, entry["server"], figure)
                        rows.setdefault(key, {}).setdefault(side, []).append(float(value))
    return rows


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def table(out: Path) -> str:
    lines = ["| scenario | server | figure | old runs | new runs | new/old (medians) "
             "| spread old / new |", "|---|---|---|---|---|---|---|"]
    for (name, server, figure), sides in collect(out).items():
        old, new = sides.get("old"), sides.get("new")
        if not old or not new:
            continue
        ratio = statistics.median(new) / statistics.median(old)
        noisy = " (noisy)" if max(spread(old), spread(new)) > NOISY else ""
        lines.append(f"| {name} | {server} | {figure} | {_values(old)} | {_values(new)} "
                     f"| {ratio:.2f}x | {spread(old):.0%} / {spread(new):.0%}{noisy} |")
    return "\n".join(lines)


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, nargs="?")
    parser.add_argument("new", type=Path, nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("scenarios", nargs="*")
    args = parser.parse_intermixed_args()
    if not args.table:
        if args.old is None or args.new is None:
            parser.error("OLD_CHECKOUT and NEW_CHECKOUT are needed to run")
        run(args.old.resolve(), args.new.resolve(), args.rounds, args.out, args.scenarios)
    print(table(args.out))


if __name__ == "__main__":
    main()
