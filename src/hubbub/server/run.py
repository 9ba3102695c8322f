"""Running the hub as a process: uvicorn, one announcement line, a graceful drain.

Theory of operation
-------------------
uvicorn's own shutdown is made for request-response traffic: it stops
listening, waits for open responses to end, and fails every WebSocket with
1012 and no reason. A hub's connections are long-lived streams, so left to
itself uvicorn would cut WebSockets off with no resume cursor and wait the
whole grace period on every SSE stream. The hub therefore drains *before*
uvicorn shuts down:

====  ========================================================================
step  on the first SIGTERM or SIGINT
====  ========================================================================
1     stop listening: new connections are refused, so clients reconnect to
      another node (or to this one once it is back)
2     ``hub.drain()``: new publishes are refused with 503, every subscription
      ends; the transports react by ending SSE streams (``event: close``) and
      closing WebSockets with 1012 and the resume cursor as the reason
3     wait until no WebSocket is left (their closing handshakes are done)
4     hand over to uvicorn's shutdown: it lets in-flight requests (publishes
      already accepted) finish, then runs the lifespan shutdown, which stops
      the hub and closes the store after its in-flight appends
====  ========================================================================

Steps 1-3 are bounded by ``drain_timeout``, step 4 by uvicorn's graceful
shutdown timeout (the same number of seconds). A second signal skips what is
left and exits at once (status 1). A completed drain exits 0.

The garbage collector
----------------------
A hub's requests and connections keep a few thousand objects alive at any
moment (64 publishes in flight, a thousand subscribers' frames), so with
CPython's default thresholds (700, 10, 10) the young generation is collected
every few requests, those objects are promoted, and the full collections
that follow walk everything the process holds: measured under an HTTP
publish load, 17% of the time and pauses of 13 ms each. ``hubbub serve``
therefore, once started, moves what it holds then (modules, the app, the
store's state) out of the collector's sight (``gc.freeze()``) and collects
young objects only once 20,000 more are alive (:data:`GC_THRESHOLDS`).
Most objects die by reference counting long before; the rest costs a few
megabytes at most. Messages are never tracked (:class:`hubbub.protocol.message.Message`).
Mounted in another server, the hub leaves that process's collector alone.

Trade-off: the signal is *not* re-raised after the drain, as uvicorn would do,
so a supervisor sees a clean exit 0 rather than death by SIGTERM; the drain is
the handling the signal asked for.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from ..config import Config
from ..core import Hub
from ..protocol.errors import HubbubError, Unavailable
from ..transports.app import create_app
from .httpwhole import WholeResponseProtocol
from .wsframes import FramesProtocol

log = logging.getLogger("hubbub.server")

DRAIN_TIMEOUT = 10.0
#: Room for a frame's envelope (op, topic, cursor, base64 growth is not counted).
WS_FRAME_OVERHEAD = 64 * 1024


#: ``gc.set_threshold`` of a ``hubbub serve`` process (see the module docstring).
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Freeze what the process holds now and raise the collector's thresholds
    (the module docstring says why). For a process that is a hub and nothing else."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only ever means this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def _is_websocket(connection: object) -> bool:
    # uvicorn keeps HTTP and WebSocket protocol objects in one set; the
    # WebSocket implementations all live under uvicorn.protocols.websockets
    # (hubbub's FramesProtocol is a subclass of one).
    return any(cls.__module__.startswith("uvicorn.protocols.websockets.")
               for cls in type(connection).__mro__)


class HubServer(uvicorn.Server):
    """A uvicorn server that drains its :class:`~hubbub.core.Hub` before shutting down."""

    def __init__(
        self,
        config: uvicorn.Config,
        hub: Hub,
        *,
        drain_timeout: float = DRAIN_TIMEOUT,
        on_listening: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.hub = hub
        self.drain_timeout = drain_timeout
        #: Set when a second signal cut the drain short.
        self.forced = False
        #: Why the hub could not start (the store would not open), if it could not.
        self.startup_error: HubbubError | None = None
        self._on_listening = on_listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._drain_task: asyncio.Task[None] | None = None
        #: Tune the garbage collector once started (:func:`tune_gc`): set by
        #: :func:`serve`, which owns the process.
        self.tune_gc = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            # Open the store before uvicorn does (through the lifespan, where
            # hub.start() is then a no-op), so a store that cannot be opened is
            # one clear error rather than a lifespan traceback.
            await self.hub.start()
        except HubbubError as exc:
            self.startup_error = exc
            self.should_exit = True
            return
        await super().startup(sockets)
        if self.started and self.tune_gc:
            tune_gc()
        if self.started and self._on_listening is not None:
            self._on_listening(self.address)

    @property
    def address(self) -> str:
        """``host:port`` actually listened on (the real port when 0 was asked)."""
        host, port = self.config.host, self.config.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets or ():
                port = sock.getsockname()[1]
                break
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a Python signal handler on the loop's thread, between two
        # bytecodes: only schedule work here (call_soon_threadsafe also wakes
        # the loop). Deliberately not calling super(): see the module docstring.
        if self._signalled:
            self.forced = self.force_exit = self.should_exit = True
            return
        self._signalled = True
        if self._loop is None or not self.started:
            self.should_exit = True  # nothing to drain yet
            return
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self._drain_task = asyncio.create_task(self.drain(), name="hubbub-drain")

    async def drain(self) -> None:
        """Steps 1-3 of the module docstring, then tell uvicorn to shut down."""
        log.info("draining: refusing new connections, ending subscriptions")
        try:
            async with asyncio.timeout(self.drain_timeout):
                for server in self.servers:
                    server.close()
                await self.hub.drain()
                # uvicorn has no event for "connection gone"; it polls its
                # connection set the same way in its own shutdown.
                while any(_is_websocket(c) for c in self.server_state.connections):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            log.warning("drain took longer than %gs; closing what is left", self.drain_timeout)
        except Exception:
            log.exception("drain failed; shutting down anyway")
        finally:
            self.should_exit = True


def serve(
    store: str,
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "warning",
    access_log: bool = False,
    drain_timeout: float = DRAIN_TIMEOUT,
    announce: Callable[[str], None] | None = None,
    log_format: str = "text",
) -> int:
    """Run a hub until a signal drains it; returns the exit status.

    Raises:
        ValueError: ``store`` names no known engine.
        OSError: the store's directory cannot be made.
        Unavailable: the store cannot be opened.
    """
    # JSON logs come with request ids (hubbub.transports.requestid says why),
    # and leave uvicorn's loggers to the root's JSON handler (server.logs).
    json_logs = log_format == "json"
    app = create_app(store, config, request_ids=json_logs)
    uv = uvicorn.Config(
        app, host=host, port=port,
        # uvicorn's websockets-sansio protocol (it deprecates its legacy
        # "websockets" one) plus the hubbub.frames extension: the WebSocket
        # door writes pre-built message frames, a batch per write.
        # httptools plus the hubbub.respond extension (whole responses in one
        # write: a long-poll page goes out to every waiting poll at once).
        loop="uvloop", http=WholeResponseProtocol, ws=FramesProtocol,
        ws_max_size=config.max_message_size + WS_FRAME_OVERHEAD,
        # No permessage-deflate: message frames go out pre-built, uncompressed,
        # and a negotiated compression context costs tens of KB per connection.
        ws_per_message_deflate=False,
        lifespan="on", access_log=access_log, log_level=log_level,
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=max(1, round(drain_timeout)),
    )

    def listening(address: str) -> None:
        line = f"hubbub listening on http://{address} (store: {store})"
        if announce is None:
            print(line, flush=True)
        else:
            announce(line)

    server = HubServer(uv, app.state.hub, drain_timeout=drain_timeout, on_listening=listening)
    server.tune_gc = True
    try:
        server.run()
    except SystemExit as stop:
        # uvicorn exits 3 when it cannot start (say, the port is taken) after
        # logging why; the hubbub command's status for that is 1.
        if stop.code == STARTUP_FAILURE:
            return 1
        raise
    if (exc := server.startup_error) is not None:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise Unavailable(f"{exc.message} ({store}){cause}") from exc
    return 1 if server.forced else 0


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log hubbub's own records to stderr at ``level``, as ``text`` or ``json``
    (:mod:`hubbub.server.logs`; with text, uvicorn configures its own)."""
    from .logs import configure

    configure(level, fmt)


__all__ = [
    "GC_THRESHOLDS", "HubServer", "configure_logging", "is_loopback", "serve", "tune_gc",
]
