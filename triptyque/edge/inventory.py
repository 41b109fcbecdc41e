"""Which nodes an Ansible inventory names, and where each node's gateway answers.

The inventory is read by ``ansible-inventory --list`` so every format Ansible reads
(YAML, INI, folders, plugins) works and host patterns resolve exactly as in the run.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.errors import MissingToolError, TargetError
from triptyque.types import Endpoint

GROUP = "edge"


@dataclass(frozen=True)
class EdgeNode:
    name: str
    address: str
    gateway_url: str


def nodes_from_listing(listing: dict[str, Any], gateway_port: int, group: str = GROUP,
                       source: str = "the inventory") -> list[EdgeNode]:
    """The hosts of ``group`` (children included) from ``ansible-inventory --list`` JSON."""
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    names: list[str] = []

    def walk(name: str, seen: frozenset[str]) -> None:
        entry = listing.get(name) or {}
        for host in entry.get("hosts", []):
            if host not in names:
                names.append(host)
        for child in entry.get("children", []):
            if child not in seen:
                walk(child, seen | {child})

    walk(group, frozenset({group}))
    if not names:
        raise TargetError(f"{source} has no hosts in group {group!r}: put the edge nodes "
                          f"under `{group}:` (see playbooks/inventories/example.yml)")
    nodes = []
    for name in names:
        variables = hostvars.get(name, {})
        address = str(variables.get("ansible_host", name))
        url = variables.get("triptyque_gateway_url") or f"http://{_bracket(address)}:{gateway_port}"
        nodes.append(EdgeNode(name, address, str(url).rstrip("/")))
    return nodes


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def read_inventory(path: Path, gateway_port: int, *, ansible_inventory: str,
                   group: str = GROUP) -> list[EdgeNode]:
    if not path.exists():
        raise TargetError(f"inventory {path} not found: pass --inventory FILE")
    try:
        result = subprocess.run([ansible_inventory, "-i", str(path), "--list"],
                                capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise MissingToolError("ansible-inventory not found: pip install 'triptyque[edge]'") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise TargetError(f"ansible-inventory could not read {path}: {last}")
    return nodes_from_listing(json.loads(result.stdout), gateway_port, group, str(path))


def endpoints(nodes: list[EdgeNode]) -> list[Endpoint]:
    return [Endpoint(node.name, node.gateway_url) for node in nodes]
