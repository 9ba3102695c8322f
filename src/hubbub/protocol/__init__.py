"""The pure parts of hubbub: no asyncio, no I/O, no clock of their own.

Cursors, topic names and patterns, leases, job states, the tus headers, the
message shape and its wire codecs (JSON, MessagePack, RFC 6455 frames), the
status table and the error tree. Every other layer uses them; they use
nothing of hubbub's but each other.
"""
