"""Peer: sse-starlette streaming a broadcaster channel (memory backend).

``GET /events`` follows the channel ``bench``; ``POST /publish`` publishes
the request body to it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from broadcaster import Broadcast
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

broadcast = Broadcast("memory://")


async def events(request: Request) -> Response:
    async def stream() -> AsyncIterator[dict[str, str]]:
        async with broadcast.subscribe("bench") as subscriber:
            async for event in subscriber:  # type: ignore[union-attr]
                if event is None:
                    return
                yield {"event": "message", "data": event.message}

    return EventSourceResponse(stream())


async def publish(request: Request) -> Response:
    await broadcast.publish("bench", (await request.body()).decode())
    return JSONResponse({"ok": True})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broadcast:
        yield


app = Starlette(routes=[Route("/events", events), Route("/publish", publish, methods=["POST"])],
                lifespan=lifespan)
