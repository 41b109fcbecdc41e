"""Spec + stack config -> Kubernetes objects, and those objects -> plain YAML files.

The Pulumi component (stacks/) and ``triptyque render`` both call ``render``: what GitOps
applies and what Pulumi creates are the same objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from triptyque.errors import TargetError
from triptyque.k8s.charts import load_chart, wanted_charts
from triptyque.k8s.config import StackConfig, load_stack_config
from triptyque.k8s.engine import engine_objects
from triptyque.k8s.gateway import gateway_objects
from triptyque.k8s.monitoring import monitoring_objects
from triptyque.k8s.names import Names
from triptyque.k8s.network import ingress, network_policies
from triptyque.k8s.pods import pinned_images
from triptyque.spec import ServiceSpec

Manifest = dict[str, Any]

# Kinds that other objects need to exist first, in apply order.
_ORDER = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
          "PersistentVolumeClaim", "Deployment", "PodDisruptionBudget", "Service",
          "NetworkPolicy", "Ingress", "ServiceMonitor", "PrometheusRule")


# Longest suffix added to the service's name in a name limited to 63 characters.
_LONGEST_SUFFIX = len("-gateway-settings")


def names_for(spec: ServiceSpec, config: StackConfig) -> Names:
    app = spec.name.replace("_", "-").replace(".", "-").strip("-")
    if len(app) + _LONGEST_SUFFIX > 63:
        raise TargetError(
            f"name {spec.name!r} is too long for Kubernetes object names; use at most "
            f"{63 - _LONGEST_SUFFIX} characters"
        )
    return Names(app=app, namespace=config.namespace)


def namespace(names: Names) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": names.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "triptyque",
                # Every pod here meets the "restricted" Pod Security Standard; refuse any that would not.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def render(spec: ServiceSpec, config: StackConfig, *, monitoring: bool = True) -> list[Manifest]:
    """Every object of the service, Namespace first, in an order ``kubectl apply`` accepts."""
    names = names_for(spec, config)
    engine_image, gateway_image = pinned_images(spec, str(config.spec))
    objects = [
        namespace(names),
        *engine_objects(spec, config, names, engine_image),
        *gateway_objects(spec, config, names, gateway_image),
        *network_policies(config, names),
    ]
    exposed = ingress(spec, config, names)
    if exposed is not None:
        objects.append(exposed)
    if monitoring:
        objects += monitoring_objects(spec, config, names)
    return sorted(objects, key=lambda o: _ORDER.index(o["kind"]))


def _file_name(index: int, manifest: Manifest) -> str:
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", manifest["kind"]).lower()
    return f"{index:02d}-{kind}-{manifest['metadata']['name']}.yaml"


def write_manifests(objects: list[Manifest], out: Path) -> list[Path]:
    """One YAML file per object, numbered in apply order; stale files from a previous run go."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]-*.yaml"):
        old.unlink()
    written = []
    for index, manifest in enumerate(objects, start=1):
        path = out / _file_name(index, manifest)
        path.write_text(
            "# Rendered by `triptyque render`; edit serving/service.yaml or the stack file instead.\n"
            + yaml.safe_dump(manifest, sort_keys=False, width=120),
            encoding="utf-8",
        )
        written.append(path)
    return written


def render_target(target: str, spec: ServiceSpec, out: Path, root: Path) -> list[Path]:
    """``triptyque render TARGET --out DIR``: the manifests of that stack, plus the Helm
    releases to install first (PREREQUISITES.txt), as GitOps applies them."""
    config = load_stack_config(root, target)
    if config.target == "cloud-vm":
        raise TargetError("cloud-vm runs on plain instances; it has no Kubernetes manifests to render")
    written = write_manifests(render(spec, config), out)
    charts = [load_chart(root / "charts", name, config.target) for name in wanted_charts(config)]
    lines = ["# Install these pinned Helm releases (charts/) before applying the manifests here.",
             *(chart.helm_command() for chart in charts)]
    if not charts:
        lines.append("# none: triptyque:monitoring.prometheus is 'existing' and gpuOperator is false")
    lines += [
        "# GitOps (Argo CD, Flux): the engine Deployment sets no spec.replicas, so a sync or",
        "# self-heal never undoes a hard kill (the kill switch scales it). Do not add one, and",
        "# add no ignoreDifferences for it: a field the manifest leaves out is not compared.",
    ]
    prerequisites = out / "PREREQUISITES.txt"
    prerequisites.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [*written, prerequisites]
