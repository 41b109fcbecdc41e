"""Which nodes an Ansible inventory names, and where each node's gateway answers.

The inventory is read by ``ansible-inventory --list`` so every format Ansible reads
(YAML, INI, folders, plugins) works and host patterns resolve exactly as in the run.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.edge.bundle import ENGINE_BUILDS, EngineBuild, PartSpec, controller_part
from triptyque.edge.platforms import split_platform
from triptyque.engine import Device
from triptyque.errors import MissingToolError, TargetError
from triptyque.types import Endpoint

GROUP = "edge"
_PYTHON = re.compile(r"^3\.[0-9]+$")


# Settings of the whole rollout that the inventory holds but a play keyword must read.
# `serial:` (and `max_fail_percentage:`) are templated before any host exists in the play:
# only play vars and extra vars reach them, never inventory vars (ansible/ansible#18131,
# #27166; ansible-core's PlaybookExecutor templates them with get_vars(play=play)). The
# controller reads them here and passes them as extra vars.
PLAY_VARS = ("triptyque_serial", "triptyque_max_fail_percentage")
# Push (the controller converges the node over SSH, the default) or pull (the node converges
# itself from a publication it fetches: triptyque.edge.pull); per host or per group.
MODE_VAR = "triptyque_edge_mode"
MODES = ("push", "pull")


@dataclass(frozen=True)
class EdgeNode:
    name: str
    address: str
    gateway_url: str
    # The engine build the inventory gives this node (triptyque_engine_device), if any.
    device: str | None = None
    # The node's distribution release and Python (triptyque_platform, triptyque_python), if
    # the inventory says: the bundle then carries a part built for them.
    platform: str | None = None
    python: str | None = None
    # push (the default) or pull: triptyque_edge_mode, per host or per group.
    mode: str = "push"


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
        device = variables.get("triptyque_engine_device")
        platform, python = variables.get("triptyque_platform"), variables.get("triptyque_python")
        mode = str(variables.get(MODE_VAR, "push"))
        if mode not in MODES:
            raise TargetError(f"{source}: {MODE_VAR} of {name} is {mode!r}: use push or pull")
        nodes.append(EdgeNode(name, address, str(url).rstrip("/"), str(device) if device else None,
                              str(platform) if platform else None, str(python) if python else None,
                              mode))
    return nodes


def engine_build(node: EdgeNode, default: Device) -> EngineBuild:
    """The engine build ``node`` runs: its own ``triptyque_engine_device``, else ``default``."""
    wanted = node.device or default
    for build in ENGINE_BUILDS:
        if build == wanted:
            return build
    raise TargetError(f"triptyque_engine_device {wanted} for {node.name} in the inventory: use "
                      f"{', '.join(ENGINE_BUILDS[:-1])} or {ENGINE_BUILDS[-1]}")


def devices_needed(nodes: list[EdgeNode], default: Device) -> tuple[EngineBuild, ...]:
    """Every engine build the fleet runs (a node without its own runs ``default``), so one
    bundle serves a mixed CPU/GPU fleet; a fleet of ``fake`` nodes (the scale-test profile)
    gets no vLLM wheels at all."""
    wanted = {engine_build(node, default) for node in nodes}
    return tuple(device for device in ENGINE_BUILDS if device in wanted)


def parts_needed(nodes: list[EdgeNode], default: Device,
                 controller: tuple[str, str] | None = None) -> tuple[PartSpec, ...]:
    """Every (platform, Python, engine build) the fleet runs, so the bundle holds a part for
    each. A node without ``triptyque_platform`` runs the controller's (platform, Python); one
    with it runs that release's own python3 unless ``triptyque_python`` says otherwise."""
    own = controller or controller_part()
    wanted = set()
    for node in nodes:
        if node.platform:
            distribution, arch = split_platform(node.platform)
            platform, python = f"{distribution.release}-{arch}", node.python or distribution.python
        else:
            platform, python = own[0], node.python or own[1]
        if not _PYTHON.match(python):
            raise TargetError(f"triptyque_python {python!r} for {node.name}: write major.minor, e.g. 3.12")
        wanted.add(PartSpec(platform, python, engine_build(node, default)))
    return tuple(sorted(wanted, key=lambda p: (p.platform, p.python, p.device)))


def play_vars_from_listing(listing: dict[str, Any], group: str = GROUP,
                           source: str = "the inventory") -> dict[str, Any]:
    """PLAY_VARS as the inventory sets them for ``group``; one value for the whole fleet."""
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    names = [n.name for n in nodes_from_listing(listing, 0, group, source)]
    found: dict[str, Any] = {}
    for key in PLAY_VARS:
        values = {json.dumps(hostvars.get(n, {})[key]) for n in names if key in hostvars.get(n, {})}
        if len(values) > 1:
            raise TargetError(f"{source}: {key} differs between hosts of {group!r}; it applies to "
                              f"the whole rollout, so set it once under `{group}: vars:`")
        if values:
            found[key] = json.loads(values.pop())
    return found


def _listing(path: Path, ansible_inventory: str) -> dict[str, Any]:
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
    listing: dict[str, Any] = json.loads(result.stdout)
    return listing


def read_play_vars(path: Path, *, ansible_inventory: str, group: str = GROUP) -> dict[str, Any]:
    return play_vars_from_listing(_listing(path, ansible_inventory), group, str(path))


def read_hostvars(path: Path, *, ansible_inventory: str) -> dict[str, dict[str, Any]]:
    """Every host's variables as Ansible resolves them (group and host vars merged)."""
    hostvars: dict[str, dict[str, Any]] = _listing(path, ansible_inventory).get("_meta", {}).get("hostvars", {})
    return hostvars


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def read_inventory(path: Path, gateway_port: int, *, ansible_inventory: str,
                   group: str = GROUP) -> list[EdgeNode]:
    return nodes_from_listing(_listing(path, ansible_inventory), gateway_port, group, str(path))


def endpoints(nodes: list[EdgeNode]) -> list[Endpoint]:
    return [Endpoint(node.name, node.gateway_url) for node in nodes]
