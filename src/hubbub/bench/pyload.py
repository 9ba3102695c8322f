"""The load generator's Python clients, for the rows that need TLS.

::

    python -m hubbub.bench.pyload '{"mode": "py-fanout", ...}'

The C clients (``benchmarks/loadgen/*.c``) and the Node one speak plaintext
only, and wrk is not on every machine; these clients speak both, with the
``websockets`` and ``httpx`` packages, so a TLS row and its plaintext row are
measured by the same code and their ratio compares like with like. They are
slower than the C clients: their absolute figures are not comparable with the
other scenarios', only with each other.

They speak the load generator's lines (``benchmarks/loadgen/main.mjs``):
``{"mark": NAME, "cpu_s": ...}`` when the measured window opens (``start``)
and closes (``end``), then ``{"result": {...}}`` or ``{"error": "..."}``.
Modes (the spec's other keys):

* ``py-fanout``: ``n`` WebSocket subscribers of ``topic`` at ``url`` and one
  publisher, which keeps ``window`` publishes of ``size`` bytes unanswered at
  most; after ``warmup`` s, ``seconds`` s are measured: deliveries/s, and the
  latency of each delivery from its publish (p50, p99). Then the publisher
  stops and every subscriber must get every message published: ``lost``
  counts those that did not come within ``drain`` s.
* ``py-publish``: ``connections`` keep-alive HTTP/1.1 connections POSTing a
  100-byte JSON document to ``url`` (as ``publish.lua`` does for wrk):
  requests/s and p99 over ``seconds`` s after ``warmup`` s; ``errors`` counts
  answers other than 201 and failed requests.

``cafile`` (both modes): the certificate to trust for ``https``/``wss`` URLs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

#: The document every publish of ``py-publish`` sends (that of ``publish.lua``).
PUBLISH_BODY = (b'{"seq":1,"user":"bench","text":"a one-hundred-byte JSON message for '
                b'the HTTP publish benchmark...."}')
SUBPROTOCOL = Subprotocol("hubbub.v1.json")
Mark = Callable[[str], None]


def tls_context(spec: Mapping[str, Any]) -> ssl.SSLContext | None:
    """A client context trusting ``spec["cafile"]``, or None without one."""
    cafile = spec.get("cafile")
    return ssl.create_default_context(cafile=cafile) if cafile else None


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _subscriber(url: str, topic: str, context: ssl.SSLContext | None,
                      ) -> ClientConnection:
    ws = await connect(url, subprotocols=[SUBPROTOCOL], ssl=context, max_size=None,
                       compression=None, open_timeout=30)
    await ws.send(json.dumps({"op": "sub", "id": 1, "topics": [topic], "after": "end"}))
    answer = json.loads(await ws.recv())
    if answer.get("op") != "ok":
        raise RuntimeError(f"sub refused: {answer}")
    return ws


class FanoutMeter:
    """What the subscribers received: every delivery counted, and the latency of
    those inside the measured window."""

    def __init__(self) -> None:
        self.measuring = False
        self.delivered = 0
        self.latencies: list[float] = []
        self.received: list[int] = []

    async def read(self, index: int, ws: ClientConnection) -> None:
        async for frame in ws:
            obj = json.loads(frame)
            if obj.get("op") != "msg":
                continue
            self.received[index] += 1
            if self.measuring:
                self.delivered += 1
                self.latencies.append(time.monotonic() - obj["data"]["t"])


async def fanout(spec: Mapping[str, Any], mark: Mark) -> dict[str, float]:
    context = tls_context(spec)
    n, topic = int(spec["n"]), str(spec["topic"])
    subs = [await _subscriber(spec["url"], topic, context) for _ in range(n)]
    meter = FanoutMeter()
    meter.received = [0] * n
    readers = [asyncio.create_task(meter.read(i, ws)) for i, ws in enumerate(subs)]
    publisher = await connect(spec["url"], subprotocols=[SUBPROTOCOL], ssl=context,
                              max_size=None, compression=None, open_timeout=30)
    window = asyncio.Semaphore(int(spec["window"]))
    counts = {"sent": 0, "acked": 0, "errors": 0}

    async def acks() -> None:
        async for frame in publisher:
            op = json.loads(frame).get("op")
            if op in ("ok", "err"):
                counts["acked" if op == "ok" else "errors"] += 1
                window.release()

    pad = "x" * max(0, int(spec["size"]) - 40)
    stop = asyncio.Event()

    async def publish() -> None:
        for seq in itertools.count(2):
            await window.acquire()
            if stop.is_set():
                return
            await publisher.send(json.dumps({"op": "pub", "id": seq, "topic": topic,
                                             "data": {"t": time.monotonic(), "pad": pad}}))
            counts["sent"] += 1

    acking = asyncio.create_task(acks())
    sending = asyncio.create_task(publish())
    await asyncio.sleep(float(spec["warmup"]))
    meter.measuring = True
    mark("start")
    started = time.monotonic()
    await asyncio.sleep(float(spec["seconds"]))
    mark("end")
    meter.measuring = False
    elapsed = time.monotonic() - started
    stop.set()
    window.release()  # a publisher waiting for room sees the stop
    await sending
    deadline = time.monotonic() + float(spec.get("drain", 10))
    while time.monotonic() < deadline and (
            counts["acked"] + counts["errors"] < counts["sent"]
            or min(meter.received) < counts["acked"]):
        await asyncio.sleep(0.05)
    lost = sum(max(0, counts["acked"] - got) for got in meter.received)
    for ws in [*subs, publisher]:
        await ws.close()
    for task in [*readers, acking]:
        task.cancel()
    await asyncio.gather(*readers, acking, return_exceptions=True)
    latencies = [1000 * s for s in meter.latencies]
    return {"deliveries_per_s": meter.delivered / elapsed, "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99), "published": counts["acked"],
            "publish_errors": counts["errors"], "lost": lost}


async def publish(spec: Mapping[str, Any], mark: Mark) -> dict[str, float]:
    context = tls_context(spec)
    connections = int(spec["connections"])
    latencies: list[float] = []
    counts = {"done": 0, "errors": 0}
    measuring = False
    stop = asyncio.Event()

    async def worker(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                r = await http.post(spec["url"], content=PUBLISH_BODY,
                                    headers={"Content-Type": "application/json"})
                ok = r.status_code == 201
            except httpx.HTTPError:
                ok = False
            if measuring:
                counts["done" if ok else "errors"] += 1
                latencies.append(1000 * (time.monotonic() - began))

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(verify=context or True, limits=limits, http2=False,
                                 timeout=10.0) as http:
        workers = [asyncio.create_task(worker(http)) for _ in range(connections)]
        await asyncio.sleep(float(spec["warmup"]))
        measuring = True
        mark("start")
        started = time.monotonic()
        await asyncio.sleep(float(spec["seconds"]))
        mark("end")
        measuring = False
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(*workers)
    return {"requests_per_s": counts["done"] / elapsed, "p99_ms": percentile(latencies, 0.99),
            "p50_ms": statistics.median(latencies) if latencies else 0.0,
            "errors": counts["errors"]}


MODES = {"py-fanout": fanout, "py-publish": publish}


def _emit(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _mark(name: str) -> None:
    _emit({"mark": name, "cpu_s": time.process_time()})


async def _main(spec: Mapping[str, Any]) -> dict[str, float]:
    async with asyncio.timeout(float(spec.get("timeout_s", 120))):
        return await MODES[spec["mode"]](spec, _mark)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1] if len(argv) > 1 else "{}")
    if spec.get("mode") not in MODES:
        _emit({"error": f"unknown mode {spec.get('mode')}; modes: {', '.join(MODES)}"})
        return 2
    try:
        result = asyncio.run(_main(spec))
    except Exception as exc:  # the orchestrator reports it as the run's failure
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit({"result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
