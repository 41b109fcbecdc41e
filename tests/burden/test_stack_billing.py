"""The cloud stack rendered under Pulumi's mocks: every billable resource it creates is priced, as created.

``triptyque.burden.deployed`` reads the stack config the Pulumi program reads; this test
runs the program itself (``stacks.program.build``) and checks, resource by resource, that
the model bills what it registers: the GPU and system pools with their node types and
minimum sizes, the model-cache volume, the load balancer, a control plane with no type
(Kapsule's shared one). A Scaleway resource type the model does not know fails the test
until it is priced or declared free here with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.conftest import write_spec
from tests.stacks.conftest import example, run_stack
from triptyque.burden import tco
from triptyque.burden.deployed import cloud_deployment, gigabytes
from triptyque.burden.figures import Figures
from triptyque.spec import load_spec

from .conftest import scenario

PRICED = {"scaleway:kubernetes/pool:Pool", "scaleway:kubernetes/cluster:Cluster",
          "scaleway:network/publicGateway:PublicGateway", "scaleway:network/publicGatewayIp:PublicGatewayIp"}
FREE = {"scaleway:network/privateNetwork:PrivateNetwork": "Scaleway private networks are free",
        "scaleway:network/gatewayNetwork:GatewayNetwork": "the gateway's attachment to the private network",
        "scaleway:kubernetes/acl:Acl": "the API server's allow list, a setting of the cluster"}


@pytest.mark.parametrize("gpu_min", [1, 0])
def test_every_billable_resource_of_the_rendered_cloud_stack_is_priced_as_created(
    tmp_path: Path, figures: Figures, gpu_min: int
) -> None:
    spec_path = write_spec(tmp_path)
    base = example("cloud", spec_path)
    scaleway = base.scaleway_or_default
    config = base.model_copy(update={"scaleway": scaleway.model_copy(update={
        "gpu_pool": scaleway.gpu_pool.model_copy(update={"min_size": gpu_min})})})
    ran = run_stack(config)
    deployed = cloud_deployment(config, load_spec(spec_path, "cloud"), "Pulumi.cloud.yaml")

    unknown = {r.type for r in ran.resources if r.type.startswith("scaleway:")} - PRICED - set(FREE)
    assert not unknown, f"billable? price these or declare them free: {unknown}"
    pools = {r.props["name"]: r.props for r in ran.of_type("scaleway:kubernetes/pool:Pool")}
    assert (pools["gpu"]["nodeType"], pools["gpu"]["minSize"], pools["gpu"]["maxSize"]) == (
        deployed.gpu_node_type, deployed.gpu_min, deployed.gpu_max)
    assert (pools["system"]["nodeType"], pools["system"]["size"]) == (deployed.system_node_type, deployed.system_min)
    gateways = ran.of_type("scaleway:network/publicGateway:PublicGateway")
    assert [g.props["type"] for g in gateways] == [deployed.public_gateway]
    assert len(ran.of_type("scaleway:network/publicGatewayIp:PublicGatewayIp")) == 1
    cluster = ran.one("scaleway:kubernetes/cluster:Cluster", "kapsule")
    assert cluster.props.get("type") in (None, "kapsule")  # the shared control plane
    claims = ran.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert [gigabytes(c.props["spec"]["resources"]["requests"]["storage"]) for c in claims] == [deployed.volume_gb]
    balancers = [s for s in ran.of_type("kubernetes:core/v1:Service") if s.props["spec"].get("type") == "LoadBalancer"]
    assert len(balancers) == deployed.load_balancers == 1

    s, f = scenario(figures, gpu_type="L4", cloud={"always_on": False, "control_plane": "shared"},
                    traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 1})
    cost = tco.cloud(s, f, {}, deployed)
    priced = {i.name: i for i in cost.items}
    gpu_line = priced[f"GPU nodes ({pools['gpu']['nodeType']}, billed per minute)"]
    hours = f.value("time.hours_per_month")
    if pools["gpu"]["minSize"] >= 1:  # nodes the pool never removes are billed every hour of the month
        assert cost.sizing["billed_hours_per_node_month"] == hours
    else:
        assert cost.sizing["billed_hours_per_node_month"] < hours
    assert gpu_line.monthly == pytest.approx(cost.sizing["nodes"] * cost.sizing["billed_hours_per_node_month"]
                                             * f.value(f"cloud.node.{pools['gpu']['nodeType']}.eur_per_hour"))
    assert priced[f"system pool ({pools['system']['nodeType']})"].monthly == pytest.approx(
        pools["system"]["size"] * hours * f.value(f"cloud.node.{pools['system']['nodeType']}.eur_per_hour"))
    assert priced["model-cache volume (sbs-default)"].monthly == pytest.approx(
        deployed.volume_gb * f.value("cloud.block_storage_eur_per_gb_month"))
    assert priced["load balancer"].monthly == pytest.approx(f.value("cloud.load_balancer_eur_per_month"))
    assert priced["control plane (shared)"].monthly == 0
    assert priced[f"public gateway ({deployed.public_gateway}) and its IP"].monthly == pytest.approx(
        hours * (f.value(f"cloud.public_gateway.{deployed.public_gateway}.eur_per_hour")
                 + f.value("cloud.flexible_ip_eur_per_hour")))


def test_each_engine_replica_s_own_cache_volume_is_priced(tmp_path: Path, figures: Figures) -> None:
    """Two engines get one ephemeral cache claim each (triptyque/k8s/engine.py): both are billed."""
    spec_path = write_spec(tmp_path)
    base = example("cloud", spec_path)
    config = base.model_copy(update={"engine": base.engine.model_copy(update={"replicas": 2})})
    ran = run_stack(config)
    deployed = cloud_deployment(config, load_spec(spec_path, "cloud"), "Pulumi.cloud.yaml")

    engine = next(d for d in ran.of_type("kubernetes:apps/v1:Deployment") if d.props["spec"]["template"]["spec"]
                  .get("volumes") and any("ephemeral" in v for v in d.props["spec"]["template"]["spec"]["volumes"]))
    claim = next(v for v in engine.props["spec"]["template"]["spec"]["volumes"] if "ephemeral" in v)
    per_pod = gigabytes(claim["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"])
    assert engine.props["spec"]["replicas"] == deployed.engine_replicas == 2
    assert deployed.volume_gb == pytest.approx(2 * per_pod)
    s, f = scenario(figures, gpu_type="L4", cloud={"always_on": False, "control_plane": "shared"},
                    traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 1})
    priced = {i.name: i for i in tco.cloud(s, f, {}, deployed).items}
    assert priced["model-cache volume (sbs-default)"].monthly == pytest.approx(
        2 * per_pod * f.value("cloud.block_storage_eur_per_gb_month"))
