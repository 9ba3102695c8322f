"""Transports: thin adapters from HTTP, SSE and WebSocket to the hub core."""
