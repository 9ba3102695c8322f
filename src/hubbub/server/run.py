"""Running the hub as a process: hubbub's own server, one announcement line, a graceful drain.

Theory of operation
-------------------
:class:`HubServer` listens with :mod:`hubbub.server.http1` (HTTP/1.1 and
WebSocket upgrades; over TLS, HTTP/2 where the client offers it), runs the
app's lifespan around it, and drains the hub before it shuts down. A hub's
connections are long-lived streams: a plain server's shutdown would cut
WebSockets off with no resume cursor and wait its whole grace period on
every SSE stream, so the hub drains first:

====  ========================================================================
step  on the first SIGTERM or SIGINT
====  ========================================================================
1     stop listening: new connections are refused, so clients reconnect to
      another node (or to this one once it is back)
2     ``hub.drain()``: new publishes are refused with 503, every subscription
      ends; the transports react by ending SSE streams (``event: close``) and
      closing WebSockets with 1012 and the resume cursor as the reason; a
      stream whose client reads nothing is cut off at once
3     wait until no WebSocket is left (their closing handshakes are done)
4     shut down: idle connections close, in-flight requests (publishes
      already accepted) are answered, then the lifespan shutdown stops the
      hub and closes the store after its in-flight appends
====  ========================================================================

Steps 1-3 are bounded by ``drain_timeout``, step 4 by the same number of
seconds again. A second signal skips what is left and exits at once
(status 1). A completed drain exits 0.

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

Trade-off: the signal is *not* re-raised after the drain, so a supervisor
sees a clean exit 0 rather than death by SIGTERM; the drain is the handling
the signal asked for.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any

import uvloop

from ..config import Config
from ..core import Hub
from ..protocol.errors import HubbubError, Unavailable
from ..protocol.redact import RedactTokens
from ..transports.app import create_app
from .asgi import Lifespan
from .http1 import HttpProtocol
from .http2 import H2Protocol
from .settings import ServerSettings, from_config
from .state import ServerState
from .tls import server_context
from .websocket import WebSocketProtocol

log = logging.getLogger("hubbub.server")

DRAIN_TIMEOUT = 10.0
#: Room for a frame's envelope (op, topic, cursor, base64 growth is not counted).
WS_FRAME_OVERHEAD = 64 * 1024
#: Seconds a stream must have taken nothing to be cut off during a drain.
DRAIN_STALLED = 0.5


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


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The listener's TLS context (:func:`hubbub.server.tls.server_context`:
    ALPN ``h2`` then ``http/1.1``), or ``None`` without TLS files."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return server_context(settings)


class HubServer:
    """hubbub's server around one app: lifespan, listener, drain and shutdown."""

    def __init__(
        self,
        app: Any,
        settings: ServerSettings | None = None,
        hub: Hub | None = None,
        *,
        on_listening: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or ServerSettings()
        self.hub: Hub = hub if hub is not None else app.state.hub
        self.drain_timeout = self.settings.drain_timeout
        #: Set once listening.
        self.started = False
        #: Set when a second signal cut the drain short.
        self.forced = False
        #: Set when the server could not start (the lifespan failed, the port is taken).
        self.failed = False
        #: Why the hub could not start (the store would not open), if it could not.
        self.startup_error: HubbubError | None = None
        #: Tune the garbage collector once started (:func:`tune_gc`): set by
        #: :func:`serve`, which owns the process.
        self.tune_gc = False
        #: The shared state of the protocols (once serving).
        self.state: ServerState | None = None
        self.servers: list[asyncio.Server] = []
        self._on_listening = on_listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Event | None = None
        self._should_exit = False
        self._signalled = False
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._exit is not None:
            self._exit.set()

    @property
    def address(self) -> str:
        """``host:port`` actually listened on (the real port when 0 was asked)."""
        host, port = self.settings.host, self.settings.port
        for server in self.servers:
            for sock in server.sockets or ():
                port = sock.getsockname()[1]
                break
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def serve(self, *, signals: bool = False) -> None:
        """Serve until :attr:`should_exit`; with ``signals``, SIGTERM and SIGINT drain."""
        loop = self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        if self._should_exit:
            self._exit.set()
        state = self.state = ServerState(self.app, self.settings, loop)
        self.hub.metrics.server = state.snapshot
        try:
            # Open the store before the lifespan does (hub.start() is then a
            # no-op there), so a store that cannot be opened is one clear
            # error rather than a lifespan traceback.
            await self.hub.start()
        except HubbubError as exc:
            self.startup_error = exc
            return
        lifespan = Lifespan(self.app, state.lifespan_state)
        try:
            await lifespan.startup()
            self.servers = [await loop.create_server(
                lambda: HttpProtocol(state), self.settings.host, self.settings.port,
                ssl=tls_context(self.settings), backlog=4096, reuse_address=True)]
        except (OSError, RuntimeError, ssl.SSLError) as exc:
            log.error("cannot start: %s", exc)
            self.failed = True
            await lifespan.shutdown()
            return
        state.timer.start()
        state.helper.start()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
        self.started = True
        if self.tune_gc:
            tune_gc()
        if self._on_listening is not None:
            self._on_listening(self.address)
        try:
            await self._exit.wait()
            await self._shutdown()
            await lifespan.shutdown()
        finally:
            state.timer.stop()
            state.helper.stop()
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _shutdown(self) -> None:
        """Step 4 of the module docstring."""
        state = self.state
        assert state is not None
        for server in self.servers:
            server.close()
        state.closing = True
        for conn in list(state.connections):
            if isinstance(conn, HttpProtocol) and conn.idle():
                conn.transport.close()
            elif isinstance(conn, H2Protocol):
                conn.shutdown()  # no new streams; GOAWAY once the running ones end
        if not self.forced:
            try:
                async with asyncio.timeout(self.drain_timeout):
                    while state.connections and not self.forced:  # no event for "all gone"
                        state.cut_stalled(DRAIN_STALLED)
                        await asyncio.sleep(0.02)
            except TimeoutError:
                log.warning("%d connections still open after %gs; closing them",
                            len(state.connections), self.drain_timeout)
        for conn in list(state.connections):
            conn.transport.abort()
        # The apps of the requests cut off hear http.disconnect and end; what
        # does not end by itself is cancelled, so nothing is left running.
        if state.tasks:
            _, pending = await asyncio.wait(list(state.tasks), timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal: the first drains (module docstring), the second exits at once."""
        if self._signalled:
            self.forced = True
            self.should_exit = True
            return
        self._signalled = True
        if self._loop is None or not self.started:
            self.should_exit = True  # nothing to drain yet
            return
        self._drain_task = self._loop.create_task(self.drain(), name="hubbub-drain")

    async def drain(self) -> None:
        """Steps 1-3 of the module docstring, then shut down."""
        log.info("draining: refusing new connections, ending subscriptions")
        state = self.state
        assert state is not None
        try:
            async with asyncio.timeout(self.drain_timeout):
                for server in self.servers:
                    server.close()
                await self.hub.drain()
                while not self.forced and any(isinstance(c, WebSocketProtocol)
                                              for c in state.connections):
                    state.cut_stalled(DRAIN_STALLED)
                    await asyncio.sleep(0.02)
        except TimeoutError:
            log.warning("drain took longer than %gs; closing what is left", self.drain_timeout)
        except Exception:
            log.exception("drain failed; shutting down anyway")
        finally:
            self.should_exit = True

    def run(self) -> None:
        """Serve on a uvloop event loop, SIGTERM and SIGINT draining, until done."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.serve(signals=True))


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
    settings: ServerSettings | None = None,
    log_format: str = "text",
) -> int:
    """Run a hub until a signal drains it; returns the exit status.

    ``settings`` with ``tls_cert`` and ``tls_key`` serve TLS: HTTP/2
    (:mod:`hubbub.server.http2`) to clients that choose ``h2`` by ALPN,
    HTTP/1.1 and WebSocket to the others.

    Raises:
        ValueError: ``store`` names no known engine.
        OSError: the store's directory cannot be made.
        Unavailable: the store cannot be opened.
    """
    # JSON logs come with request ids (hubbub.transports.requestid says why).
    app = create_app(store, config, request_ids=log_format == "json")
    settings = replace(from_config(config.server, settings), host=host, port=port,
                       drain_timeout=drain_timeout,
                       ws_max_size=config.max_message_size + WS_FRAME_OVERHEAD)
    scheme = "https" if settings.tls_cert else "http"
    redact_logs()

    def listening(address: str) -> None:
        line = f"hubbub listening on {scheme}://{address} (store: {store})"
        if announce is None:
            print(line, flush=True)
        else:
            announce(line)

    if access_log:
        logging.getLogger("hubbub.access").setLevel(logging.INFO)
    server = HubServer(app, settings, app.state.hub, on_listening=listening)
    server.tune_gc = True
    server.run()
    if (exc := server.startup_error) is not None:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise Unavailable(f"{exc.message} ({store}){cause}") from exc
    return 1 if server.forced or server.failed else 0


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log hubbub's own records to stderr at ``level``, as ``text`` or ``json``
    (:mod:`hubbub.server.logs`)."""
    from .logs import configure

    configure(level, fmt)


#: The loggers whose records ``hubbub serve`` writes (the access log among them).
LOGGERS = ("", "hubbub", "hubbub.access")


def redact_logs() -> None:
    """Redact tokens from every line the process logs (:mod:`hubbub.protocol.redact`):
    on the handlers of :data:`LOGGERS`, which see their children's records too,
    and on the loggers themselves."""
    redactor = RedactTokens()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for where in (logger, *logger.handlers):
            if not any(isinstance(f, RedactTokens) for f in where.filters):
                where.addFilter(redactor)


__all__ = [
    "GC_THRESHOLDS", "HubServer", "configure_logging", "is_loopback", "redact_logs", "serve",
    "tune_gc",
]
