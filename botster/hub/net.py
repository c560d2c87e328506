"""What the network primitives share: turning network failures into words a plugin author can
act on, and the hub's HTTP client sessions.

* ``reason(exc, timeout)`` says why a connection failed (refused, DNS, TLS, timed out) and
  ``shown(url)`` shows a URL in such a message without its user name and password.
* ``check_headers`` refuses header names and values that cannot go on the wire.
* ``LazySession`` is an aiohttp ``ClientSession`` made on first use and closed at hub shutdown,
  with the one client configuration: cookies are never stored (plugins share a session, so a
  jar would leak one plugin's login into another's requests) and proxy variables from the
  environment are ignored.

``http`` and ``websocket`` each keep a ``LazySession`` of their own rather than share one: a
session's connection pool counts open websockets, so sharing it would let long-lived
websockets starve every HTTP request.

Leaves to the primitives their own failures (HTTP redirects and bodies, websocket handshake
refusals), the ``"<function>: <url>: "`` prefix of their messages and their URL schemes.
"""

from __future__ import annotations

import errno
import os
import re
import ssl

import aiohttp
from yarl import URL

from botster.errors import ArgumentError
from botster.hub.context import HubContext

__all__ = ["LazySession", "check_headers", "os_reason", "reason", "shown"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 header field name


class LazySession:
    """An aiohttp ``ClientSession`` made on first use, inside the hub, and closed at shutdown.

    No total timeout: for a websocket it would cut the connection after that long. Callers
    bound each request themselves (a per-request ``ClientTimeout``, ``asyncio.timeout``).
    """

    def __init__(self, hub: HubContext) -> None:
        self._hub = hub
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session, made now if there is none (first use, or after the hub closed it)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._hub.on_close(self.close)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def check_headers(headers: dict[str, str] | None, arg: str) -> dict[str, str]:
    """A copy of `headers` (argument `arg`), once every name and value is safe to send."""
    for name, value in (headers or {}).items():
        if not _TOKEN.match(name):
            raise ArgumentError(f"{arg}: {name!r} is not a valid header name")
        if any(c in value for c in "\r\n\0"):
            raise ArgumentError(f"{arg}.{name}: header values cannot contain CR, LF or NUL")
    return dict(headers or {})


def shown(url: URL | str) -> str:
    """The URL as error messages show it: without user name and password."""
    if isinstance(url, str):
        try:
            url = URL(url)
        except ValueError:
            return url
    return str(url.with_user(None)) if url.user or url.password else str(url)


def os_reason(err: BaseException | None) -> str:
    """An OS error as words and its errno name: "connection refused (ECONNREFUSED)"."""
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0 and code in errno.errorcode:
        return f"{os.strerror(code).lower()} ({errno.errorcode[code]})"
    text = getattr(err, "strerror", None) or str(err)
    return text or type(err).__name__


def _ssl_text(err: BaseException | None) -> str:
    text = getattr(err, "verify_message", None) or getattr(err, "reason", None) or str(err)
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text))
    return text.replace("_", " ").lower() if text.isupper() else text


def reason(exc: BaseException, timeout: float) -> str:
    """Why a connection failed, in words a plugin author can act on.

    `timeout` is the limit the caller set, for "timed out after <timeout> s". Covers what any
    client meets (timeouts, DNS, refused connections, TLS); a primitive checks its own
    failures first and hands the rest to this.
    """
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {_ssl_text(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {_ssl_text(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host} ({os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {os_reason(exc.os_error)}"
    if isinstance(exc, (ssl.SSLError, ConnectionError)) or type(exc) is OSError:
        return os_reason(exc)
    return str(exc) or type(exc).__name__
