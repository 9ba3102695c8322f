"""Pushpin for the benchmark suite: Pushpin itself, and the origin it fronts.

    python pushpin_origin.py PORT SCRATCH

Pushpin (https://pushpin.org) is a proxy: it holds the clients' connections
and asks an origin, over plain HTTP, what to do with each; the origin answers
with GRIP instructions ("hold this response open on channel C"), and
publishes to channels through Pushpin's HTTP control API. This process is
that origin (Starlette on uvicorn, on a free loopback port), and it starts
Pushpin in front of it on 127.0.0.1:PORT with its configuration, runtime and
log files in SCRATCH; SIGTERM stops both. Clients see:

- ``GET /events/<channel>``: an SSE stream held on the channel;
- ``GET /poll/<channel>``: a long poll held until the channel's next message
  (a ``{}`` answer after 30 s);
- ``/ws/sub/<channel>`` and ``/ws/pub/<channel>``: WebSockets (WebSocket-over-HTTP
  to the origin), the first subscribed to the channel, the second publishing
  each of its frames to it;
- ``POST /publish/<channel>``: the body published to the channel.

Pushpin's configuration is its shipped ``pushpin.conf`` with the ports and
directories of this run, logging at errors, room for 120,000 connections, and
three settings of the shipped file that drop messages under the suite's load
(each explained where it is set): the handler's rate limit
(``message_rate``, 2,500 deliveries a second) and the queue behind it
(``message_hwm``, 25,000 deliveries, the rest dropped), and the room each
client connection has for messages on their way out (``client_buffer_size``,
8 KiB: a published WebSocket message that does not fit is dropped). zurl
(Pushpin's HTTP client, through which it asks the origin) runs as Debian's
package has it, as a service of its own: the packaged ``/etc/zurl.conf``
with this run's sockets and larger queues, in several processes
(:data:`ZURL_WORKERS`, the proxy's queue to each being short). Publishing to
a channel is in order: the origin answers a publishing request (or a
WebSocket's batch of frames) only once Pushpin has taken its messages.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SHIPPED_CONF = Path("/etc/pushpin/pushpin.conf")
#: The zurl package's configuration (a system service's, sockets in /var/run/zurl).
SHIPPED_ZURL_CONF = Path("/etc/zurl.conf")
MAX_CONNECTIONS = 120_000
#: Bytes each client connection may have on their way out: 1,024 messages of the
#: suite's 256 bytes, as many as hubbub buffers per subscriber (nchan keeps as
#: many per channel). Pushpin's proxy writes a published WebSocket message to a
#: client only while it fits in this room (the connection manager's "credits")
#: and drops it otherwise (src/proxy/wsproxysession.cpp, a send event without
#: "queue"); SSE streams queue at most 100 messages behind it. The shipped 8 KiB
#: is 30 such messages: the fan-out's 256 in flight lost whole messages.
#: Memory grows with what is used, not with the setting: idle-ws at 10,000
#: connections measured 60-64 KB per connection at 8 KiB, 64 KiB and 256 KiB.
CLIENT_BUFFER = 1024 * 256
#: zurl processes. Pushpin's proxy queues at most 100 requests to each zurl
#: (OUT_HWM in src/corelib/zhttpmanager.cpp) and answers 502 to a request that
#: finds the queue full; the suite opens 200 connections at a time, each a
#: request to the origin (WebSocket-over-HTTP, long polls). Upgrades of 1,000
#: WebSocket subscribers answered 502 in 5 of 5 runs with one zurl, 3 of 5 with
#: two, 1 of 19 with four, 0 of 14 with eight. An idle zurl costs no CPU and
#: about 20 MB, once per run (not per connection).
ZURL_WORKERS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_offset() -> int:
    """A port_offset under which Pushpin's four fixed control ports (5560-5563) are free."""
    while True:
        base = free_port()
        try:
            for port in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base - 5560


def pushpin_config(shipped: str, scratch: Path, origin_port: int, offset: int,
                   zurl_workers: int = ZURL_WORKERS) -> tuple[str, str]:
    """The run's pushpin.conf (from the shipped one) and routes file."""
    changes = {
        "rundir": str(scratch / "run"), "logdir": str(scratch / "log"), "log_level": "1",
        "port_offset": str(offset), "client_maxconn": str(MAX_CONNECTIONS),
        "client_buffer_size": str(CLIENT_BUFFER),
        "routesfile": str(scratch / "routes"),
        # The handler hands each delivery (one message to one connection) to a
        # rate limiter: the shipped 2,500 a second (2.5 messages a second to
        # 1,000 subscribers) is traffic shaping, not a capacity; 0 turns it off
        # (src/handler/ratelimiter.cpp, setRate), as when the setting is absent.
        # A high rate instead still batches deliveries every 25 ms: at N = 100
        # and a rate of 1,000,000, p99 at half rate was 4.1 s against 143 ms.
        "message_rate": "0",
        # Deliveries queued behind the limiter; past this many the handler
        # drops them ("exceeded publish hwm", every subscriber missing the same
        # messages). Without a rate they wait only for the handler's next turn,
        # and the most one publish brings is the fan-out's 256 messages in
        # flight to 1,000 subscribers (256,000); the shipped 25,000 is not that.
        "message_hwm": "1000000",
    }
    conf = shipped
    for key, value in changes.items():
        conf, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", conf)
        if count != 1:
            raise ValueError(f"pushpin.conf has {count} {key} settings")
    # The proxy reaches the origin through this run's zurl processes (Debian's
    # internal.conf points at a zurl system service's /var/run/zurl): requests
    # are pushed to each in turn, and its answers come back from all.
    zurl = "\n".join(f"zurl_{name}_specs=" + ",".join(
        f"ipc://{scratch / 'run'}/zurl{i}-{socket}" for i in range(zurl_workers))
        for name, socket in (("out", "in"), ("out_stream", "in-stream"), ("in", "out")))
    conf = conf.replace("\n[proxy]\n", f"\n[proxy]\n{zurl}\n", 1)
    # WebSockets reach the origin as HTTP requests (WebSocket-over-HTTP).
    return conf, f"* 127.0.0.1:{origin_port},over_http\n"


def zurl_config(shipped: str, scratch: Path, worker: int) -> str:
    """zurl.conf of the run's zurl process ``worker`` (from the packaged one)."""
    run = scratch / "run"
    changes = {
        "in_spec": f"ipc://{run}/zurl{worker}-in",
        "in_stream_spec": f"ipc://{run}/zurl{worker}-in-stream",
        "out_spec": f"ipc://{run}/zurl{worker}-out",
        # Requests with a reply socket: Pushpin does not use it.
        "in_req_spec": "",
        # Requests waiting for zurl, and its answers waiting for the proxy (a
        # PUB socket: past its high-water mark it drops them). The packaged
        # 1,000 is less than the suite's 10,000 long polls; one in flight per
        # client connection at most.
        "in_hwm": str(MAX_CONNECTIONS), "out_hwm": str(MAX_CONNECTIONS),
    }
    conf = shipped
    for key, value in changes.items():
        conf, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", conf)
        if count != 1:
            raise ValueError(f"zurl.conf has {count} {key} settings")
    return conf


def grip_item(channel: str, body: str) -> dict[str, object]:
    """A publish item of ``body`` for every kind of held connection."""
    return {"channel": channel, "formats": {
        "http-stream": {"content": f"data: {body}\n\n"},
        "http-response": {"body": body},
        "ws-message": {"content": body},
    }}


def ws_events(body: bytes) -> list[tuple[str, bytes]]:
    """The events of a WebSocket-over-HTTP request body: (type, content)."""
    events, at = [], 0
    while at < len(body):
        end = body.index(b"\r\n", at)
        head = body[at:end].decode()
        at = end + 2
        kind, _, size = head.partition(" ")
        content = b""
        if size:
            content = body[at:at + int(size, 16)]
            at += int(size, 16) + 2
        events.append((kind, content))
    return events


def _ws_event(kind: str, content: bytes = b"") -> bytes:
    return f"{kind} {len(content):x}\r\n".encode() + content + b"\r\n" if content else \
        f"{kind}\r\n".encode()


def app(control: str):  # type: ignore[no-untyped-def]
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    client = httpx.AsyncClient(timeout=30)

    async def publish(items: list[dict[str, object]]) -> None:
        if items:
            answer = await client.post(control, json={"items": items})
            answer.raise_for_status()

    async def events(request: Request) -> Response:
        return Response("", media_type="text/event-stream", headers={
            "Grip-Hold": "stream", "Grip-Channel": request.path_params["channel"]})

    async def poll(request: Request) -> Response:
        return Response("{}", media_type="application/json", headers={
            "Grip-Hold": "response", "Grip-Channel": request.path_params["channel"],
            "Grip-Timeout": "30"})

    async def post(request: Request) -> Response:
        body = (await request.body()).decode()
        await publish([grip_item(request.path_params["channel"], body)])
        return Response("", status_code=204)

    async def ws(request: Request) -> Response:
        channel, role = request.path_params["channel"], request.path_params["role"]
        out, items = [], []
        for kind, content in ws_events(await request.body()):
            if kind == "OPEN":
                out.append(_ws_event("OPEN"))
                if role == "sub":
                    control_message = json.dumps({"type": "subscribe", "channel": channel})
                    out.append(_ws_event("TEXT", b"c:" + control_message.encode()))
            elif kind == "TEXT" and role == "pub":
                items.append(grip_item(channel, content.decode()))
            elif kind == "CLOSE":
                out.append(_ws_event("CLOSE", content))
        await publish(items)
        return Response(b"".join(out), media_type="application/websocket-events",
                        headers={"Sec-WebSocket-Extensions": "grip"})

    async def ready(request: Request) -> Response:
        return Response("ready")

    return Starlette(routes=[
        Route("/ready", ready), Route("/events/{channel}", events), Route("/poll/{channel}", poll),
        Route("/publish/{channel}", post, methods=["POST"]),
        Route("/ws/{role}/{channel}", ws, methods=["POST"]),
    ])


def main() -> None:
    import uvicorn

    port, scratch = int(sys.argv[1]), Path(sys.argv[2])
    origin_port, offset = free_port(), _free_offset()
    conf, routes = pushpin_config(SHIPPED_CONF.read_text(), scratch, origin_port, offset)
    for sub in ("run", "log"):
        (scratch / sub).mkdir(exist_ok=True)
    (scratch / "pushpin.conf").write_text(conf)
    (scratch / "routes").write_text(routes)
    processes = []
    for i in range(ZURL_WORKERS):
        (scratch / f"zurl{i}.conf").write_text(
            zurl_config(SHIPPED_ZURL_CONF.read_text(), scratch, i))
        processes.append(subprocess.Popen(
            ["zurl", f"--config={scratch / f'zurl{i}.conf'}",
             f"--logfile={scratch / 'log' / f'zurl{i}.log'}", "--loglevel=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # The proxy's requests to a zurl that is not listening yet would wait for it
    # (ZeroMQ queues them), so Pushpin starts once every zurl has its sockets.
    deadline = time.monotonic() + 10
    while not all((scratch / "run" / f"zurl{i}-{name}").exists()
                  for i in range(ZURL_WORKERS) for name in ("in", "in-stream", "out")):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for proc in processes:
                proc.kill()
            sys.exit(f"zurl did not start (see {scratch / 'log'})")
        time.sleep(0.01)
    processes.append(subprocess.Popen(["pushpin", "--config", str(scratch / "pushpin.conf"),
                                       "--port", f"127.0.0.1:{port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(*_: object) -> None:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    control = f"http://127.0.0.1:{5561 + offset}/publish/"
    try:
        uvicorn.run(app(control), host="127.0.0.1", port=origin_port, log_level="warning",
                    access_log=False, loop="uvloop", http="httptools")
    finally:
        stop()


if __name__ == "__main__":
    main()
