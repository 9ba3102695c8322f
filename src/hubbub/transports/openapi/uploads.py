"""The tus upload door (``/v1/uploads/``; docs/uploads.md).
"""

from __future__ import annotations

from typing import Any

from .parts import header_param, headers_of, ok, problems

_UINT = {"type": "integer", "minimum": 0}
_TUS = header_param("Tus-Resumable", "the protocol version", {"type": "string", "const": "1.0.0"}, True)
_OFFSET_STREAM = {"application/offset+octet-stream": {"schema": {
    "type": "string", "format": "binary"}}}
_UPLOAD_ID = {"name": "id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_CHECKSUM = header_param("Upload-Checksum", "ALGORITHM BASE64-DIGEST of the body; sha1, md5, sha256, "
                                  "sha512")
_OPTIONS = {"options": {
    "summary": "tus capabilities (no Tus-Resumable needed)",
    "responses": {"204": {"description": "Version, extensions and limits", "headers": headers_of(
        Tus_Version="1.0.0", Tus_Extension="creation, creation-with-upload, "
        "creation-defer-length, termination, checksum, expiration",
        Tus_Max_Size="largest upload in bytes ([uploads] max_size)",
        Tus_Checksum_Algorithm="sha1,md5,sha256,sha512")}}}}

PATHS: dict[str, Any] = {
    path: {**_OPTIONS, "post": {
        "summary": "Create a tus upload (creation, creation-with-upload, creation-defer-length)",
        "description": "See docs/uploads.md. A body (sent as application/offset+octet-stream) "
                       "is the upload's first bytes. Metadata key job names a job queue to "
                       "start on completion, if [uploads] jobs allows it. Progress is the "
                       "topic uploads.{id}.",
        "parameters": [
            _TUS, header_param("Upload-Length", "the upload's size in bytes", _UINT),
            header_param("Upload-Defer-Length", "1: the size is given by a later PATCH",
               {"type": "string", "const": "1"}),
            header_param("Upload-Metadata", "comma-separated KEY BASE64-VALUE pairs"), _CHECKSUM],
        "requestBody": {"required": False, "content": _OFFSET_STREAM},
        "responses": {"201": ok(description="Created", headers=headers_of(
            Location="/v1/uploads/{id} (under the mount prefix, if any)",
            Upload_Offset="bytes stored (creation-with-upload)",
            Upload_Expires="when the unfinished upload expires (HTTP-date)")),
            **problems(400, 412, 413, 415, 460, 503)}}}
    for path in ("/v1/uploads/", "/v1/uploads")
}
PATHS["/v1/uploads/{id}"] = {
    "parameters": [_UPLOAD_ID],
    **_OPTIONS,
    "head": {
        "summary": "Where a tus upload stands",
        "parameters": [_TUS],
        "responses": {"200": ok(description="The upload", headers=headers_of(
            Upload_Offset="bytes stored", Upload_Length="the size, once known",
            Upload_Defer_Length="1 while the size is not known",
            Upload_Metadata="as given at creation", Upload_Expires="HTTP-date, if unfinished")),
            **problems(404, 410, 412)}},
    "patch": {
        "summary": "Append bytes to a tus upload at Upload-Offset",
        "parameters": [
            _TUS, header_param("Upload-Offset", "must equal the upload's offset", _UINT, True),
            header_param("Upload-Length", "the size, if it was deferred", _UINT), _CHECKSUM],
        "requestBody": {"required": True, "content": _OFFSET_STREAM},
        "responses": {"204": ok(description="Stored", headers=headers_of(
            Upload_Offset="the new offset", Upload_Expires="HTTP-date, if unfinished")),
            **problems(400, 404, 409, 410, 412, 413, 415, 423, 460, 503)}},
    "delete": {
        "summary": "Remove a tus upload and its bytes (termination)",
        "parameters": [_TUS],
        "responses": {"204": ok(description="Removed"), **problems(404, 410, 412, 423)}},
    "get": {
        "summary": "The bytes of a completed upload (not part of tus)",
        "responses": {"200": ok(description="The file", content={
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}),
            **problems(404, 409, 410)}},
    "post": {
        "summary": "PATCH or DELETE for clients that cannot send them",
        "parameters": [_TUS, header_param("X-HTTP-Method-Override", "the method meant",
                                {"type": "string", "enum": ["PATCH", "DELETE"]}, True)],
        "requestBody": {"required": False, "content": _OFFSET_STREAM},
        "responses": {"204": ok(description="Done as PATCH or DELETE would"),
                      **problems(400, 404, 409, 410, 412, 413, 415, 423, 460)}},
}


__all__ = ["PATHS"]
