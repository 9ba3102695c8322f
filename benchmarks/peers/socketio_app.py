"""Peer: python-socketio as an ASGI app under uvicorn, broadcasting to a room.

The conventions every fan-out peer follows (see ../loadgen/clients.mjs):
``join`` (with an ack) puts the client in a room; ``pub`` broadcasts its
payload as event ``m`` to the room ``bench``.
"""

import socketio

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[], transports=["websocket"])
app = socketio.ASGIApp(sio)


@sio.on("join")
async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return "ok"


@sio.on("pub")
async def pub(sid: str, data: object) -> None:
    await sio.emit("m", data, room="bench")
