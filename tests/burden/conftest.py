"""Shared helpers of the burden tests: the checkout's figures, scenarios built in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from triptyque.burden.deployed import CloudDeployment, cloud_deployment
from triptyque.burden.figures import Figures, load_figures
from triptyque.burden.scenario import Scenario, parse_scenario
from triptyque.k8s.config import parse_stack_config
from triptyque.spec import load_spec

# A 7B-class model in 4 bits: 3.5 GB of weights; KV 131,072 bytes a token (4,096-token context 0.537 GB,
# a 1,024-token request 0.134 GB).
MODEL = {"name": "test-7b", "parameters_billion": 7, "quantisation": "int4", "context_tokens": 4096,
         "kv_cache_bytes_per_token": 131_072, "average_sequence_tokens": 1024}


@pytest.fixture(scope="session")
def figures() -> Figures:
    return load_figures(ROOT / "burden" / "figures.yaml")


def scenario(figures: Figures, **fields: Any) -> tuple[Scenario, Figures]:
    """A scenario from keyword fields (defaults: a small office-hours service on one L40S)."""
    raw: dict[str, Any] = {
        "name": "test",
        "traffic": {"input_tokens_per_month": 100_000_000, "output_tokens_per_month": 50_000_000,
                    "peak_concurrency": 70},
        "service": {"hours_per_day": 10, "days_per_month": 20},
        "gpu_type": "L40S",
        "model": MODEL,
    }
    raw.update(fields)
    return parse_scenario(raw, Path("test.yaml"), Figures(dict(figures.items)))


def deployment(*, gpu_min: int = 1, gpu_max: int = 2, node_type: str | None = None, cache: str = "200Gi",
               balancer: bool = True) -> CloudDeployment:
    """The cloud stack's billable resources from a stack config written here (as Pulumi.cloud.yaml would)."""
    gpu_pool: dict[str, Any] = {"minSize": gpu_min, "maxSize": gpu_max}
    if node_type:
        gpu_pool["nodeType"] = node_type
    values: dict[str, Any] = {
        "target": "cloud", "modelCache": {"size": cache, "storageClass": "sbs-default"},
        "scaleway": {"gpuPool": gpu_pool, "systemPool": {"nodeType": "PRO2-XS", "minSize": 2, "maxSize": 3}},
        "exposure": {"loadBalancer": {"sourceRanges": ["203.0.113.0/24"]}} if balancer else {},
    }
    config = parse_stack_config(values, "Pulumi.cloud.yaml")
    return cloud_deployment(config, load_spec(ROOT / "serving/service.yaml", "cloud"), "Pulumi.cloud.yaml")
