"""Chart of the WebSocket fan-out: deliveries per second against N, per server.

    python benchmarks/tools/chart.py results.json fanout.png

Runs on the peers' interpreter (benchmarks/.venv has matplotlib). Each point
is the median over the runs; the bars span the minimum and maximum.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results: Path, png: Path) -> None:
    series: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    for case in json.loads(results.read_text()):
        values = [run["deliveries_per_s"] for run in case["runs"] if "deliveries_per_s" in run]
        if case["scenario"] != "ws-fanout" or not values:
            continue
        n = int(case["variant"].removeprefix("N="))
        series[case["server"]].append((n, statistics.median(values), min(values), max(values)))
    if not series:
        print("chart: no WebSocket fan-out figures, no chart", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for server, points in sorted(series.items()):
        points.sort()
        ns = [p[0] for p in points]
        med = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(ns, med, yerr=err, marker="o", capsize=4, label=server)
    ax.set_xscale("log")
    ax.set_xticks(sorted({n for pts in series.values() for n, *_ in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("subscribers on one topic (N)")
    ax.set_ylabel("deliveries per second")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.set_title("WebSocket fan-out, 1 publisher, 256-byte messages")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
