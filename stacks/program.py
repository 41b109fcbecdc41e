"""What each stack builds. ``__main__`` reads the config once and exports what this returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.gpu_instances import GpuInstances
from stacks.inference import InferenceService
from stacks.kapsule import KapsuleCluster
from stacks.prerequisites import ClusterPrerequisites
from triptyque.errors import TriptyqueError
from triptyque.k8s.charts import wanted_charts
from triptyque.k8s.config import StackConfig, parse_stack_config
from triptyque.k8s.render import names_for, render
from triptyque.spec import ServiceSpec, load_spec


def read_config() -> StackConfig:
    """The ``triptyque:*`` values of this stack, validated once."""
    config = pulumi.Config("triptyque")
    values: dict[str, Any] = {}
    for field, info in StackConfig.model_fields.items():
        key = info.alias or field
        raw = config.get(key)
        if raw is not None:
            # Structured values reach the program as JSON text, plain ones as strings.
            values[key] = json.loads(raw) if raw[:1] in "{[" else raw
    try:
        return parse_stack_config(values, f"stack {pulumi.get_stack()}")
    except TriptyqueError as exc:
        raise pulumi.RunError(str(exc)) from None


def _spec(config: StackConfig, root: Path) -> ServiceSpec:
    try:
        return load_spec(root / config.spec, config.target)
    except TriptyqueError as exc:
        raise pulumi.RunError(str(exc)) from None


def _gateway_url(config: StackConfig, spec: ServiceSpec, service: pulumi.Resource) -> Any:
    ingress = config.exposure.ingress
    if ingress is not None:
        return f"https://{ingress.host}"
    names = names_for(spec, config)
    if config.exposure.load_balancer is not None:
        status = service.status  # type: ignore[attr-defined]
        return status.apply(lambda s: _balancer_url(s, spec.gateway.port))
    # Reachable in the cluster only (or through `kubectl port-forward`).
    return f"http://{names.gateway}.{names.namespace}.svc:{spec.gateway.port}"


def _balancer_url(status: Any, port: int) -> str:
    entries = (status and status.load_balancer and status.load_balancer.ingress) or []
    address = next((e.ip or e.hostname for e in entries if e.ip or e.hostname), None)
    return f"http://{address}:{port}" if address else "(load balancer address pending)"


def _service(
    config: StackConfig, spec: ServiceSpec, root: Path, provider: pulumi.ProviderResource
) -> dict[str, Any]:
    try:
        manifests = render(spec, config)
    except TriptyqueError as exc:
        raise pulumi.RunError(str(exc)) from None
    prerequisites = ClusterPrerequisites(
        "prerequisites", wanted_charts(config), charts_dir=root / "charts", target=config.target,
        provider=provider,
    )
    service = InferenceService(
        spec.name, manifests, provider=provider, crds=prerequisites.releases,
    )
    names = names_for(spec, config)
    gateway = service.resources[f"Service/{names.gateway}"]
    return {
        "namespace": names.namespace,
        "gatewayUrl": _gateway_url(config, spec, gateway),
        "killSwitchConfigMap": f"{names.namespace}/{names.killswitch}",
        "charts": wanted_charts(config),
        "specHash": spec.spec_hash(),
    }


def build(config: StackConfig, root: Path) -> dict[str, Any]:
    """Create the stack's resources; the returned mapping is what the stack exports."""
    spec = _spec(config, root)
    if config.target == "onprem":
        provider = k8s.Provider("onprem", context=config.kube_context)
        return _service(config, spec, root, provider)
    scaleway = config.scaleway_or_default
    if config.target == "cloud":
        cluster = KapsuleCluster("kapsule", scaleway, spec)
        return {
            **_service(config, spec, root, cluster.provider),
            "kubeconfig": cluster.kubeconfig,
            "clusterId": cluster.cluster.id,
            "region": scaleway.region,
        }
    assert config.vms is not None  # StackConfig requires it for cloud-vm
    machines = GpuInstances("gpu", scaleway, config.vms, spec)
    return {"inventory": machines.inventory, "region": scaleway.region, "zone": scaleway.zone}
