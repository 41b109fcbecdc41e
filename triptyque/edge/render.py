"""The playbook's variables, rendered from the service spec (pure: no I/O).

The controller is the only place that reads ``serving/service.yaml``: it renders
these extra vars and the roles never restate a value of the spec. The roles add
only what depends on the node (paths, users, CPU or GPU build).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from triptyque.edge.bundle import FAKE, FAKE_ENGINE_MODULE, Component, Manifest
from triptyque.engine import DEVICES, default_device, engine_args
from triptyque.gateway.settings import settings_from_spec
from triptyque.spec import ServiceSpec

# The engine runs with the release folder as its working directory, so the model
# path is relative and a release can be rolled back by switching one symlink.
NODE_MODEL_DIR = "./model"
# Overwritten by the role with its own state folder; only the file names matter here.
NODE_STATE_PLACEHOLDER = Path("/var/lib/triptyque/gateway")
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>m|Ki|Mi|Gi|Ti)?$")
# Installed, wheels take about three times their size (a GPU vLLM environment: over 10 GB).
WHEEL_INSTALL_FACTOR = 3
_MIB = {None: 1 / (1024 * 1024), "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def quantity_mib(quantity: str) -> int:
    """A Kubernetes memory quantity (``16Gi``) in whole MiB."""
    match = _QUANTITY.match(quantity)
    if match is None or match["unit"] == "m":
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match["number"]) * _MIB[match["unit"]])


def quantity_cpus(quantity: str) -> float:
    match = _QUANTITY.match(quantity)
    if match is None or match["unit"] not in (None, "m"):
        raise ValueError(f"not a CPU quantity: {quantity!r}")
    return float(match["number"]) / (1000 if match["unit"] == "m" else 1)


def component_disk_mib(name: str, component: Component) -> int:
    """What staging one component takes on a node: the archive copied, its files unpacked,
    and for the wheel components the virtualenv they install into (wheels are zip files)."""
    size = component.bytes * 2
    if name.startswith("engine-") or name == "gateway":
        size += component.bytes * WHEEL_INSTALL_FACTOR
    return math.ceil(size / (1024 * 1024))


def fake_engine_args(spec: ServiceSpec) -> list[str]:
    """The scale-test profile's engine: bench/fake_engine.py on the engine's loopback port."""
    return ["-m", FAKE_ENGINE_MODULE, "--port", str(spec.engine.port)]


def render_vars(
    spec: ServiceSpec,
    manifest: Manifest,
    *,
    bundle_dir: Path,
    api_key_hashes: dict[str, str],
    admin_key_hashes: dict[str, str],
) -> dict[str, Any]:
    """Everything ``playbooks/site.yml`` needs, as one mapping of extra vars."""
    settings = settings_from_spec(
        spec,
        upstream_url=f"http://127.0.0.1:{spec.engine.port}",
        state_dir=NODE_STATE_PLACEHOLDER,
        extra_api_keys=api_key_hashes,
        extra_admin_keys=admin_key_hashes,
        host="0.0.0.0",  # the gateway is the node's only public listener
    )
    def rendered(found: dict[str, Component]) -> dict[str, Any]:
        return {name: {"name": name, "id": c.id, "archive": str(bundle_dir.resolve() / c.archive),
                       "sha256": c.sha256, "disk_mib": component_disk_mib(name, c)}
                for name, c in found.items()}

    components = rendered(manifest.components)
    return {
        "triptyque_service": spec.name,
        "triptyque_spec_hash": spec.spec_hash(),
        "triptyque_bundle_id": manifest.id,
        "triptyque_bundle_python": manifest.python,
        "triptyque_bundle_platform": manifest.platform,
        "triptyque_bundle_components": components,
        # Each (platform, Python) part by name: the role installs the node's own
        # (playbooks/roles/triptyque/vars/main.yml, _triptyque_part).
        "triptyque_bundle_parts": {key: {"platform": part.platform, "python": part.python,
                                         "components": rendered(part.components)}
                                   for key, part in manifest.parts.items()},
        "triptyque_bundle_cuda": manifest.cuda or "",
        # Not triptyque_engine_device: an extra var would beat the inventory's per-host choice.
        "triptyque_default_engine_device": default_device(spec),
        "triptyque_engine_version": spec.engine.version,
        "triptyque_engine_port": spec.engine.port,
        # One argv per engine build: a node runs the one of the device its inventory gives it.
        "triptyque_engine_args": {**{device: engine_args(spec, model=NODE_MODEL_DIR, device=device)
                                     for device in DEVICES},
                                  FAKE: fake_engine_args(spec)},
        "triptyque_engine_env": dict(spec.engine.env),
        # The health gate's budget for one node (triptyque_rollout), per target from the spec.
        "triptyque_rollout_timeout": spec.engine.startup_seconds,
        "triptyque_engine_gpu_count": spec.resources.gpu_count,
        "triptyque_engine_memory_mib": quantity_mib(spec.resources.memory),
        "triptyque_engine_cpus": quantity_cpus(spec.resources.cpu),
        "triptyque_gateway_port": spec.gateway.port,
        "triptyque_gateway_settings": settings.model_dump(mode="json"),
        "triptyque_model_served_name": spec.model.served_name,
    }
