"""Ceiling of the HTTP publish scenario: a Starlette hello-world POST endpoint.

It reads the body and answers a small JSON document, as a publish does,
minus everything hubbub does in between.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def publish(request: Request) -> Response:
    await request.body()
    return JSONResponse({"ok": True}, status_code=201)


app = Starlette(routes=[Route("/publish", publish, methods=["POST"])])
