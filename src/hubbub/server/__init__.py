"""The I/O layer that ``hubbub serve`` runs: sockets, HTTP/1.1 and WebSocket
protocols of hubbub's own (on asyncio, ``httptools`` and RFC 6455), the
process's signals and its drain. The doors (:mod:`hubbub.transports`) never
import it; they reach what it offers through ASGI scope extensions."""

from .run import GC_THRESHOLDS, HubServer, configure_logging, is_loopback, serve, tune_gc
from .settings import ServerSettings

__all__ = ["GC_THRESHOLDS", "HubServer", "ServerSettings", "configure_logging", "is_loopback",
           "serve", "tune_gc"]
