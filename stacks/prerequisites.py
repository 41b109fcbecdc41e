"""ClusterPrerequisites: the pinned Helm releases of charts/ that the service needs first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from triptyque.k8s.charts import load_chart


class ClusterPrerequisites(pulumi.ComponentResource):
    """One Helm release per name, installed in order (Prometheus CRDs before their users)."""

    def __init__(
        self,
        name: str,
        charts: Sequence[str],
        *,
        charts_dir: Path,
        target: str,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("triptyque:k8s:ClusterPrerequisites", name, None, opts)
        self.releases: list[k8s.helm.v3.Release] = []
        for chart_name in charts:
            chart = load_chart(charts_dir, chart_name, target)
            self.releases.append(k8s.helm.v3.Release(
                chart.name,
                name=chart.name,
                chart=chart.chart,
                version=chart.version,
                namespace=chart.namespace,
                create_namespace=True,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
                values=chart.values,
                atomic=True,
                timeout=900,
                opts=pulumi.ResourceOptions(
                    parent=self, provider=provider, depends_on=list(self.releases)
                ),
            ))
        self.register_outputs({"releases": [f"{r}" for r in charts]})
