"""TLS for ``hubbub serve``: the server's context, and which protocol a
connection chose.

With ``--tls-cert`` and ``--tls-key`` (or ``[server] tls_cert`` and
``tls_key``) the server speaks TLS 1.2 or later and offers HTTP/2 by ALPN
(RFC 7301). RFC 9113 §3.2: "a client that makes a request to an "https" URI
uses TLS with the application-layer protocol negotiation (ALPN) extension
... The string "h2" identifies the protocol where HTTP/2 uses TLS". A client
that offers ``h2`` gets :class:`hubbub.server.http2.H2Protocol`; one that
offers only ``http/1.1``, or no ALPN at all, gets HTTP/1.1 (WebSocket
included) on the same port.

RFC 9113 §9.2 asks HTTP/2 over TLS for TLS 1.2 or later without
compression or renegotiation: the context refuses all three.
"""

from __future__ import annotations

import asyncio
import os
import ssl

from .settings import ServerSettings

#: What the server offers by ALPN, most preferred first.
ALPN = ["h2", "http/1.1"]


class TLSError(ValueError):
    """The TLS settings cannot be used; the message names the setting at fault."""


def server_context(settings: ServerSettings) -> ssl.SSLContext:
    """The TLS context of a server with ``settings.tls_cert`` and ``tls_key``.

    Args:
        settings: the server's settings; both TLS files must be set.

    Returns:
        A server context: TLS 1.2 or later, the certificate chain and key
        loaded, ALPN offering ``h2`` then ``http/1.1``.

    Raises:
        TLSError: a file is not set, missing, unreadable or not PEM, or the
            key does not match the certificate; the one-line message names
            the flag and the setting, for ``hubbub serve`` to print as is.
    """
    cert, key = settings.tls_cert, settings.tls_key
    if not cert or not key:
        raise TLSError("TLS needs both --tls-cert and --tls-key ([server] tls_cert, tls_key)")
    for path, flag in ((cert, "--tls-cert ([server] tls_cert)"),
                       (key, "--tls-key ([server] tls_key)")):
        if not os.path.isfile(path):
            raise TLSError(f"{flag}: no such file: {path}")
        if not os.access(path, os.R_OK):
            raise TLSError(f"{flag}: cannot read {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # RFC 9113 §9.2.1: "A deployment of HTTP/2 over TLS 1.2 MUST disable
    # renegotiation"; compression is off in every default context already.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(ALPN)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise TLSError(f"--tls-key ([server] tls_key): {key} is not the key of "
                           f"the certificate in {cert}") from None
        raise TLSError(f"--tls-cert/--tls-key ([server] tls_cert, tls_key): cannot load "
                       f"{cert} with {key}: {reason.lower().replace('_', ' ')}") from None
    return context


def alpn_protocol(transport: asyncio.BaseTransport) -> str | None:
    """The protocol a TLS connection chose by ALPN (``"h2"``,
    ``"http/1.1"``), or ``None``: no TLS, or the client offered none."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    protocol: str | None = ssl_object.selected_alpn_protocol()
    return protocol


__all__ = ["ALPN", "TLSError", "alpn_protocol", "server_context"]
