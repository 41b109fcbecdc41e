"""The CrossGuard policies, as plain checks over one resource's properties.

Each check takes a ``Seen`` resource (type, URN, properties as the engine sends them,
camelCase, and its provider's properties) and yields one message per violation.
``policies()`` wraps them for the PolicyPack of ``__main__``; the mock tests under
tests/stacks run the same checks over every resource the program registers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import Policy, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from triptyque.k8s.config import EU_REGIONS, EU_ZONES

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
WORKLOAD_TYPES = frozenset({
    "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet", "kubernetes:apps/v1:ReplicaSet", "kubernetes:batch/v1:Job",
})
OPEN_RANGES = frozenset({"0.0.0.0/0", "::/0"})


@dataclass(frozen=True)
class Seen:
    type: str
    urn: str
    props: Mapping[str, Any]
    provider_props: Mapping[str, Any] = field(default_factory=dict)


Check = Callable[[Seen], Iterator[str]]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def pod_spec(seen: Seen) -> Mapping[str, Any] | None:
    if seen.type in WORKLOAD_TYPES:
        spec = _get(seen.props, "spec", "template", "spec")
    elif seen.type == "kubernetes:batch/v1:CronJob":
        spec = _get(seen.props, "spec", "jobTemplate", "spec", "template", "spec")
    elif seen.type == "kubernetes:core/v1:Pod":
        spec = _get(seen.props, "spec")
    else:
        return None
    return spec if isinstance(spec, Mapping) else None


def containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _quantity(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # the mocks and JSON turn 1 into 1.0
    return str(value)


def images_pinned_by_digest(seen: Seen) -> Iterator[str]:
    pod = pod_spec(seen)
    for container in containers(pod) if pod else []:
        image = str(container.get("image") or "")
        if not DIGEST.search(image):
            yield (f"container {container.get('name')} uses image {image!r}, which is not pinned "
                   "by digest (name@sha256:...); a tag can move")


def gpu_requests_equal_limits(seen: Seen) -> Iterator[str]:
    pod = pod_spec(seen)
    for container in containers(pod) if pod else []:
        requests = _get(container, "resources", "requests") or {}
        limits = _get(container, "resources", "limits") or {}
        for gpu in GPU_RESOURCES:
            asked, capped = _quantity(requests.get(gpu)), _quantity(limits.get(gpu))
            if asked is None and capped is None:
                continue
            if asked != capped:
                yield (f"container {container.get('name')} requests {asked} {gpu} but is limited "
                       f"to {capped}; GPUs cannot be shared, so requests must equal limits")


def containers_have_limits(seen: Seen) -> Iterator[str]:
    pod = pod_spec(seen)
    for container in containers(pod) if pod else []:
        limits = _get(container, "resources", "limits") or {}
        missing = [r for r in ("cpu", "memory") if limits.get(r) in (None, "")]
        if missing:
            yield f"container {container.get('name')} has no {' or '.join(missing)} limit"


def containers_run_as_non_root(seen: Seen) -> Iterator[str]:
    pod = pod_spec(seen)
    if pod is None:
        return
    pod_context = pod.get("securityContext") or {}
    for container in containers(pod):
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if non_root is not True:
            yield f"container {container.get('name')} does not set runAsNonRoot: true"
        elif user is not None and int(user) == 0:
            yield f"container {container.get('name')} sets runAsUser: 0 (root)"


def _open(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def no_public_exposure_without_allowlist(seen: Seen) -> Iterator[str]:
    if seen.type == "kubernetes:core/v1:Service" and _get(seen.props, "spec", "type") == "LoadBalancer":
        ranges = list(_get(seen.props, "spec", "loadBalancerSourceRanges") or [])
        annotated = _get(seen.props, "metadata", "annotations",
                         "service.beta.kubernetes.io/load-balancer-source-ranges")
        if annotated:
            ranges += [r.strip() for r in str(annotated).split(",") if r.strip()]
        if not ranges:
            yield "LoadBalancer Service has no loadBalancerSourceRanges: anyone can reach it"
        yield from (f"LoadBalancer Service lets in {r}, the whole internet" for r in ranges if _open(r))
    if seen.type == "scaleway:instance/securityGroup:SecurityGroup":
        if seen.props.get("inboundDefaultPolicy", "accept") != "drop":
            yield "security group accepts inbound traffic by default; set inboundDefaultPolicy: drop"
        for rule in seen.props.get("inboundRules") or []:
            source = rule.get("ipRange") or rule.get("ip")
            if rule.get("action") == "accept" and (source is None or _open(str(source))):
                yield f"security group accepts port {_quantity(rule.get('port'))} from anywhere"


def gateway_auth_and_kill_switch(seen: Seen) -> Iterator[str]:
    if seen.type != "kubernetes:core/v1:ConfigMap":
        return
    raw = _get(seen.props, "data", "settings.json")
    if raw is None:
        return
    try:
        settings = json.loads(str(raw))
    except ValueError:
        yield "gateway settings.json is not valid JSON"
        return
    if not settings.get("api_keys"):
        yield "gateway has no API key: every request would be refused, or auth was meant to be off"
    if not settings.get("admin_keys"):
        yield "gateway has no admin key: nobody could engage the kill switch through it"
    if (settings.get("kill_switch") or {}).get("enabled") is not True:
        yield "gateway kill switch is disabled"
    if settings.get("state_backend") != "kubernetes" or not settings.get("cluster"):
        yield ("gateway keeps its kill-switch state in a file: replicas would not stop together; "
               "use state_backend kubernetes")


def _scaleway_placement(seen: Seen) -> tuple[Any, Any]:
    region = seen.props.get("region") or seen.provider_props.get("region")
    zone = seen.props.get("zone") or seen.provider_props.get("zone")
    return region, zone


def cloud_resources_in_eu(seen: Seen) -> Iterator[str]:
    if not (seen.type.startswith("scaleway:") or seen.type == "pulumi:providers:scaleway"):
        return
    region, zone = _scaleway_placement(seen)
    if region is None and zone is None:
        yield "no region or zone is pinned on the resource or its provider; it could land anywhere"
    if region is not None and region not in EU_REGIONS:
        yield f"region {region} is outside the EU ({', '.join(EU_REGIONS)})"
    if zone is not None and zone not in EU_ZONES:
        yield f"zone {zone} is outside the EU"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Check


RULES: tuple[Rule, ...] = (
    Rule("images-pinned-by-digest", "Every container image is pinned by digest.",
         images_pinned_by_digest),
    Rule("gpu-requests-equal-limits", "GPU requests equal GPU limits.", gpu_requests_equal_limits),
    Rule("containers-have-limits", "Every container has CPU and memory limits.",
         containers_have_limits),
    Rule("containers-run-as-non-root", "Every container runs as a non-root user.",
         containers_run_as_non_root),
    Rule("no-public-exposure-without-allowlist",
         "No LoadBalancer or open firewall without a source allowlist.",
         no_public_exposure_without_allowlist),
    Rule("gateway-auth-and-kill-switch",
         "The gateway requires keys and has a cluster-wide kill switch.",
         gateway_auth_and_kill_switch),
    Rule("cloud-resources-in-eu", "Cloud resources are created in EU regions only.",
         cloud_resources_in_eu),
)


def _validator(check: Check) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        provider = dict(args.provider.props) if args.provider is not None else {}
        for message in check(Seen(args.resource_type, args.urn, args.props, provider)):
            report(message, None)

    return validate


def policies() -> list[Policy]:
    return [
        ResourceValidationPolicy(name=rule.name, description=rule.description,
                                 validate=_validator(rule.check))
        for rule in RULES
    ]
