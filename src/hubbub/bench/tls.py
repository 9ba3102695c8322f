"""The TLS rows: WebSocket fan-out and HTTP publish over TLS (``wss://``,
``https://``) next to the same over plaintext, in the same run, reported as
ratios TLS/plain.

The C and Node clients of the load generator speak plaintext only, so both
rows of each pair are driven by the Python clients of :mod:`.pyload`: the
ratio compares like with like, and the absolute figures are not comparable
with those of ``ws-fanout`` or ``http-publish`` (the Python clients are the
slower side). The hub runs on the memory engine, so that what differs between
the rows is the transport's encryption, not the store; the certificate is a
throwaway self-signed one (:mod:`.certs`) that the client trusts as its CA.
The figure to read is the one per server core-second: what TLS costs the
server, whatever the client could keep up with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .measure import drive
from .plan import DELIVERIES, P50, P99, PER_CORE, Metric, Run, Scenario, Size, check, hub, tls_name
from .procfs import Metrics
from .servers import TOPIC

#: Publishes in flight at most while the fan-out publisher runs flat out.
WINDOW = 64
#: Keep-alive connections of the HTTP publishers (wrk's -c64 is more than
#: the Python client can serve).
CONNECTIONS = 16
REQUESTS = Metric("requests_per_s", "requests/s", "/s")
REQUESTS_PER_CORE = Metric("requests_per_core_s", "requests per server core-second", "/s")
METRICS = (DELIVERIES, PER_CORE, REQUESTS, REQUESTS_PER_CORE, P50, P99)


def _variants(size: Size) -> list[tuple[str, dict[str, Any]]]:
    return [(f"ws fan-out N={size.tls_n}", {"door": "ws"}), ("http publish", {"door": "publish"})]


async def _measure(run: Run) -> Metrics:
    served, size = run.served, run.size
    spec: dict[str, Any] = {"warmup": size.warmup, "seconds": size.seconds}
    if served.cafile is not None:
        spec["cafile"] = str(served.cafile)
    if run.params["door"] == "ws":
        spec |= {"mode": "py-fanout", "url": served.url("ws", "ws"), "topic": TOPIC,
                 "n": size.tls_n, "size": 256, "window": WINDOW}
        result, _ = await drive(spec, served)
        check(result, "lost", "publish_errors")
    else:
        spec |= {"mode": "py-publish", "url": served.url("publish"),
                 "connections": CONNECTIONS}
        result, _ = await drive(spec, served)
        check(result, "errors")
    return result


SCENARIO = Scenario(
    "tls", "WebSocket fan-out (256-byte messages) and HTTP publish (100-byte JSON, "
    "keep-alive) over TLS and over plaintext, both driven by the Python clients",
    METRICS, lambda: [hub("memory"), hub("memory", tls=True)], _variants, _measure)


class Case(Protocol):
    """A result of one variant on one server (:class:`~.runner.CaseResult`)."""

    scenario: str
    variant: str
    server: str

    def median(self, key: str) -> float | None: ...


def ratios(results: Sequence[Case]) -> list[tuple[str, str, Metric, float, float]]:
    """Per variant of the ``tls`` scenario and figure measured on both rows:
    ``(variant, plaintext server, figure, plaintext median, TLS median)``."""
    rows = []
    for plain in results:
        if plain.scenario != SCENARIO.name:
            continue
        twin = next((c for c in results if (c.scenario, c.variant, c.server)
                     == (plain.scenario, plain.variant, tls_name(plain.server))), None)
        if twin is None:
            continue
        for metric in SCENARIO.metrics:
            a, b = plain.median(metric.key), twin.median(metric.key)
            if a and b is not None:
                rows.append((plain.variant, plain.server, metric, a, b))
    return rows
