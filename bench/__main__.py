"""Run the gateway benchmarks and print one table of ratios: ``python -m bench`` (``make bench``).

Everything runs on this machine (loopback ports 38000-38049, and the edge test fleet's
veth links) and is stopped at the end:

- overhead against a fast fake engine (the gateway is the bottleneck) and against the
  real vLLM CPU engine (the engine is the bottleneck), side by side in one run;
- the kill switch on one gateway (fake engine, then vLLM), on N gateways at once, and
  on the edge test fleet (``bench/edge_fleet.py``: nspawn nodes converged by the edge
  target; needs root, skipped with a row saying so otherwise);
- overload at ten times the concurrency limit;
- the edge target at scale (``bench/edge_scale.py``: first converge, idempotent converge,
  rolling upgrade, fleet kill and resume on 2 to 32 fake-engine nodes of the test fleet, sites
  offline, Ansible settings side by side, a fitted model and its 100/500/1,000-site
  predictions, written to burden/edge-scale.json; needs root, about an hour).

``--baseline COMMIT`` adds the gateway as committed at COMMIT (``git archive``) to the
overhead runs, so a change is measured against what it replaces in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bench import edge_fleet, edge_scale, killswitch, overhead, overload
from bench.client import percentile
from bench.procs import PortPool, Processes, baseline_tree, gateway_settings
from bench.report import Row, table

PORTS = PortPool(range(38000, 38050))  # tests/resilience use 38050-38099
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def bench_overhead(procs: Processes, engine: str, load: overhead.Load, baseline: Path | None) -> list[Row]:
    upstream = PORTS.take()
    if engine == "vllm":
        procs.vllm(upstream)
    else:
        procs.fake_engine(upstream)
    sides = [overhead.Side("direct", upstream)]
    port = PORTS.take()
    proc = procs.gateway(gateway_settings(port, upstream, procs.workdir / f"state-{engine}"),
                         f"gateway-{engine}")
    sides.append(overhead.Side("gateway", port, proc.pid))
    if baseline is not None:
        port = PORTS.take()
        proc = procs.gateway(gateway_settings(port, upstream, procs.workdir / f"base-{engine}"),
                             f"baseline-{engine}", source=baseline)
        sides.append(overhead.Side("baseline gateway", port, proc.pid))
    _run(overhead.measure(sides, load))
    name = "vLLM CPU engine" if engine == "vllm" else "fast fake engine"
    out: list[Row] = []
    for side in sides[1:]:
        out += overhead.rows(name, sides[0], side, gateway_bound=engine == "fake")
    for name in (f"gateway-{engine}", f"baseline-{engine}", "vllm" if engine == "vllm" else "fake-engine"):
        procs.stop(name)
    return out


def bench_killswitch(procs: Processes, fleet: int, cycles: int) -> list[Row]:
    engine = PORTS.take()
    procs.fake_engine(engine, "kill-engine")
    ports = [PORTS.take() for _ in range(fleet)]
    for port in ports:
        procs.gateway(gateway_settings(port, engine, procs.workdir / f"kill-state-{port}"),
                      f"kill-gateway-{port}")
    gateways = [killswitch.loopback(port) for port in ports]
    out: list[Row] = []
    for label, members, limit in (("kill switch, 1 gateway", gateways[:1], 0.1),
                                  (f"kill switch, {fleet} gateways on loopback", gateways, 1.0)):
        runs = [_run(killswitch.cycle(members, streams=8 if len(members) == 1 else 4)) for _ in range(cycles)]
        out += killswitch.rows(label, runs, limit)
    for port in ports:
        procs.stop(f"kill-gateway-{port}")
    procs.stop("kill-engine")
    return out


def bench_killswitch_vllm(procs: Processes, cycles: int) -> list[Row]:
    """One gateway in front of the real CPU engine, answering long real streams."""
    upstream, port = PORTS.take(), PORTS.take()
    procs.vllm(upstream, "vllm-kill")
    procs.gateway(gateway_settings(port, upstream, procs.workdir / "kill-vllm-state"), "gateway-kill-vllm")
    stream = {**killswitch.FAKE_STREAM, "max_tokens": 224, "ignore_eos": True}
    gateway = killswitch.Gateway("gateway-vllm", "127.0.0.1", port, stream=stream, stream_headers={})
    runs = [_run(killswitch.cycle([gateway], streams=4)) for _ in range(cycles)]
    procs.stop("gateway-kill-vllm")
    procs.stop("vllm-kill")
    return killswitch.rows(f"kill switch, 1 gateway, vLLM CPU engine ({procs.vllm_bind})", runs, 0.1)


def bench_overload(procs: Processes, seconds: float) -> list[Row]:
    """Three runs: the target one with the gateway on a CPU of its own (CPU 0) and the load
    generator and the engine on the other, as when clients come from other machines; then,
    reported only, clients that retry at once, and everything sharing both CPUs."""
    limit = 16
    out: list[Row] = []
    for backoff, how, isolated in ((0.1, "429 -> wait 100 ms", True), (0.0, "429 -> retry at once", True),
                                   (0.1, "429 -> wait 100 ms, all on 2 shared CPUs", False)):
        engine, port = PORTS.take(), PORTS.take()
        saved = dict(procs.pinned)
        mine = os.sched_getaffinity(0)
        if isolated:
            procs.pinned.update({"overload": {0}, "slow": {1}})
            os.sched_setaffinity(0, {1})
        try:
            procs.fake_engine(engine, "slow-engine", first_byte_delay=overload.ENGINE_DELAY)
            gateway = procs.gateway(gateway_settings(port, engine, procs.workdir / "overload-state",
                                                     max_concurrent_requests=limit), "overload-gateway")
            result = _run(overload.overload(port, gateway.pid, limit, seconds, backoff))
        finally:
            procs.pinned.clear()
            procs.pinned.update(saved)
            os.sched_setaffinity(0, mine)
            procs.stop("overload-gateway")
            procs.stop("slow-engine")
        where = "gateway on its own CPU" if isolated else "shared CPUs"
        out += _overload_rows(result, f"overload x10 ({limit * 10} clients, {how}; {where})"
                              if isolated else f"overload x10 ({limit * 10} clients, {how})", limit,
                              gated=backoff > 0 and isolated)
    return out


def _overload_rows(result: overload.Overload, label: str, limit: int, gated: bool) -> list[Row]:
    ms, mib = 1000.0, 1 / (1 << 20)
    ref99 = percentile(result.reference.latencies(), 99) * ms
    worst99 = max(percentile(run.latencies(), 99) for run in result.loaded) * ms
    refusals = [lat for run in result.loaded for lat in run.latencies(429)]
    refusal99 = percentile(refusals, 99) * ms
    server_errors = sum(n for run in [*result.loaded, result.reference]
                        for status, n in run.by_status().items() if status >= 500)
    transport_errors = sum(run.errors for run in [*result.loaded, result.reference])
    admitted = statistics.median(run.throughput() for run in result.loaded)
    refused = statistics.median(run.throughput(429) for run in result.loaded)
    growth = (result.rss_after_rounds[-1] - result.rss_after_rounds[0]) * mib
    prompt = overload.ENGINE_DELAY * ms  # a refusal must come back before a served answer would
    return [
        Row(label, f"p99 latency of admitted requests (reference: {limit} clients)", ref99, worst99, "ms",
            worst99 / ref99, "ratio <= 2" if gated else "ratio <= 2 (reported)",
            worst99 / ref99 <= 2 if gated else None),
        Row(label, "admitted throughput", result.reference.throughput(), admitted, "rps",
            admitted / result.reference.throughput(), "reported", None),
        Row(label, "429 answers", float("nan"), refused, "rps", None, "reported", None),
        Row(label, "p99 latency of a 429", float("nan"), refusal99, "ms", None,
            f"< {prompt:.0f} ms" + ("" if gated else " (reported)"), refusal99 < prompt if gated else None),
        Row(label, "5xx answers / connection errors", float("nan"), server_errors + transport_errors, "",
            None, "0", server_errors + transport_errors == 0),
        Row(label, "gateway RSS: start -> peak", result.rss_start * mib, result.rss_peak * mib, "MiB",
            result.rss_peak / result.rss_start, "peak < start + 64 MiB",
            (result.rss_peak - result.rss_start) * mib < 64),
        Row(label, "gateway RSS growth between overload rounds", float("nan"), growth, "MiB", None,
            "< 8 MiB", growth < 8),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["overhead", "killswitch", "edge-fleet", "overload", "edge-scale"],
                        action="append", help="run only these parts (repeatable)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the real engine (about 40 s to start)")
    parser.add_argument("--baseline", metavar="COMMIT", help="also measure the gateway as of COMMIT")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisy)")
    parser.add_argument("--fleet", type=int, default=8, help="gateways for the fleet kill timing")
    parser.add_argument("--edge-nodes", type=int, default=2,
                        help="nodes of the edge test fleet for its kill timing (needs root; 0: skip)")
    parser.add_argument("--scale-sizes", type=int, nargs="+", default=list(edge_scale.SIZES),
                        help="fleet sizes of the edge scale curves (needs root)")
    parser.add_argument("--vllm-bind", choices=["nobind", "auto"], default="nobind",
                        help="vLLM's CPU thread binding (VLLM_CPU_OMP_THREADS_BIND); the targets use nobind")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--pin", action="store_true",
                        help="vLLM on CPU 1 only, gateways on CPU 0 only (the gateway gets a core of "
                             "its own, as in its own container; the engine is pinned in both runs)")
    args = parser.parse_args(argv)
    parts = args.only or ["overhead", "killswitch", "edge-fleet", "overload", "edge-scale"]
    quick = args.quick
    workdir = Path(tempfile.mkdtemp(prefix="triptyque-bench-"))
    started = datetime.datetime.now(datetime.UTC)
    rows: list[Row] = []
    pinned = {"vllm": {1}, "gateway": {0}, "baseline": {0}} if args.pin else {}
    with Processes(workdir, pinned=pinned, vllm_bind=args.vllm_bind) as procs:
        baseline = baseline_tree(args.baseline, workdir / "baseline") if args.baseline else None
        if "overhead" in parts:
            fake = overhead.Load(rounds=3 if quick else 6, latency_requests=300 if quick else 1000,
                                 throughput_seconds=1.0 if quick else 2.0)
            rows += bench_overhead(procs, "fake", fake, baseline)
            if not args.no_vllm:
                real = overhead.Load(rounds=2 if quick else 4, latency_requests=30 if quick else 100,
                                     throughput_seconds=3.0 if quick else 6.0)
                rows += bench_overhead(procs, "vllm", real, baseline)
        if "killswitch" in parts:
            rows += bench_killswitch(procs, args.fleet, cycles=3 if quick else 10)
            if not args.no_vllm:
                rows += bench_killswitch_vllm(procs, cycles=3 if quick else 10)
        if "edge-fleet" in parts and args.edge_nodes > 0:
            rows += edge_fleet.bench(args.edge_nodes, cycles=3 if quick else 10, workdir=procs.workdir,
                                     run=_run)
        if "overload" in parts:
            rows += bench_overload(procs, seconds=2.0 if quick else 5.0)
        scale_text = ""
        if "edge-scale" in parts:
            scale_rows, scale_text = edge_scale.bench(
                args.scale_sizes, procs.workdir, argv=["bench", *(argv if argv is not None else sys.argv[1:])])
            rows += scale_rows
    load = os.getloadavg()
    print(f"# {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average {load[0]:.2f} at the end; "
          f"python -m bench {shlex.join(argv if argv is not None else sys.argv[1:])}")
    if scale_text:
        print(scale_text)
    print(table(rows, markdown=args.markdown))
    missed = [r for r in rows if r.ok is False]
    if missed:
        print(f"{len(missed)} target(s) missed: " + "; ".join(f"{r.group}: {r.metric}" for r in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
