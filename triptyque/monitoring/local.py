"""Monitoring files for the local target: one Prometheus, one Alertmanager, one webhook.

``render(spec, out_dir, gateway=, engine=, alertmanager=, webhook=)`` writes
``prometheus.yml``, ``alertmanager.yml`` and ``rules/*.yaml`` under ``out_dir`` and
returns their paths. Addresses are ``"host:port"``. The local profile (2 s scrapes
and evaluations, short ``for:``) comes from ``triptyque.monitoring.config.LOCAL``;
the Alertmanager posts to ``http://<webhook>/alerts``, where
``python -m triptyque.monitoring.webhook`` appends each notification to a file.

The caller starts the processes; ``prometheus_argv`` and ``alertmanager_argv`` give
the command lines (Alertmanager's cluster listener is turned off so it binds only
the port it is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triptyque.kinds import TargetName
from triptyque.monitoring import files, prometheus, rulefiles
from triptyque.monitoring.config import JOB_ENGINE, JOB_GATEWAY
from triptyque.spec import ServiceSpec

NODE = "local"
TARGET: TargetName = "local"


@dataclass(frozen=True)
class LocalMonitoring:
    prometheus_config: Path
    alertmanager_config: Path
    rule_files: list[Path]

    def prometheus_argv(self, listen: str, data_dir: Path, binary: str = "prometheus") -> list[str]:
        return [
            binary,
            f"--config.file={self.prometheus_config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={listen}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
        ]

    def alertmanager_argv(
        self, listen: str, data_dir: Path, binary: str = "prometheus-alertmanager"
    ) -> list[str]:
        return [
            binary,
            f"--config.file={self.alertmanager_config}",
            f"--storage.path={data_dir}",
            f"--web.listen-address={listen}",
            "--cluster.listen-address=",
        ]


def webhook_url(webhook: str) -> str:
    return f"http://{webhook}/alerts"


def render(
    spec: ServiceSpec, out_dir: Path, *, gateway: str, engine: str, alertmanager: str, webhook: str
) -> LocalMonitoring:
    out_dir = out_dir.resolve()
    rule_paths = rulefiles.write(spec, TARGET, out_dir / "rules")
    scrape_configs = [
        prometheus.static_job(JOB_GATEWAY, [(NODE, gateway)]),
        prometheus.static_job(JOB_ENGINE, [(NODE, engine)]),
    ]
    prometheus_doc = prometheus.prometheus_config(
        spec, TARGET, scrape_configs=scrape_configs,
        rule_files=[str(p) for p in rule_paths], alertmanagers=[alertmanager],
    )
    alertmanager_doc = prometheus.alertmanager_config(TARGET, webhook_url=webhook_url(webhook))
    head = "Rendered by triptyque.monitoring.local for the local target. Do not edit."
    return LocalMonitoring(
        prometheus_config=files.write(out_dir / "prometheus.yml", files.to_yaml(prometheus_doc, head)),
        alertmanager_config=files.write(
            out_dir / "alertmanager.yml", files.to_yaml(alertmanager_doc, head)
        ),
        rule_files=rule_paths,
    )
