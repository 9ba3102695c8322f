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

Pushpin's configuration is its shipped ``pushpin.conf`` with these changes
only: the ports and directories of this run, logging at errors, room for
120,000 connections, and zurl (Pushpin's HTTP client, through which it asks
the origin) started by Pushpin itself with its sockets in this run's
directory, where Debian's package expects a zurl system service. Publishing to a channel is in order: the origin
answers a publishing request (or a WebSocket's batch of frames) only once
Pushpin has taken its messages.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

SHIPPED_CONF = Path("/etc/pushpin/pushpin.conf")
MAX_CONNECTIONS = 120_000


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


def pushpin_config(shipped: str, scratch: Path, origin_port: int, offset: int) -> tuple[str, str]:
    """The run's pushpin.conf (from the shipped one) and routes file."""
    changes = {
        "rundir": str(scratch / "run"), "logdir": str(scratch / "log"), "log_level": "1",
        "port_offset": str(offset), "client_maxconn": str(MAX_CONNECTIONS),
        "routesfile": str(scratch / "routes"),
        "services": "condure,zurl,pushpin-proxy,pushpin-handler",
    }
    conf = shipped
    for key, value in changes.items():
        conf, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", conf)
        if count != 1:
            raise ValueError(f"pushpin.conf has {count} {key} settings")
    zurl = "\n".join(f"zurl_{name}_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-{socket}"
                     for name, socket in (("out", "in"), ("out_stream", "in-stream"),
                                          ("in", "out")))
    conf = conf.replace("\n[proxy]\n", f"\n[proxy]\n{zurl}\n", 1)
    # WebSockets reach the origin as HTTP requests (WebSocket-over-HTTP).
    return conf, f"* 127.0.0.1:{origin_port},over_http\n"


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
    pushpin = subprocess.Popen(["pushpin", "--config", str(scratch / "pushpin.conf"),
                                "--port", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(*_: object) -> None:
        pushpin.terminate()
        try:
            pushpin.wait(10)
        except subprocess.TimeoutExpired:
            pushpin.kill()
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
