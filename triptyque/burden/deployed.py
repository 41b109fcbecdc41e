"""What the cloud stack really creates, read from the same config the Pulumi program reads.

``cloud_deployment(config, spec)`` (pure) turns the stack's settings into the billable
resources of ``stacks/kapsule.py`` and the rendered objects: the GPU pool (node type,
min and max size: nodes below the minimum never go away), the system pool, the
model-cache volume, the load balancer in front of the gateways, and the engine
replicas, the public gateway the nodes leave through (and its IP).
``read_cloud_deployment(root)`` loads ``Pulumi.cloud.yaml`` with
``triptyque.k8s.config.load_stack_config`` and the spec it names.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from triptyque.burden.errors import BurdenError
from triptyque.errors import TriptyqueError
from triptyque.k8s.config import StackConfig, load_stack_config, stack_file
from triptyque.spec import ServiceSpec, load_spec

# Scaleway GPU instance types -> the GPU they carry (the figures price them per node).
NODE_GPU: dict[str, str] = {"L4-1-24G": "L4", "L40S-1-48G": "L40S", "H100-1-80G": "H100-PCIe",
                            "H100-SXM-2-80G": "H100-SXM"}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_FACTOR = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def gigabytes(quantity: str) -> float:
    """A Kubernetes storage quantity (``200Gi``) in GB (10^9 bytes), as storage is priced."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise BurdenError([f"storage size {quantity!r} is not a Kubernetes quantity"])
    return float(match.group(1)) * _FACTOR[match.group(2)] / 1e9


@dataclass(frozen=True)
class CloudDeployment:
    source: str
    gpu_node_type: str
    gpu_min: int
    gpu_max: int
    system_node_type: str
    system_min: int
    system_max: int
    volume_gb: float
    volume_class: str
    load_balancers: int
    engine_replicas: int
    gpus_per_replica: int
    slo_availability: float = 0.995
    # stacks/kapsule.py: the nodes' only way out, a public gateway with its own flexible IP.
    public_gateway: str | None = "VPC-GW-S"
    problem: str | None = None  # why the stack could not be read: the cloud is then not priced

    @classmethod
    def unreadable(cls, source: str, problem: str) -> CloudDeployment:
        return cls(source, "", 0, 0, "", 0, 0, 0.0, "", 0, 0, 0, problem=problem)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cloud_deployment(config: StackConfig, spec: ServiceSpec, source: str) -> CloudDeployment:
    scaleway = config.scaleway_or_default
    gpu, system = scaleway.gpu_pool, scaleway.system_pool
    return CloudDeployment(
        source=source,
        gpu_node_type=gpu.node_type or spec.resources.gpu_type,  # as stacks/kapsule.py does
        gpu_min=gpu.min_size, gpu_max=gpu.max_size,
        system_node_type=system.node_type or "PRO2-XS", system_min=max(system.min_size, 1),
        system_max=system.max_size,
        # One cache volume per engine replica when there are several (triptyque/k8s/engine.py:
        # a generic ephemeral volume per pod), else the one named claim.
        volume_gb=gigabytes(config.model_cache.size) * config.engine.replicas,
        volume_class=config.model_cache.storage_class or "default",
        load_balancers=1 if config.exposure.load_balancer is not None else 0,
        engine_replicas=config.engine.replicas,  # what `pulumi up` creates and resume restores
        gpus_per_replica=spec.resources.gpu_count,
        slo_availability=spec.slo.availability,
    )


def read_cloud_deployment(root: Path) -> CloudDeployment:
    """``Pulumi.cloud.yaml`` under ``root`` and the spec it names, as billable resources.

    A stack file that cannot be read gives a deployment carrying the problem: the cloud
    option says why it is not priced, and the other options are still compared.
    """
    source = str(stack_file(root, "cloud"))
    try:
        config = load_stack_config(root, "cloud")
        spec = load_spec(root / config.spec, "cloud")
        return cloud_deployment(config, spec, source)
    except (TriptyqueError, BurdenError) as exc:
        return CloudDeployment.unreadable(source, str(exc).splitlines()[0])
