"""Static burden: counted from the artefacts on disk, and 'not rendered' rather than guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ROOT
from triptyque.burden.figures import Figures
from triptyque.burden.static import TargetBurden, edge_burden, k8s_burden, load_skills, local_burden, scan
from triptyque.spec import DEFAULT_SPEC, load_spec

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`triptyque render` output for onprem, from a spec whose images carry real-looking digests."""
    from triptyque.k8s import load_stack_config, render, write_manifests

    spec = load_spec(ROOT / DEFAULT_SPEC, target="onprem")
    images = spec.images.model_copy(update={  # type: ignore[union-attr]
        "engine": f"docker.io/vllm/vllm-openai:v0.32.0@{DIGEST}",
        "gateway": f"ghcr.io/triptyque/gateway:0.1.0@{DIGEST}"})
    out = tmp_path_factory.mktemp("render")
    write_manifests(render(spec.model_copy(update={"images": images}), load_stack_config(ROOT, "onprem")),
                    out / "onprem")
    return out


def test_the_local_target_owns_each_of_its_processes_and_their_pins() -> None:
    from triptyque.targets.local import SERVICES

    burden = local_burden(ROOT, "0.32.0")
    assert [i.name for i in burden.of("component")][:len(SERVICES)] == list(SERVICES)
    lock = next(i for i in burden.of("pinned") if i.name == "requirements.lock")
    assert "Python packages pinned" in lock.detail
    assert burden.counts()["manual_steps"] > 10
    assert burden.missing == []


def test_the_edge_burden_is_read_from_the_playbooks() -> None:
    burden = edge_burden(ROOT, "0.32.0")
    units = {i.name for i in burden.of("component")}
    assert {"triptyque-engine", "triptyque-gateway"} <= units
    assert any(i.name.startswith("Ansible collection community.general") for i in burden.of("dependency"))
    assert burden.facts["tasks"] > 10 and burden.counts()["provider_specific_resources"] == 0


def test_a_checkout_without_artefacts_says_not_rendered_instead_of_counting(tmp_path: Path) -> None:
    edge = edge_burden(tmp_path, None)
    assert edge.counts()["components"] == 0
    assert edge.missing == ["playbooks/site.yml not found: the edge target is not rendered; "
                            "components, tasks and pins not counted"]
    cloud = k8s_burden(tmp_path, "cloud", rendered=tmp_path / "render")
    assert any(m.startswith("manifests not rendered") for m in cloud.missing)
    assert any(m.startswith("stack file not read") for m in cloud.missing)
    assert "monitoring/runbook.md not found: manual steps not counted" in cloud.missing


def test_rendered_manifests_are_counted_as_portable_objects_and_pinned_images(rendered: Path) -> None:
    burden = k8s_burden(ROOT, "onprem", rendered=rendered)
    assert burden.missing == []
    assert burden.facts["kubernetes_objects"] > 5
    assert {i.name for i in burden.of("pinned")} >= {"docker.io/vllm/vllm-openai:v0.32.0",
                                                     "ghcr.io/triptyque/gateway:0.1.0"}
    assert {"engine Deployment", "gateway Deployment"} <= {i.name for i in burden.of("component")}
    assert burden.counts()["provider_specific_resources"] == 0


def test_the_cloud_stack_counts_scaleway_resources_as_provider_specific() -> None:
    burden = k8s_burden(ROOT, "cloud")
    specific = {i.name for i in burden.items if i.kind == "resource" and not i.portable}
    assert {"kubernetes.Cluster", "kubernetes.Pool", "network.PrivateNetwork"} <= specific
    assert not any(name.endswith("Args") for name in specific)


def test_every_tag_the_scanners_use_maps_to_skills_and_a_role(rendered: Path) -> None:
    skills = load_skills(ROOT / "burden" / "skills.yaml")
    for burden in scan(ROOT, spec_version="0.32.0", rendered=rendered).values():
        assert burden.unmapped_tags(skills) == []
        assert burden.skills(skills)


def test_the_fte_estimate_is_the_counts_times_the_hours_figures(figures: Figures) -> None:
    skills = load_skills(ROOT / "burden" / "skills.yaml")
    burden = TargetBurden("x")
    burden.add("vLLM", "component", ["engine"], "here")
    burden.add("gateway", "component", ["gateway"], "here")
    burden.add("chart", "pinned", ["helm"], "here")
    burden.add("restart it", "manual_step", ["runbook"], "here")
    burden.add("cluster", "component", ["kubernetes"], "here", hours="burden.hours_kubernetes_cluster_year")
    v = figures.value
    assert burden.hours(skills, figures, {"support": 10}) == pytest.approx({
        "mlops": v("burden.hours_per_component_year"),
        "sre": v("burden.hours_per_component_year") + v("burden.hours_per_pinned_version_year")
        + v("burden.hours_per_manual_step_year") + v("burden.hours_kubernetes_cluster_year"),
        "support": 10})
    fte = burden.fte(skills, figures)
    assert fte["mlops"] == pytest.approx(v("burden.hours_per_component_year") / v("people.hours_per_fte_year"))
