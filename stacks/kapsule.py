"""KapsuleCluster: private network, Kapsule cluster (version pinned), system and GPU pools.

Least exposure: the nodes have no public address (they reach the internet, for images
and model weights, through the private network's public gateway), and the API server
answers only the operators' networks (apiSourceRanges) and that gateway (Kapsule's ACL).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scw

from triptyque.k8s.config import GPU_POOL_LABEL, Scaleway
from triptyque.spec import ServiceSpec

GPU_TAINT = "nvidia.com/gpu"


def scaleway_provider(name: str, config: Scaleway, parent: pulumi.Resource) -> scw.Provider:
    # Credentials come from SCW_ACCESS_KEY, SCW_SECRET_KEY and SCW_DEFAULT_PROJECT_ID; the
    # region and zone are pinned here (and checked to be in the EU) rather than read from them.
    return scw.Provider(name, region=config.region, zone=config.zone,
                        opts=pulumi.ResourceOptions(parent=parent))


class KapsuleCluster(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: Scaleway,
        spec: ServiceSpec,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("triptyque:scaleway:KapsuleCluster", name, None, opts)
        self.scaleway = scaleway_provider(f"{name}-scaleway", config, self)
        child = pulumi.ResourceOptions(parent=self, provider=self.scaleway)
        tags = ["triptyque", spec.name]
        self.network = scw.network.PrivateNetwork(
            f"{name}-private", name=f"{spec.name}-private", region=config.region,
            ipv4_subnet=scw.network.PrivateNetworkIpv4SubnetArgs(subnet=config.private_network_subnet),
            tags=tags, opts=child,
        )
        # The nodes' only way out (and back in for their replies): masquerade through a
        # public gateway whose IP is ours, so the API server's ACL can name it.
        self.gateway_ip = scw.network.PublicGatewayIp(
            f"{name}-egress-ip", zone=config.zone, tags=tags, opts=child)
        self.gateway = scw.network.PublicGateway(
            f"{name}-egress", name=f"{spec.name}-egress", type="VPC-GW-S", ip_id=self.gateway_ip.id,
            zone=config.zone, tags=tags, opts=child)
        self.gateway_network = scw.network.GatewayNetwork(
            f"{name}-egress-route", gateway_id=self.gateway.id, private_network_id=self.network.id,
            enable_masquerade=True,
            ipam_configs=[scw.network.GatewayNetworkIpamConfigArgs(push_default_route=True)],
            zone=config.zone, opts=child)
        self.cluster = scw.kubernetes.Cluster(
            name,
            name=spec.name,
            version=config.kapsule_version,
            cni=config.cni,
            region=config.region,
            private_network_id=self.network.id,
            delete_additional_resources=True,
            # The version is pinned: upgrades are a reviewed change of kapsuleVersion.
            auto_upgrade=scw.kubernetes.ClusterAutoUpgradeArgs(
                enable=False, maintenance_window_day="any", maintenance_window_start_hour=3,
            ),
            tags=tags,
            opts=child,
        )
        if not config.api_source_ranges:
            raise pulumi.RunError(
                "triptyque:scaleway.apiSourceRanges: list the networks that may reach the "
                "cluster's API server (where Pulumi and `triptyque kill` run); Kapsule's API "
                "server is open to the internet otherwise")
        self.acl = scw.kubernetes.Acl(
            f"{name}-api-acl", cluster_id=self.cluster.id, region=config.region,
            acl_rules=[
                *(scw.kubernetes.AclAclRuleArgs(ip=cidr, description="operators")
                  for cidr in config.api_source_ranges),
                scw.kubernetes.AclAclRuleArgs(
                    ip=self.gateway_ip.address.apply(lambda a: f"{a}/32"),
                    description="the nodes, through the public gateway"),
            ],
            opts=child,
        )
        nodes = pulumi.ResourceOptions(parent=self, provider=self.scaleway,
                                       depends_on=[self.gateway_network])
        system = config.system_pool
        self.system_pool = scw.kubernetes.Pool(
            f"{name}-system",
            cluster_id=self.cluster.id,
            name="system",
            node_type=system.node_type or "PRO2-XS",
            size=max(system.min_size, 1),
            min_size=system.min_size,
            max_size=system.max_size,
            autoscaling=True,
            autohealing=True,
            public_ip_disabled=True,
            region=config.region,
            zone=config.zone,
            tags=tags,
            opts=nodes,
        )
        gpu = config.gpu_pool
        self.gpu_pool = scw.kubernetes.Pool(
            f"{name}-gpu",
            cluster_id=self.cluster.id,
            name="gpu",
            node_type=gpu.node_type or spec.resources.gpu_type,
            size=max(gpu.min_size, 1),
            min_size=gpu.min_size,
            max_size=gpu.max_size,
            autoscaling=True,
            autohealing=True,
            # Only pods that tolerate the taint (the engine) land on the expensive nodes.
            taints=[scw.kubernetes.PoolTaintArgs(key=GPU_TAINT, value="true", effect="NoSchedule")],
            labels={GPU_POOL_LABEL: "gpu"},
            public_ip_disabled=True,
            region=config.region,
            zone=config.zone,
            tags=tags,
            opts=nodes,
        )
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            self.cluster.kubeconfigs.apply(lambda configs: configs[0].config_file or "")
        )
        self.provider = k8s.Provider(
            f"{name}-kubernetes", kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.system_pool, self.gpu_pool]),
        )
        self.register_outputs({"cluster_id": self.cluster.id, "kubeconfig": self.kubeconfig})
