"""Run one gateway: ``python -m triptyque.gateway --settings FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from triptyque.gateway import logs
from triptyque.gateway.app import create_app
from triptyque.gateway.server import header_deadline_protocol
from triptyque.gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triptyque.gateway")
    parser.add_argument("--settings", type=Path, required=True, help="gateway settings JSON")
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.model_validate_json(args.settings.read_bytes())
    except FileNotFoundError:
        print(f"error: settings file {args.settings} not found", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"error: {args.settings}: {where}: {first['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.log_json)
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_config=None,
        access_log=False, timeout_graceful_shutdown=5, server_header=False,
        http=header_deadline_protocol(settings.limits.header_timeout_seconds,
                                      max_header_bytes=settings.limits.max_header_bytes,
                                      max_url_bytes=settings.limits.max_url_bytes),
    )
    sockets = [config.bind_socket()]
    if settings.metrics_port is not None:
        # The metrics listener: a second socket of the same server (same app, same registry);
        # the app tells the two apart by the address a request arrived on.
        config.port = settings.metrics_port
        sockets.append(config.bind_socket())
    uvicorn.Server(config).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
