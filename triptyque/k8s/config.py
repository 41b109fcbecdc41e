"""One stack's settings, read from ``Pulumi.<stack>.yaml`` (or ``pulumi.Config``).

The same model feeds the Pulumi program, ``triptyque render`` and the Kubernetes
targets, so a value has one meaning wherever it is read. Keys are the stack file's
camelCase names under the ``triptyque:`` namespace; anything unknown is an error.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from triptyque.errors import TargetError
from triptyque.spec import KeyName, Quantity

StackTarget = Literal["onprem", "cloud", "cloud-vm"]
STACK_TARGETS: tuple[StackTarget, ...] = get_args(StackTarget)
NAMESPACE = "triptyque"

# Scaleway's regions in the European Union and their zones.
EU_REGIONS: dict[str, tuple[str, ...]] = {
    "fr-par": ("fr-par-1", "fr-par-2", "fr-par-3"),
    "nl-ams": ("nl-ams-1", "nl-ams-2", "nl-ams-3"),
    "pl-waw": ("pl-waw-1", "pl-waw-2", "pl-waw-3"),
}
EU_ZONES = frozenset(zone for zones in EU_REGIONS.values() for zone in zones)

# Set on the Kapsule GPU pool's nodes (reconciled by Scaleway) and selected by the engine.
GPU_POOL_LABEL = "triptyque.io/accelerator"

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _cidr(value: str) -> str:
    network = ipaddress.ip_network(value, strict=False)
    if network.prefixlen == 0:
        raise ValueError(f"{value} lets the whole internet in; list the networks that need access")
    return str(network)


Cidr = Annotated[str, AfterValidator(_cidr)]


class _Config(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class ComputeResources(_Config):
    cpu: Quantity
    memory: Quantity


class GatewayConfig(_Config):
    replicas: int = Field(default=3, ge=2, le=50)
    metrics_port: int = Field(
        default=9102, ge=1024, le=65535,
        description="The gateways' metrics listener: scraped by Prometheus through its own "
        "Service; the public Service and the load balancer carry only the API port.",
    )
    requests: ComputeResources = ComputeResources(cpu="250m", memory="256Mi")
    limits: ComputeResources = ComputeResources(cpu="1", memory="512Mi")


class Ingress(_Config):
    host: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
    class_name: str = Field(description="The IngressClass; nginx also gets its allowlist annotation.")
    tls_secret: DnsLabel
    controller_namespace: DnsLabel = "ingress-nginx"
    source_ranges: list[Cidr] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)


def _public(ranges: list[str]) -> list[str]:
    return [cidr for cidr in ranges if ipaddress.ip_network(cidr).is_global]


def refuse_plain_http(ranges: list[str], where: str, allowed: bool, tls: bool = False) -> None:
    """API keys and prompts must not cross the internet in clear text: a plain-HTTP listener
    open to a public network is refused unless the stack file says it knows (allowPlainHttp)."""
    public = _public(ranges)
    if public and not tls and not allowed:
        raise ValueError(
            f"{where} serves plain HTTP to public networks ({', '.join(public)}): API keys would "
            "travel in clear text. Terminate TLS in front of it, list only private networks, or "
            "set allowPlainHttp: true to accept the risk")


# Scaleway's cloud-controller-manager terminates TLS with these certificates
# (docs/loadbalancer-annotations.md: scw-loadbalancer-certificate-ids).
SCW_CERTIFICATES = "service.beta.kubernetes.io/scw-loadbalancer-certificate-ids"


class LoadBalancer(_Config):
    source_ranges: list[Cidr] = Field(
        min_length=1, description="Client networks; the Service's loadBalancerSourceRanges."
    )
    annotations: dict[str, str] = Field(default_factory=dict)
    proxy_ranges: list[Cidr] | None = Field(
        default=None,
        description="Where the load balancer's own connections to the nodes come from, when it "
        "is a proxy (the gateways then see its address, not the client's). Unset: on cloud, "
        "the Kapsule private network (Scaleway's load balancer is a proxy attached to it); on "
        "onprem, none (a balancer such as MetalLB keeps client addresses, so the NetworkPolicy "
        "admits sourceRanges).",
    )
    allow_plain_http: bool = Field(
        default=False, description="Accept plain HTTP from public source ranges (no TLS)."
    )

    @model_validator(mode="after")
    def _no_clear_text_on_the_internet(self) -> LoadBalancer:
        refuse_plain_http(self.source_ranges, "exposure.loadBalancer", self.allow_plain_http,
                          tls=SCW_CERTIFICATES in self.annotations)
        return self


class Exposure(_Config):
    """How clients outside the namespace reach the gateways (ClusterIP only when both are unset)."""

    ingress: Ingress | None = None
    load_balancer: LoadBalancer | None = None
    client_namespaces: list[DnsLabel] = Field(default_factory=list)


class Monitoring(_Config):
    prometheus: Literal["stack", "crds", "existing"] = Field(
        default="stack",
        description="stack: install kube-prometheus-stack; crds: only the operator CRDs "
        "(Prometheus runs elsewhere); existing: install nothing.",
    )
    namespace: DnsLabel = "monitoring"
    prometheus_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"}
    )
    labels: dict[str, str] = Field(default_factory=dict)
    scrape_interval: Annotated[str, StringConstraints(pattern=r"^[0-9]+[smh]$")] = "15s"


class ModelCache(_Config):
    size: Quantity = "100Gi"
    storage_class: str | None = None


class Toleration(_Config):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class Engine(_Config):
    replicas: int = Field(
        default=1, ge=1, le=100,
        description="Engine replicas while serving: what `pulumi up` creates and `triptyque "
        "resume` restores after a hard kill. On cloud, at most what the GPU pool holds at its "
        "maxSize. Above 1, each replica gets its own model cache.",
    )
    startup_seconds: int | None = Field(
        default=None, ge=60, le=7200,
        description="Overrides the spec's engine.startup_seconds (download + load) here.",
    )
    drain_seconds: int = Field(
        default=120, ge=5, le=3600, description="How long in-flight requests get on shutdown."
    )
    gpu_node_selector: dict[str, str] | None = None
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu")]
    )
    hf_token_secret: DnsLabel | None = Field(
        default=None, description="A Secret in the namespace with key HF_TOKEN, for gated models."
    )


class Pool(_Config):
    node_type: str | None = None
    min_size: int = Field(default=1, ge=0, le=100)
    max_size: int = Field(default=2, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> Pool:
        if self.min_size > self.max_size:
            raise ValueError("minSize must not exceed maxSize")
        return self


class Scaleway(_Config):
    region: str = "fr-par"
    # Scaleway's L4 and H100 GPU instances are in fr-par-2.
    zone: str = "fr-par-2"
    kapsule_version: Annotated[str, StringConstraints(pattern=r"^1\.\d+\.\d+$")] = "1.34.1"
    cni: Literal["cilium", "calico", "kilo"] = "cilium"
    gpu_pool: Pool = Pool()
    system_pool: Pool = Pool(node_type="PRO2-XS", min_size=2, max_size=3)
    private_network_subnet: str = "172.16.32.0/22"
    api_source_ranges: list[Cidr] | None = Field(
        default=None,
        description="Who may reach the cluster's API server (Kapsule's ACL): the operators' "
        "networks, where Pulumi and `triptyque kill` run. Required by the cloud stack; the "
        "nodes reach it through the private network's public gateway, added on their own.",
    )

    @model_validator(mode="after")
    def _in_the_eu(self) -> Scaleway:
        if self.region not in EU_REGIONS:
            raise ValueError(
                f"region {self.region} is outside the EU; use one of {', '.join(EU_REGIONS)}"
            )
        if self.zone not in EU_REGIONS[self.region]:
            raise ValueError(
                f"zone {self.zone} is not in region {self.region}; use one of "
                f"{', '.join(EU_REGIONS[self.region])}"
            )
        return self


# Scaleway image labels and the distribution release each is built on, which the edge bundle's
# part for these nodes must match. "GPU OS 12 is a specialized OS image based on Ubuntu 24.04
# (Noble)": scaleway/docs-content, pages/instances/reference-content/images-and-instantapps.mdx.
IMAGE_PLATFORMS = {
    "ubuntu_noble_gpu_os_12": "ubuntu-24.04",
    "ubuntu_noble_gpu_os_13_nvidia": "ubuntu-24.04",
    "ubuntu_jammy_gpu_os_12": "ubuntu-22.04",
    "ubuntu_noble": "ubuntu-24.04",
    "ubuntu_jammy": "ubuntu-22.04",
    "debian_bookworm": "debian-12",
}


class Vms(_Config):
    """The cloud-vm flavour: GPU instances the edge playbooks then configure."""

    count: int = Field(default=1, ge=1, le=20)
    image: str = "ubuntu_noble_gpu_os_12"
    platform: str | None = Field(
        default=None, description="The image's distribution release (ubuntu-24.04), for an image "
        "triptyque does not know; the inventory gives it to the nodes as triptyque_platform.")
    ssh_user: str = "root"
    ssh_public_key: Annotated[str, StringConstraints(pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) \S+")]
    ssh_source_ranges: list[Cidr] = Field(min_length=1)
    gateway_source_ranges: list[Cidr] = Field(min_length=1)
    root_volume_gb: int = Field(default=150, ge=20, le=10_000)
    allow_plain_http: bool = Field(
        default=False, description="Accept plain HTTP from public gatewaySourceRanges (no TLS)."
    )

    @model_validator(mode="after")
    def _no_clear_text_on_the_internet(self) -> Vms:
        refuse_plain_http(self.gateway_source_ranges, "vms.gatewaySourceRanges", self.allow_plain_http)
        return self

    @property
    def node_platform(self) -> str:
        return self.platform or IMAGE_PLATFORMS[self.image]

    @model_validator(mode="after")
    def _the_image_s_distribution_is_known(self) -> Vms:
        if self.platform is None and self.image not in IMAGE_PLATFORMS:
            raise ValueError(f"vms.image {self.image}: its distribution is unknown to triptyque; set "
                             "vms.platform to its release (e.g. ubuntu-24.04), so the edge bundle "
                             "carries packages for it")
        return self


class StackConfig(_Config):
    target: StackTarget
    spec: Path = Path("serving/service.yaml")
    namespace: DnsLabel = NAMESPACE
    kube_context: str | None = Field(
        default=None, description="onprem: the kubeconfig context to deploy to."
    )
    gateway: GatewayConfig = GatewayConfig()
    engine: Engine = Engine()
    exposure: Exposure = Exposure()
    monitoring: Monitoring = Monitoring()
    model_cache: ModelCache = ModelCache()
    gpu_operator: bool = Field(default=False, description="Install NVIDIA's GPU operator chart.")
    api_keys: dict[KeyName, Sha256] = Field(default_factory=dict)
    admin_keys: dict[KeyName, Sha256] = Field(default_factory=dict)
    scaleway: Scaleway | None = None
    vms: Vms | None = None

    @model_validator(mode="after")
    def _target_needs(self) -> StackConfig:
        if self.target == "onprem" and not self.kube_context:
            raise ValueError("onprem needs triptyque:kubeContext (the kubeconfig context to use)")
        if self.target == "cloud-vm" and self.vms is None:
            raise ValueError("cloud-vm needs triptyque:vms (sshPublicKey and the source ranges)")
        return self

    @property
    def scaleway_or_default(self) -> Scaleway:
        return self.scaleway or Scaleway()

    def load_balancer_peers(self) -> list[str]:
        """The networks the gateway NetworkPolicy admits for traffic through the load balancer.

        A proxying balancer (Scaleway's) opens its own connections, so the pods see its address:
        admitting the client ranges there would drop every request. The client allowlist is then
        enforced by the balancer itself (loadBalancerSourceRanges become its ACLs).
        """
        balancer = self.exposure.load_balancer
        if balancer is None:
            return []
        if balancer.proxy_ranges is not None:
            return list(balancer.proxy_ranges)
        if self.target == "cloud":
            return [self.scaleway_or_default.private_network_subnet]
        return list(balancer.source_ranges)

    @property
    def gpu_node_selector(self) -> dict[str, str]:
        if self.engine.gpu_node_selector is not None:
            return self.engine.gpu_node_selector
        if self.target == "cloud":
            return {GPU_POOL_LABEL: "gpu"}
        return {"nvidia.com/gpu.present": "true"}



def _problems(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: triptyque:{field}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def parse_stack_config(values: dict[str, Any], where: str) -> StackConfig:
    """Validate the ``triptyque:*`` values (namespace already stripped)."""
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        raise TargetError(_problems(exc, where)) from None





def stack_file(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def load_stack_config(root: Path, stack: str) -> StackConfig:
    """Read ``Pulumi.<stack>.yaml`` under ``root``; one line per problem, naming the file."""
    path = stack_file(root, stack)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise TargetError(
            f"{path}: no such stack file; copy one of the examples next to Pulumi.yaml"
        ) from None
    except yaml.YAMLError as exc:
        raise TargetError(f"{path}: invalid YAML: {exc}") from None
    raw = document.get("config") or {}
    values = {
        key.split(":", 1)[1]: value
        for key, value in raw.items()
        if isinstance(key, str) and key.startswith("triptyque:")
    }
    config = parse_stack_config(values, str(path))
    if config.target != stack:
        raise TargetError(f"{path}: triptyque:target is {config.target} but the stack is {stack}")
    return config
