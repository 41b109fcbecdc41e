"""The connection to the engine: an httpx transport backed by aiohttp's client.

The gateway speaks httpx (requests, responses, error classes), so unit tests can put
``httpx.MockTransport`` in front of it. On the wire, httpx's own pool (httpcore over
anyio, h11 in pure Python) cost about three quarters of the gateway's CPU per
proxied request in ``bench/``; aiohttp parses HTTP in C and keeps a lean pool. When
aiohttp is not installed the gateway falls back to httpx's default transport.

aiohttp errors are translated into the httpx errors the gateway already handles:
connection refused or reset before an answer -> ``ConnectError``, a connect timeout ->
``ConnectTimeout``, an answer cut or malformed -> ``RemoteProtocolError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

try:
    import aiohttp
except ImportError:  # pragma: no cover - exercised only where aiohttp is absent
    aiohttp = None  # type: ignore[assignment]


def engine_transport(connect_timeout: float, max_keepalive: int = 256) -> httpx.AsyncBaseTransport:
    """The fastest transport available here (aiohttp), else httpx's default one."""
    if aiohttp is None:  # pragma: no cover
        return httpx.AsyncHTTPTransport(limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=max_keepalive))
    return AiohttpTransport(connect_timeout)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(f"engine answer cut: {exc}", request=self._request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("engine read timed out", request=self._request) from exc

    async def aclose(self) -> None:
        # A body not read to the end closes the connection, so the engine stops generating.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30,
                                         enable_cleanup_closed=False, ttl_dns_cache=None)
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        content: Any = request.content if request.method != "GET" else None
        try:
            response = await self._session.request(
                request.method, str(request.url), headers=headers, data=content,
                allow_redirects=False, compress=None, chunked=None,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ClientOSError) as exc:
            raise httpx.ConnectError(f"cannot reach the engine: {exc}", request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ConnectTimeout("engine connection timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(f"engine answer malformed: {exc}", request=request) from exc
        return httpx.Response(response.status, headers=list(response.raw_headers),
                              stream=_Body(response, request), request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
