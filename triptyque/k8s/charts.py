"""The pinned Helm releases under charts/ and which of them a stack installs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from triptyque.errors import TargetError
from triptyque.k8s.config import StackConfig

_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class ChartRelease:
    name: str
    repository: str
    chart: str
    version: str
    namespace: str
    values: dict[str, Any]

    def helm_command(self) -> str:
        return (f"helm upgrade --install {self.name} {self.chart} --repo {self.repository} "
                f"--version {self.version} --namespace {self.namespace} --create-namespace "
                f"--values charts/{self.name}/values.yaml")


def load_chart(charts_dir: Path, name: str) -> ChartRelease:
    folder = charts_dir / name
    try:
        release = yaml.safe_load((folder / "release.yaml").read_text(encoding="utf-8"))
        values = yaml.safe_load((folder / "values.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TargetError(f"{folder}: cannot read the pinned release: {exc}") from None
    version = str(release.get("version", ""))
    if not _EXACT_VERSION.match(version):
        raise TargetError(f"{folder}/release.yaml: version {version!r} is not an exact version")
    return ChartRelease(
        name=name, repository=release["repository"], chart=release["chart"], version=version,
        namespace=release["namespace"], values=values,
    )


def wanted_charts(config: StackConfig) -> list[str]:
    """Releases the stack installs before the service, in install order.

    Prometheus's CRDs come first: the GPU operator's values ask for a ServiceMonitor.
    """
    names = []
    if config.monitoring.prometheus == "stack":
        names.append("kube-prometheus-stack")
    elif config.monitoring.prometheus == "crds":
        names.append("prometheus-operator-crds")
    if config.gpu_operator:
        names.append("gpu-operator")
    return names
