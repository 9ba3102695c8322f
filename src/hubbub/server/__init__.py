"""The I/O layer that ``hubbub serve`` runs: sockets, HTTP and WebSocket
protocols, the process's signals and its drain. The doors (:mod:`hubbub.transports`)
never import it; they reach what it offers through ASGI scope extensions."""

from .run import GC_THRESHOLDS, HubServer, configure_logging, is_loopback, serve, tune_gc

__all__ = ["GC_THRESHOLDS", "HubServer", "configure_logging", "is_loopback", "serve", "tune_gc"]
