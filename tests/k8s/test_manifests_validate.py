"""Every rendered manifest passes kubernetes-validate --strict and checkov, offline.

kubernetes-validate bundles the API schemas of Kubernetes 1.25 to 1.37: the manifests
are checked against both ends. It has no schema for the Prometheus operator's custom
resources, so those are checked against the models generated from the operator's CRDs
(cloudcoil-models-prometheus-operator), strictly: an unknown field fails the round trip.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

from triptyque.k8s.render import write_manifests

OLDEST, NEWEST = "1.25.0", "1.37.0"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")


def _written(rendered: dict[str, list[dict[str, Any]]], root: Path) -> dict[str, list[Path]]:
    return {target: write_manifests(objects, root / target) for target, objects in rendered.items()}


def _kubernetes_validate(version: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATE), "--strict", "-k", version, *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_every_core_manifest_passes_kubernetes_validate_strict(rendered, tmp_path, version):
    files = [p for paths in _written(rendered, tmp_path).values() for p in paths
             if yaml.safe_load(p.read_text())["kind"] not in CUSTOM_KINDS]
    result = _kubernetes_validate(version, files)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(files), result.stdout


def test_kubernetes_validate_strict_rejects_an_unknown_field(rendered, tmp_path):
    deployment = copy.deepcopy(next(o for o in rendered["onprem"] if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = _kubernetes_validate(NEWEST, [path])
    assert result.returncode != 0
    assert "gpuCount" in result.stdout + result.stderr


def _custom_resource_problems(manifest: dict[str, Any]) -> str | None:
    model = getattr(prometheus_operator, manifest["kind"])
    try:
        parsed = model.model_validate(manifest)
    except ValueError as exc:
        return str(exc)
    back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return None if back == manifest else "fields unknown to the CRD were dropped: " + json.dumps(back)[:300]


def test_service_monitors_and_the_prometheus_rule_match_the_operator_crds(rendered):
    customs = [o for objects in rendered.values() for o in objects if o["kind"] in CUSTOM_KINDS]
    assert {o["kind"] for o in customs} == CUSTOM_KINDS
    for manifest in customs:
        assert _custom_resource_problems(manifest) is None, manifest["metadata"]["name"]
    broken = copy.deepcopy(next(o for o in customs if o["kind"] == "ServiceMonitor"))
    broken["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    assert _custom_resource_problems(broken) is not None


def test_checkov_finds_nothing_unjustified_and_still_catches_a_bad_pod(rendered, tmp_path, checkov):
    _written(rendered, tmp_path)
    control = copy.deepcopy(next(o for o in rendered["onprem"] if o["metadata"]["name"].endswith("-gateway")
                                 and o["kind"] == "Deployment"))
    control["metadata"]["name"] = "control-without-hardening"
    container = control["spec"]["template"]["spec"]["containers"][0]
    del container["securityContext"], container["resources"]
    control["metadata"].pop("annotations")
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "deployment.yaml").write_text(yaml.safe_dump(control))
    result = subprocess.run(
        [str(checkov), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
         "-o", "json"], capture_output=True, text=True, timeout=180,
    )
    report = json.loads(result.stdout)["results"]
    failed = [(c["check_id"], c["file_path"]) for c in report["failed_checks"]]
    assert failed and all(path.startswith("/control/") for _, path in failed), failed
    assert {"CKV_K8S_20", "CKV_K8S_13"} <= {check for check, _ in failed}
    for skipped in report["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 40, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"
    assert len(report["passed_checks"]) > 300


def test_several_engines_with_their_own_cache_claims_pass_kubernetes_validate_strict(spec_file, tmp_path):
    from tests.k8s.conftest import spec_for, stack
    from triptyque.k8s.render import render

    config = stack("cloud", spec_file)
    config = config.model_copy(update={"engine": config.engine.model_copy(update={"replicas": 2})})
    engine = next(o for o in render(spec_for(config), config)
                  if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-engine"))
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(engine))
    for version in (OLDEST, NEWEST):
        result = _kubernetes_validate(version, [path])
        assert result.returncode == 0, result.stdout + result.stderr
