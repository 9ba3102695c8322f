"""The tus 1.0.0 door: resumable uploads under ``/v1/uploads/``.

Thin, as every door: headers are parsed by :mod:`hubbub.protocol.tus`, the work is
done by :class:`hubbub.core.uploads.Uploads`, errors are problem documents
(:mod:`hubbub.transports.problems`) that also carry ``Tus-Resumable``.

=======  ==========================  =============================================
method   path                        tus 1.0.0
=======  ==========================  =============================================
OPTIONS  ``/v1/uploads/``, ``/{id}``  204: ``Tus-Version``, ``Tus-Extension``,
                                     ``Tus-Max-Size``, ``Tus-Checksum-Algorithm``
POST     ``/v1/uploads/``            creation (``Upload-Length`` or
                                     ``Upload-Defer-Length: 1``, ``Upload-Metadata``),
                                     creation-with-upload (a body): 201, ``Location``
HEAD     ``/v1/uploads/{id}``        200: ``Upload-Offset``, ``Upload-Length``, ...
GET      ``/v1/uploads/{id}``        (not tus) a completed upload's bytes, as an
                                     attachment (:func:`download_headers`); 409 before
PATCH    ``/v1/uploads/{id}``        204: the new ``Upload-Offset``
DELETE   ``/v1/uploads/{id}``        termination: 204
=======  ==========================  =============================================

``POST /v1/uploads/{id}`` with ``X-HTTP-Method-Override: PATCH`` (or ``DELETE``)
does the same as the named method, for clients behind proxies that refuse them.

Statuses: 400 malformed header, 404 unknown upload, 409 ``Upload-Offset`` is
not the upload's offset (the problem's ``offset`` says what is), 410 expired,
412 a ``Tus-Resumable`` other than 1.0.0 (or none), 413 over ``Tus-Max-Size``
or the upload's length, 415 a body not sent as
``application/offset+octet-stream``, 423 another request is writing the
upload (tus clients retry it), 460 the body does not match ``Upload-Checksum``.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from ..config import UPLOADS
from ..core.jobs import queue_topic
from ..core.uploads import JOB_KEY
from ..core.uploads_record import Upload
from ..protocol import tus
from ..protocol.errors import (
    Conflict,
    HubbubError,
    InvalidRequest,
    PreconditionFailed,
    UnsupportedMediaType,
)
from .auth import Action, authorize, principal_of
from .httpkit import hub_of
from .problems import problem_from

PREFIX = "/v1/uploads/"
OCTET = "application/octet-stream"
_MEDIA_RE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")
#: Response headers a browser's tus client must be allowed to read (CORS).
EXPOSE_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, "
    "Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
    "Tus-Checksum-Algorithm"
)
_ID_RE = re.compile(r"[0-9a-f]{32}")
#: Request headers a browser's tus client sends (for a CORS preflight).
ALLOW_HEADERS = (
    "Content-Type, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, "
    "Upload-Checksum, Upload-Concat, Tus-Resumable, X-HTTP-Method-Override, "
    "X-Requested-With, Authorization"
)
_COMMON = {"Tus-Resumable": tus.VERSION, "Access-Control-Expose-Headers": EXPOSE_HEADERS}

Handler = Callable[[Request], Awaitable[Response]]


def _tus(handler: Handler, *, versioned: bool = True) -> Handler:
    """Check ``Tus-Resumable`` (unless not ``versioned``), and put the tus
    headers on every answer, errors too."""

    async def endpoint(request: Request) -> Response:
        try:
            # tus 1.0.0: "If the Client requests a version which the Server does not
            # support, the Server MUST respond with 412 Precondition Failed and MUST
            # include the Tus-Version header".
            version = request.headers.get("tus-resumable")
            if versioned and version != tus.VERSION:
                raise PreconditionFailed(
                    f"Tus-Resumable must be {tus.VERSION}", field="Tus-Resumable")
            response = await handler(request)
        except HubbubError as exc:
            response = problem_from(exc, instance=request.url.path)
            if isinstance(exc, PreconditionFailed):
                response.headers["Tus-Version"] = tus.VERSION
        response.headers.update(_COMMON)
        return response

    return endpoint


def _expires(up: Upload) -> dict[str, str]:
    """``Upload-Expires`` (expiration extension), an RFC 9110 HTTP-date."""
    if up.expires is None or up.done:
        return {}
    return {"Upload-Expires": email.utils.formatdate(up.expires / 1000, usegmt=True)}


def _location(request: Request, upload_id: str) -> str:
    # An absolute path: right behind a proxy (no host or scheme to get wrong),
    # and under a mount prefix (root_path); tus clients resolve it against the
    # endpoint URL.
    return f"{request.scope.get('root_path', '')}{PREFIX}{upload_id}"


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that hangs up ends it with InvalidRequest."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise InvalidRequest("client went away before the body ended", field="body") from None


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _check_stream_type(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != tus.OFFSET_STREAM:
        raise UnsupportedMediaType(f"the body must be sent as {tus.OFFSET_STREAM}",
                                   field="Content-Type")


def _declared(request: Request) -> int | None:
    return tus.parse_uint(request.headers.get("content-length"), header="Content-Length")


async def options(request: Request) -> Response:
    """The hub's tus capabilities (no ``Tus-Resumable`` needed, tus 1.0.0 §OPTIONS)."""
    config = hub_of(request).config.uploads
    headers = {
        **_COMMON,
        "Tus-Version": tus.VERSION,
        "Tus-Extension": ",".join(tus.EXTENSIONS),
        "Tus-Max-Size": str(config.max_size),
        "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
        "Access-Control-Allow-Methods": "POST, HEAD, PATCH, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": "86400",
    }
    return Response(status_code=204, headers=headers)


@_tus
async def create(request: Request) -> Response:
    uploads = hub_of(request).uploads
    h = request.headers
    length = tus.parse_uint(h.get("upload-length"), header="Upload-Length")
    deferred = tus.parse_defer_length(h.get("upload-defer-length"))
    if (length is None) == (not deferred):
        raise InvalidRequest("give either Upload-Length or Upload-Defer-Length: 1",
                             field="Upload-Length")
    metadata = h.get("upload-metadata")
    # Refuse malformed metadata before anything is made.
    _authorize_create(request, tus.parse_metadata(metadata))
    with_body = _has_body(request)
    checksum = None
    if with_body:  # creation-with-upload
        _check_stream_type(request)
        checksum = tus.parse_checksum(h.get("upload-checksum"))
    principal = principal_of(request)
    owner = principal.subject if hub_of(request).auth.enabled else None
    up = await uploads.create(length, metadata, owner=owner)
    if with_body:
        try:
            up = await uploads.append(up.id, 0, _body(request), checksum=checksum,
                                      declared=_declared(request))
        except BaseException:
            # Nothing half-made: the client never learnt the upload's URL.
            with contextlib.suppress(HubbubError):
                await uploads.terminate(up.id)
            raise
    headers = {"Location": _location(request, up.id), **_expires(up)}
    if with_body:
        headers["Upload-Offset"] = str(up.offset)
    return Response(status_code=201, headers=headers)


def _authorize_create(request: Request, metadata: dict[str, bytes]) -> None:
    """Creating an upload publishes to a new ``uploads.<id>`` topic, so it takes a
    publish grant covering ``uploads.*``; one naming a job queue also submits to it."""
    if authorize(request, Action.PUBLISH, [f"{UPLOADS}.*"]).admin:
        return  # the core judges the queue's name
    queue = metadata.get(JOB_KEY)
    if queue is not None:
        authorize(request, Action.PUBLISH,
                  [queue_topic(queue.decode(errors="replace"))], field="Upload-Metadata")


def _authorize_id(request: Request, action: Action) -> None:
    """Reading an upload is subscribing to its topic, writing it publishing there.
    An id the hub could not have made is left to the core (404)."""
    upload_id = request.path_params["id"]
    if _ID_RE.fullmatch(upload_id) is not None:
        authorize(request, action, [f"{UPLOADS}.{upload_id}"], field="id")


@_tus
async def head(request: Request) -> Response:
    _authorize_id(request, Action.SUBSCRIBE)
    up = await hub_of(request).uploads.status(request.path_params["id"])
    headers = {"Upload-Offset": str(up.offset), "Cache-Control": "no-store", **_expires(up)}
    if up.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(up.length)
    if up.metadata_header:
        headers["Upload-Metadata"] = up.metadata_header
    return Response(status_code=200, headers=headers)


async def _patch(request: Request) -> Response:
    _authorize_id(request, Action.PUBLISH)
    h = request.headers
    _check_stream_type(request)
    offset = tus.parse_uint(h.get("upload-offset"), header="Upload-Offset")
    if offset is None:
        raise InvalidRequest("Upload-Offset is required", field="Upload-Offset")
    up = await hub_of(request).uploads.append(
        request.path_params["id"], offset, _body(request),
        checksum=tus.parse_checksum(h.get("upload-checksum")),
        length=tus.parse_uint(h.get("upload-length"), header="Upload-Length"),
        declared=_declared(request),
    )
    return Response(status_code=204, headers={"Upload-Offset": str(up.offset), **_expires(up)})


async def download(request: Request) -> Response:
    """``GET /v1/uploads/{id}``: the bytes of a completed upload (not part of tus)."""
    _authorize_id(request, Action.SUBSCRIBE)
    uploads = hub_of(request).uploads
    up = await uploads.get(request.path_params["id"])
    if not up.done:
        raise Conflict("the upload is not complete", field="id", offset=up.offset)
    name = up.metadata.get("filename", b"").decode(errors="replace")
    kind = up.metadata.get("filetype", b"").decode(errors="replace")
    return FileResponse(uploads.path(up.id), headers=download_headers(name),
                        media_type=kind if _MEDIA_RE.fullmatch(kind) else OCTET)


def download_headers(filename: str) -> dict[str, str]:
    """The headers that keep an upload from running as a page of the hub's origin.

    Anyone allowed to upload chooses the bytes and the ``filetype``: served
    inline, an HTML or SVG upload would be a script of the hub's origin
    (where the dashboard runs), so every download is an attachment
    (RFC 6266 §4.2), is never sniffed into another type, and is sandboxed
    should a browser render it anyway (CSP ``sandbox``: no scripts, a unique
    origin). ``filename`` (from the upload's metadata) is offered as the name
    to save under: an ASCII ``filename`` for every client, and ``filename*``
    (RFC 8187, UTF-8) when it has other characters.
    """
    disposition = "attachment"
    name = re.split(r"[/\\]", filename)[-1].strip()  # a name, never a path
    if name:
        fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
        disposition += f'; filename="{fallback}"'
        if fallback != name:
            disposition += "; filename*=UTF-8''" + quote(name, safe="!#$&+.^_`|~-")
    return {
        "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-cache",
    }


async def _delete(request: Request) -> Response:
    _authorize_id(request, Action.PUBLISH)
    await hub_of(request).uploads.terminate(request.path_params["id"])
    return Response(status_code=204)


patch = _tus(_patch)
delete = _tus(_delete)


@_tus
async def override(request: Request) -> Response:
    """``POST`` with ``X-HTTP-Method-Override: PATCH|DELETE`` (tus 1.0.0 §Headers)."""
    method = request.headers.get("x-http-method-override", "").strip().upper()
    if method == "PATCH":
        return await _patch(request)
    if method == "DELETE":
        return await _delete(request)
    raise InvalidRequest("POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE",
                         field="X-HTTP-Method-Override")


routes: list[BaseRoute] = [
    Route("/v1/uploads/", options, methods=["OPTIONS"]),
    Route("/v1/uploads/", create, methods=["POST"]),
    Route("/v1/uploads", options, methods=["OPTIONS"]),
    Route("/v1/uploads", create, methods=["POST"]),
    Route("/v1/uploads/{id}", options, methods=["OPTIONS"]),
    Route("/v1/uploads/{id}", head, methods=["HEAD"]),
    Route("/v1/uploads/{id}", _tus(download, versioned=False), methods=["GET"]),
    Route("/v1/uploads/{id}", patch, methods=["PATCH"]),
    Route("/v1/uploads/{id}", delete, methods=["DELETE"]),
    Route("/v1/uploads/{id}", override, methods=["POST"]),
]
