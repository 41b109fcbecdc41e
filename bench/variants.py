"""What each library choice is worth: the same gateway served four ways, side by side.

    python -m bench.variants [--rounds N]

Against the fast fake engine (the gateway is the bottleneck), one gateway per variant:

- ``auto``: as deployed (uvicorn picks uvloop and httptools when installed; aiohttp to the engine);
- ``asyncio+h11``: uvicorn's pure-Python event loop and HTTP parser;
- ``httpx-pool``: httpx's own connection pool (httpcore, h11) to the engine instead of aiohttp;
- ``asyncio+h11+httpx-pool``: none of the C-accelerated libraries.

uvloop and httptools come with ``uvicorn[standard]``; in this repository they arrive
only through vLLM's dependencies, so a gateway installed without vLLM runs as
``asyncio+h11`` unless its own dependencies name them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

from bench.overhead import Load, Side, measure, rows
from bench.procs import PortPool, Processes, gateway_settings
from bench.report import table
from triptyque.gateway.settings import GatewaySettings

VARIANTS = {
    "auto": ("auto", "auto", False),
    "asyncio+h11": ("asyncio", "h11", False),
    "httpx-pool": ("auto", "auto", True),
    "asyncio+h11+httpx-pool": ("asyncio", "h11", True),
}


def serve(variant: str, settings_path: Path) -> None:
    import uvicorn

    from triptyque.gateway import logs
    from triptyque.gateway.app import create_app

    loop, http, httpx_pool = VARIANTS[variant]
    settings = GatewaySettings.model_validate_json(settings_path.read_bytes())
    logs.configure(settings.log_json)
    options = {"transport": httpx.AsyncHTTPTransport(limits=httpx.Limits(
        max_connections=None, max_keepalive_connections=256))} if httpx_pool else {}
    uvicorn.run(create_app(settings, **options), host=settings.host, port=settings.port, log_config=None,
                access_log=False, server_header=False, loop=loop, http=http)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.variants")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.settings)
        return 0
    ports = PortPool(range(38000, 38050))
    with Processes(Path(tempfile.mkdtemp(prefix="triptyque-variants-"))) as procs:
        engine = ports.take()
        procs.fake_engine(engine)
        sides = [Side("direct", engine)]
        for variant in VARIANTS:
            port = ports.take()
            settings = gateway_settings(port, engine, procs.workdir / f"state-{variant}")
            path = procs.workdir / f"{variant}.json"
            path.write_text(settings.model_dump_json())
            proc = procs.serve(variant, [sys.executable, "-m", "bench.variants", "--serve", variant,
                                          "--settings", str(path)], {"PYTHONPATH": str(Path.cwd())},
                               Path.cwd(), f"http://127.0.0.1:{port}/healthz", 20)
            sides.append(Side(variant, port, proc.pid))
        load = Load(rounds=args.rounds, latency_requests=500, throughput_seconds=2.0)
        asyncio.run(measure(sides, load))
    out = []
    for side in sides[1:]:
        out += rows("fast fake engine", sides[0], side, gateway_bound=True)
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
