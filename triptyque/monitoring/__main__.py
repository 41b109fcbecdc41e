"""``python -m triptyque.monitoring generate [--check]`` and ``capture {vllm,node,gateway}``.

generate   write monitoring/rules, alerts, tests and dashboards from the spec;
           with --check, write nothing and exit 1 if a checked-in file is stale
capture    start the real process, scrape it, and rewrite monitoring/metrics/<name>.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from triptyque.errors import TriptyqueError
from triptyque.monitoring import capture, config, generate, metrics
from triptyque.spec import DEFAULT_SPEC, load_spec


def _generate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, target=config.CHECKED_IN_TARGET)
    if args.check:
        stale = generate.stale(spec, args.root)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run: python -m triptyque.monitoring generate", file=sys.stderr)
        return 1 if stale else 0
    for path in generate.write(spec, args.root):
        print(path)
    return 0


def _capture(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, target="local")
    text = capture.CAPTURES[args.source](spec, args.port)
    path = metrics.write_list(args.root, args.source, metrics.parse_exposition(text))
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triptyque.monitoring")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="service spec file")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the checked-in monitoring files")
    gen.add_argument("--check", action="store_true", help="only report stale files")
    gen.set_defaults(run=_generate)
    cap = commands.add_parser("capture", help="record the metric names a real process exposes")
    cap.add_argument("source", choices=sorted(capture.CAPTURES))
    cap.add_argument("--port", type=int, default=28001, help="port for the started process")
    cap.set_defaults(run=_capture)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except TriptyqueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
