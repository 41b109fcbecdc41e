"""A minimal, fast OpenAI-compatible upstream: canned JSON and server-sent events.

Raw asyncio (uvloop when installed), HTTP/1.1 keep-alive, no framework, so that the
gateway in front of it, not the engine, is what a benchmark measures. Tests use it
as an engine they can slow down or kill (``SIGKILL`` mid-stream).

    python -m bench.fake_engine --port 38010 [--first-byte-delay S] [--token-interval S]

Each request can override the defaults with headers (the gateway forwards them):
``x-fake-first-byte-delay``, ``x-fake-token-interval`` (seconds) and
``x-fake-status`` (answer with that HTTP status). A streamed answer has one event per
token (``max_tokens``, default 16), then a usage event and ``[DONE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

MODELS = json.dumps({"object": "list", "data": [
    {"id": "tiny-llama", "object": "model", "owned_by": "fake"}]}).encode()
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


def _completion(route: bytes, tokens: int) -> bytes:
    usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
    if route == b"/v1/embeddings":
        return json.dumps({"object": "list", "data": [{"embedding": [0.1] * 8, "index": 0}],
                           "usage": usage}).encode()
    text = "x" * tokens
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
              if route == b"/v1/chat/completions" else {"index": 0, "text": text, "finish_reason": "length"})
    return json.dumps({"id": "cmpl-fake", "object": "chat.completion", "created": 0,
                       "model": "tiny-llama", "choices": [choice], "usage": usage}).encode()


_TOKEN_EVENT = b'data: {"id":"cmpl-fake","object":"chat.completion.chunk","model":"tiny-llama",' \
               b'"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
_CHUNK = b"%x\r\n%s\r\n"


def _usage_event(tokens: int) -> bytes:
    return (b'data: {"id":"cmpl-fake","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":'
            + str(tokens).encode() + b'}}\n\ndata: [DONE]\n\n')


class Engine:
    def __init__(self, first_byte_delay: float, token_interval: float) -> None:
        self.first_byte_delay, self.token_interval = first_byte_delay, token_interval

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, header_block = head.partition(b"\r\n")
                method, path, _ = request_line.split(b" ", 2)
                headers = {}
                for line in header_block.split(b"\r\n"):
                    name, sep, value = line.partition(b":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                body = await reader.readexactly(length) if length else b""
                await self.answer(method, path.split(b"?")[0], headers, body, writer)
                if headers.get(b"connection", b"").lower() == b"close":
                    break
        writer.close()

    async def answer(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        first_delay = float(headers.get(b"x-fake-first-byte-delay", self.first_byte_delay))
        interval = float(headers.get(b"x-fake-token-interval", self.token_interval))
        status = int(headers.get(b"x-fake-status", b"200"))
        if path == b"/health":
            return self.send(writer, 200, b"", b"application/json")
        if path == b"/v1/models":
            return self.send(writer, 200, MODELS, b"application/json")
        if method != b"POST" or path not in (b"/v1/completions", b"/v1/chat/completions",
                                             b"/v1/embeddings"):
            return self.send(writer, 404, b'{"error":{"message":"not found"}}', b"application/json")
        try:
            request = json.loads(body)
            tokens = int(request.get("max_tokens") or 16)
            stream = request.get("stream") is True
        except (ValueError, AttributeError, TypeError):
            return self.send(writer, 400, b'{"error":{"message":"bad request"}}', b"application/json")
        if first_delay:
            await asyncio.sleep(first_delay)
        if status != 200:
            return self.send(writer, status, b'{"error":{"message":"scripted failure"}}', b"application/json")
        if not stream:
            return self.send(writer, 200, _completion(path, tokens), b"application/json")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for _ in range(tokens):
            writer.write(_CHUNK % (len(_TOKEN_EVENT), _TOKEN_EVENT))
            if interval:
                await writer.drain()
                await asyncio.sleep(interval)
        tail = _usage_event(tokens)
        writer.write(_CHUNK % (len(tail), tail) + b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def send(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: bytes) -> None:
        writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
            status, _REASONS.get(status, b"Status"), ctype, len(body), body))


async def serve(port: int, first_byte_delay: float = 0.0, token_interval: float = 0.0,
                host: str = "127.0.0.1") -> None:
    engine = Engine(first_byte_delay, token_interval)
    server = await asyncio.start_server(engine.handle, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake engine on http://{host}:{port} (started {time.time():.3f})", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_engine")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-byte-delay", type=float, default=0.0)
    parser.add_argument("--token-interval", type=float, default=0.0)
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio event loop")
    args = parser.parse_args(argv)
    runner = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(serve(args.port, args.first_byte_delay, args.token_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
