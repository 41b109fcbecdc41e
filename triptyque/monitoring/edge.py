"""Monitoring files for the edge target: one Prometheus scraping every node of the inventory.

``render(spec, inventory_hosts, out_dir)`` writes under ``out_dir``:

    prometheus.yml        global settings of the production profile, rule files, jobs
    targets/<job>.json    file_sd targets, one group per node labelled ``node=<name>``
    rules/*.yaml          the rule files for the edge target

and returns the path of ``prometheus.yml``. ``inventory_hosts`` is ``[(name, address)]``.
Each node is scraped on the spec's gateway and engine ports and node exporter's
9100. Paths inside prometheus.yml are relative, so the folder can be copied as is;
editing a targets file changes what is scraped without a restart (file_sd).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from triptyque.kinds import TargetName
from triptyque.monitoring import files, prometheus, rulefiles
from triptyque.monitoring.config import JOB_ENGINE, JOB_GATEWAY, JOB_NODE, NODE_EXPORTER_PORT
from triptyque.spec import ServiceSpec

TARGET: TargetName = "edge"


def job_ports(spec: ServiceSpec) -> dict[str, int]:
    return {JOB_GATEWAY: spec.gateway.port, JOB_ENGINE: spec.engine.port,
            JOB_NODE: NODE_EXPORTER_PORT}


def render(
    spec: ServiceSpec,
    inventory_hosts: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    alertmanagers: Sequence[str] = ("127.0.0.1:9093",),
) -> Path:
    rule_paths = rulefiles.write(spec, TARGET, out_dir / "rules")
    scrape_configs = []
    for job, port in job_ports(spec).items():
        targets = [(name, prometheus.host_port(address, port)) for name, address in inventory_hosts]
        sd_file = f"targets/{job}.json"
        files.write(out_dir / sd_file, files.to_json(prometheus.file_sd_targets(targets)))
        scrape_configs.append(prometheus.file_sd_job(job, sd_file))
    document = prometheus.prometheus_config(
        spec, TARGET, scrape_configs=scrape_configs,
        rule_files=[str(p.relative_to(out_dir)) for p in rule_paths], alertmanagers=alertmanagers,
    )
    head = "Rendered by triptyque.monitoring.edge from the inventory. Do not edit."
    return files.write(out_dir / "prometheus.yml", files.to_yaml(document, head))
