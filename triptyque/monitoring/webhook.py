"""A local Alertmanager receiver: each notification becomes one JSON line in a file.

    python -m triptyque.monitoring.webhook --host 127.0.0.1 --port P --out FILE

``POST /alerts`` appends the notification body (Alertmanager's webhook payload,
unchanged) as one line and answers 200; anything that is not a JSON object gets
400 and is not written. ``GET /healthz`` answers 200 once the app is serving, for
whoever starts it and waits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(out: Path) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
        app.state.lock = asyncio.Lock()
        yield

    async def receive(request: Request) -> JSONResponse:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        line = json.dumps(payload, separators=(",", ":"), sort_keys=True) + "\n"
        async with request.app.state.lock:
            with out.open("a", encoding="utf-8") as stream:
                stream.write(line)
        return JSONResponse({"status": "stored"})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/alerts", receive, methods=["POST"]),
                Route("/healthz", healthz, methods=["GET"])],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triptyque.monitoring.webhook",
                                     description="Append Alertmanager notifications to a file.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.out), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
