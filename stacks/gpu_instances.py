"""GpuInstances (the cloud-vm flavour): Scaleway GPU instances for the edge playbooks.

Pulumi creates the machines, their public addresses and a security group that lets in
SSH and the gateway port only from the configured ranges; the edge target then
configures them with the playbooks, using the inventory exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumiverse_scaleway as scw
import yaml

from stacks.kapsule import scaleway_provider
from triptyque.edge.platforms import normalise_platform
from triptyque.k8s.config import Scaleway, Vms
from triptyque.spec import ServiceSpec

INVENTORY_GROUP = "edge"


def inventory(hosts: Sequence[tuple[str, str]], ssh_user: str, platform: str) -> str:
    """An Ansible YAML inventory in the edge target's shape (playbooks/inventories/example.yml):
    one host per (name, public address) in the ``edge`` group, each running the GPU engine on
    the image's platform (the bundle then carries a part built from that distribution)."""
    document: dict[str, Any] = {INVENTORY_GROUP: {
        "hosts": {name: {"ansible_host": address, "triptyque_engine_device": "gpu",
                         "triptyque_platform": platform}
                  for name, address in hosts},
        "vars": {"ansible_user": ssh_user},
    }}
    return yaml.safe_dump(document, sort_keys=False)


def _inbound(ranges: Sequence[str], port: int) -> list[scw.instance.SecurityGroupInboundRuleArgs]:
    return [
        scw.instance.SecurityGroupInboundRuleArgs(action="accept", protocol="TCP", port=port, ip_range=cidr)
        for cidr in ranges
    ]


class GpuInstances(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: Scaleway,
        vms: Vms,
        spec: ServiceSpec,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("triptyque:scaleway:GpuInstances", name, None, opts)
        self.scaleway = scaleway_provider(f"{name}-scaleway", config, self)
        child = pulumi.ResourceOptions(parent=self, provider=self.scaleway)
        tags = ["triptyque", spec.name]
        # Scaleway copies the project's SSH keys into new instances at creation time.
        self.ssh_key = scw.iam.SshKey(
            f"{name}-operator", name=f"{spec.name}-operator", public_key=vms.ssh_public_key, opts=child,
        )
        self.security_group = scw.instance.SecurityGroup(
            f"{name}-firewall",
            name=f"{spec.name}-gpu-nodes",
            zone=config.zone,
            stateful=True,
            inbound_default_policy="drop",
            outbound_default_policy="accept",
            inbound_rules=_inbound(vms.ssh_source_ranges, 22)
            + _inbound(vms.gateway_source_ranges, spec.gateway.port),
            tags=tags,
            opts=child,
        )
        # The machines are amd64 (Scaleway's GPU instances); refused at once if unknown.
        platform = normalise_platform(vms.node_platform)
        self.servers: list[scw.instance.Server] = []
        addresses: list[pulumi.Output[str]] = []
        for index in range(vms.count):
            host = f"{spec.name}-gpu-{index}"
            address = scw.instance.Ip(f"{name}-ip-{index}", zone=config.zone, tags=tags, opts=child)
            self.servers.append(scw.instance.Server(
                f"{name}-{index}",
                name=host,
                type=spec.resources.gpu_type,
                image=vms.image,
                zone=config.zone,
                ip_id=address.id,
                security_group_id=self.security_group.id,
                root_volume=scw.instance.ServerRootVolumeArgs(
                    size_in_gb=vms.root_volume_gb, delete_on_termination=True,
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.scaleway, depends_on=[self.ssh_key]
                ),
            ))
            addresses.append(address.address.apply(lambda a: a or ""))
        names = [f"{spec.name}-gpu-{index}" for index in range(vms.count)]
        self.inventory = pulumi.Output.all(*addresses).apply(
            lambda ips: inventory(list(zip(names, ips, strict=True)), vms.ssh_user, platform)
        )
        self.register_outputs({"inventory": self.inventory})
