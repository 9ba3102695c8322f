"""Running the scenarios (:mod:`hubbub.bench`, trade-off "interleave runs across
servers" and invariant "every run is bounded") and the summary table."""

from __future__ import annotations

import asyncio
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import tls
from .measure import ensure_loadgen, raise_file_limit
from .plan import FULL, Metric, Run, Scenario, Size
from .procfs import Metrics
from .scenarios import SCENARIOS
from .servers import Server, serving


@dataclass(slots=True)
class CaseResult:
    """Every run of one variant of a scenario on one server."""

    scenario: str
    variant: str
    server: str
    runs: list[Metrics] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs if key in run]

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "variant": self.variant, "server": self.server,
                "runs": self.runs, "errors": self.errors}


class Progress:
    """A progress bar on one line of a terminal; elsewhere, one line per run."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.count, self.stream = total, 0, stream
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def step(self, label: str) -> None:
        """A run begins."""
        elapsed = time.monotonic() - self.started
        clock = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}"
        if not self.tty:
            print(f"[{self.count + 1}/{self.total} {clock}] {label}", file=self.stream, flush=True)
            return
        filled = round(24 * self.count / max(1, self.total))
        line = f"[{'#' * filled}{'.' * (24 - filled)}] {self.count}/{self.total} {clock} {label}"
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()

    def advance(self, runs: int = 1) -> None:
        """Runs ended."""
        self.count += runs

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def _measure_once(scenario: Scenario, run: Run, case: CaseResult) -> None:
    try:
        case.runs.append(await scenario.measure(run))
    except Exception as exc:  # invariant "every run is bounded": record why, go on
        case.errors.append(str(exc) or type(exc).__name__)


async def run_suite(
    names: Sequence[str],
    size: Size = FULL,
    peers: Mapping[str, Sequence[Server]] | None = None,
    *,
    profile: Path | None = None,
    stream: TextIO = sys.stderr,
) -> list[CaseResult]:
    """Run the scenarios ``names`` on the hub and on ``peers`` (scenario -> servers)."""
    ensure_loadgen()
    # SIGTERM unwinds like Ctrl-C: every server and generator started is stopped.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    raise_file_limit(max(size.polls, size.idle, *size.idle_n) + 1024)  # per process
    plan = [(SCENARIOS[name], SCENARIOS[name].servers() + list((peers or {}).get(name, ())))
            for name in names]
    progress = Progress(sum(len(servers) * len(s.variants(size)) * size.runs
                            for s, servers in plan), stream)
    results: list[CaseResult] = []
    for scenario, servers in plan:
        for variant, params in scenario.variants(size):
            cases = [CaseResult(scenario.name, variant, s.name) for s in servers]
            results += cases
            if scenario.prepare is None:
                for i in range(size.runs):  # trade-off "interleave runs across servers"
                    for server, case in zip(servers, cases, strict=True):
                        progress.step(f"{scenario.name} {variant} {server.name} "
                                      f"run {i + 1}/{size.runs}")
                        try:
                            async with serving(server, profile) as served:
                                await _measure_once(scenario, Run(served, params, size), case)
                        except Exception as exc:
                            case.errors.append(str(exc) or type(exc).__name__)
                        progress.advance()
                continue
            for server, case in zip(servers, cases, strict=True):  # trade-off "load the store once"
                progress.step(f"{scenario.name} {variant} {server.name} loading")
                done = 0
                try:
                    async with serving(server, profile) as served:
                        run = Run(served, params, size)
                        await scenario.prepare(run)
                        for done in range(size.runs):
                            progress.step(f"{scenario.name} {variant} {server.name} "
                                          f"run {done + 1}/{size.runs}")
                            await _measure_once(scenario, run, case)
                            progress.advance()
                        done = size.runs
                except Exception as exc:
                    case.errors.append(str(exc) or type(exc).__name__)
                progress.advance(size.runs - done)
    progress.close()
    return results


# -- reporting ----------------------------------------------------------------------------


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}"
    if unit.endswith("/s") or value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def figure(case: CaseResult, metric: Metric) -> str:
    """``median (min-max)`` of a metric over the runs, or ``failed``."""
    values = case.values(metric.key)
    if not values:
        return "-" if case.runs else "failed"  # not measured in this variant, or no run
    text = format_value(statistics.median(values), metric.unit)
    if len(values) > 1:
        text += f" ({format_value(min(values), metric.unit)}-{format_value(max(values), metric.unit)})"
    return text


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, padded so it also reads as plain text."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def summary(results: Sequence[CaseResult]) -> str:
    """The summary table: one row per figure, then the reasons of failed runs."""
    rows = []
    for case in results:
        for i, metric in enumerate(SCENARIOS[case.scenario].metrics):
            head = [case.scenario, case.variant, case.server] if i == 0 else ["", "", ""]
            tail = [*(percent(case.median(k)) for k in ("server_cpu", "loadgen_cpu", "other_cpu")),
                    f"{len(case.runs)}/{len(case.runs) + len(case.errors)}"] if i == 0 else [""] * 4
            rows.append([*head, metric.label, figure(case, metric), metric.unit, *tail])
    text = markdown_table(["scenario", "variant", "server", "figure", "median (min-max)", "unit",
                           "server CPU", "loadgen CPU", "other CPU", "runs ok"], rows)
    pairs = tls_table(results)
    if pairs:
        text += "\n\nTLS against plaintext (both driven by the same Python clients):\n\n" + pairs
    failures = [f"- {c.scenario} {c.variant} {c.server}: {e}"
                for c in results for e in c.errors]
    return text + ("\n\nFailed runs:\n" + "\n".join(failures) if failures else "")


def tls_table(results: Sequence[CaseResult]) -> str:
    """The ratios TLS/plain of the ``tls`` scenario's figures, one row each
    (empty when it did not run on both servers)."""
    rows = [[variant, metric.label, format_value(plain, metric.unit),
             format_value(encrypted, metric.unit), f"{encrypted / plain:.2f}"]
            for variant, _, metric, plain, encrypted in tls.ratios(results)]
    if not rows:
        return ""
    return markdown_table(["variant", "figure", "plaintext", "TLS", "TLS/plain"], rows)
