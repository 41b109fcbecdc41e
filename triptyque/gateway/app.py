"""The gateway application: ``create_app(settings)`` builds it and routes requests.

The concepts live in their own modules: ``admission`` (keys, limits, body checks),
``proxy`` and ``stream`` (the engine request and the answer), ``accounting`` (metrics
and usage), ``admin`` (kill, resume, status, readiness), ``killswitch`` with its
stores; ``assembly`` wires one gateway, ``middleware`` gives each request an id. This
module holds only the app factory and the routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from triptyque.gateway.assembly import Gateway, build_gateway
from triptyque.gateway.errors import error_response
from triptyque.gateway.middleware import RequestId
from triptyque.gateway.openapi import OPENAPI
from triptyque.gateway.proxy import PROXIED
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.stream import ProxyStream


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _proxy(request: Request) -> Response | ProxyStream:
    return await _gateway(request).proxy.handle(request)


async def _admin(request: Request) -> Response:
    return await _gateway(request).admin.handle(request)


async def _readyz(request: Request) -> Response:
    return await _gateway(request).admin.readyz(request)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(_gateway(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "No such route." if status == 404 else "Method not allowed on this route."
    return error_response(status, message, "not_found" if status == 404 else "method_not_allowed",
                          request_id=getattr(request.state, "request_id", ""))


# What the metrics listener answers besides /metrics: its own liveness, for a probe on that port.
METRICS_LISTENER_PATHS = frozenset({"/metrics", "/healthz"})


class MetricsListener:
    """With ``metrics_port`` set the two listeners serve apart: the metrics port answers only
    ``METRICS_LISTENER_PATHS``, the API port (the one behind the load balancer) never ``/metrics``.

    Both listeners are sockets of one server; a request's listener is the local address it
    arrived on (the ASGI ``server`` field)."""

    def __init__(self, app: ASGIApp, metrics_port: int) -> None:
        self.app, self.metrics_port = app, metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server") or ("", 0)
            on_metrics_port = server[1] == self.metrics_port
            path = scope.get("path", "")
            if (path not in METRICS_LISTENER_PATHS) if on_metrics_port else path == "/metrics":
                rid = scope.get("state", {}).get("request_id", "")
                await error_response(404, "No such route.", "not_found", request_id=rid)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: GatewaySettings, **gateway_options: Any) -> Starlette:
    """Build the ASGI app; ``gateway_options`` go to ``build_gateway`` (tests pass a transport)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = build_gateway(settings, **gateway_options)
        await gateway.start()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.close()

    routes = [Route(path, _proxy, methods=["GET"] if path == "/v1/models" else ["POST"]) for path in PROXIED]
    routes += [
        Route("/admin/kill", _admin, methods=["POST"]),
        Route("/admin/resume", _admin, methods=["POST"]),
        Route("/admin/status", _admin, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_found})
    # A redirect to the slash-less path would echo the client's Host header into Location.
    app.router.redirect_slashes = False
    if settings.metrics_port is not None:
        app.add_middleware(MetricsListener, metrics_port=settings.metrics_port)
    app.add_middleware(RequestId)
    return app
