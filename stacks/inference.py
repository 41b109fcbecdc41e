"""InferenceService: the rendered Kubernetes objects of triptyque.k8s as Pulumi resources."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

Manifest = dict[str, Any]

KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _component(manifest: Manifest) -> str:
    return str(manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _ignored_fields(manifest: Manifest) -> list[str]:
    # Fields other writers own at run time; `pulumi up` must not undo their changes.
    if manifest["kind"] == "ConfigMap" and _component(manifest) == "killswitch":
        return ["data", "binaryData"]  # the kill state and audit chain
    if manifest["kind"] == "Deployment" and _component(manifest) == "engine":
        return ["spec.replicas"]  # a hard kill scales the engine to zero
    return []


# Pulumi waits this much longer than the Deployment's own progress deadline, so the
# deadline (a clear ProgressDeadlineExceeded) is what fails a stuck rollout.
TIMEOUT_MARGIN_SECONDS = 120


def _custom_timeouts(manifest: Manifest) -> pulumi.CustomTimeouts | None:
    """pulumi-kubernetes waits 10 minutes for a Deployment by default; a GPU engine may take
    longer (node, image, weights): wait as long as its progressDeadlineSeconds allows."""
    deadline = (manifest.get("spec") or {}).get("progressDeadlineSeconds")
    if manifest["kind"] != "Deployment" or not deadline:
        return None
    wait = f"{int(deadline) + TIMEOUT_MARGIN_SECONDS}s"
    return pulumi.CustomTimeouts(create=wait, update=wait)


def _created_with(manifest: Manifest) -> Manifest:
    """The engine Deployment is created with the replicas the stack serves with (its annotation,
    triptyque.k8s.engine.REPLICAS_ANNOTATION); `spec.replicas` is then ignored on update, so a
    hard kill stays in force. The rendered manifests (GitOps) never set it."""
    annotation = (manifest["metadata"].get("annotations") or {}).get("triptyque.io/serving-replicas")
    if manifest["kind"] != "Deployment" or _component(manifest) != "engine" or annotation is None:
        return manifest
    return {**manifest, "spec": {**manifest["spec"], "replicas": int(annotation)}}


class InferenceService(pulumi.ComponentResource):
    """Namespace first, then every other object in it; custom resources wait for their CRDs."""

    def __init__(
        self,
        name: str,
        manifests: Sequence[Manifest],
        *,
        provider: pulumi.ProviderResource,
        crds: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("triptyque:k8s:InferenceService", name, None, opts)
        first, *rest = manifests
        if first["kind"] != "Namespace":
            raise ValueError("the rendered manifests must start with the Namespace")
        self.namespace = self._create(first, provider, [])
        self.resources: dict[str, pulumi.Resource] = {}
        for manifest in rest:
            key = (manifest["apiVersion"], manifest["kind"])
            after = [self.namespace, *(crds if key not in KINDS else [])]
            self.resources[f"{manifest['kind']}/{manifest['metadata']['name']}"] = self._create(
                manifest, provider, after
            )
        self.register_outputs({"namespace": first["metadata"]["name"]})

    def _create(
        self, manifest: Manifest, provider: pulumi.ProviderResource, after: list[pulumi.Resource]
    ) -> pulumi.Resource:
        opts = pulumi.ResourceOptions(
            parent=self, provider=provider, depends_on=after,
            ignore_changes=_ignored_fields(manifest) or None,
            custom_timeouts=_custom_timeouts(manifest),
        )
        name = manifest["metadata"]["name"]
        body = {k: v for k, v in _created_with(manifest).items() if k not in ("apiVersion", "kind")}
        cls = KINDS.get((manifest["apiVersion"], manifest["kind"]))
        if cls is None:
            return k8s.apiextensions.CustomResource(
                name, api_version=manifest["apiVersion"], kind=manifest["kind"], opts=opts, **body
            )
        resource: pulumi.Resource = cls(name, opts=opts, **{_snake(k): v for k, v in body.items()})
        return resource
