"""Kill switch timing on the edge test fleet: real Debian nodes, converged by the edge target.

The fleet is the edge tests' harness (``tests/edge/fleet.py``: systemd-nspawn nodes,
each in its own network namespace, reached over a veth pair). The nodes are
converged with ``playbooks/site.yml`` exactly as ``triptyque up edge`` does (the
offline bundle, real vLLM on each node's CPU), then each kill cycle sends the kill
to every node's gateway at once, as ``triptyque kill edge`` does, while each node
streams real vLLM answers and is probed for refusals.

Needs root (namespaces, mounts, nspawn) and about 5 minutes on first use of a cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench import killswitch
from bench.procs import wait_http
from bench.report import Row
from triptyque.paths import project_root
from triptyque.spec import DEFAULT_SPEC, load_spec

ROOT = project_root(Path(__file__))

CACHE = Path(os.environ.get("TRIPTYQUE_CACHE", ROOT / ".cache" / "triptyque"))
LIMIT = 1.0  # seconds, the target for a fleet


def bench(size: int, cycles: int, workdir: Path, run: Callable[..., killswitch.Cycle],
          progress: Callable[[str], None] = print) -> list[Row]:
    label = f"kill switch, edge test fleet ({size} nspawn nodes, real vLLM)"
    if os.geteuid() != 0:
        return [Row(label, "not measured: the test fleet needs root", float("nan"), float("nan"), "", None,
                    f"< {LIMIT * 1000:.0f} ms", None)]
    from tests.support.fleet import Fleet
    from triptyque.targets.edge import EdgeTarget

    spec = load_spec(ROOT / DEFAULT_SPEC, target="edge")
    # Long answers, whatever the random weights pick: the stream must still be open at the kill.
    stream = {"model": spec.model.served_name, "messages": [{"role": "user", "content": "go on"}],
              "max_tokens": spec.engine.max_model_len - 32, "stream": True, "ignore_eos": True}
    with Fleet(size, cache_dir=CACHE) as fleet:
        inventory = fleet.write_inventory(workdir / "edge-inventory.yml")
        target = EdgeTarget(spec, workdir / "edge", inventory, bundle_dir=workdir / "edge-bundle",
                            cache_dir=CACHE)
        started = time.monotonic()
        target.build_bundle(progress)
        target.up(progress)
        api_key = target.secrets()["api_key"]
        gateways = []
        for node in target.nodes():
            wait_http(f"{node.gateway_url}/readyz", 300)
            where = urlsplit(node.gateway_url)
            assert where.hostname is not None and where.port is not None, node.gateway_url
            gateways.append(killswitch.Gateway(node.name, where.hostname, where.port, api_key=api_key,
                                               stream=stream, stream_headers={}))
        progress(f"edge fleet of {size} converged and ready in {time.monotonic() - started:.0f} s")
        runs = [run(killswitch.cycle(gateways, streams=4, admin_key=target.admin_key()))
                for _ in range(cycles)]
    return killswitch.rows(label, runs, LIMIT)
