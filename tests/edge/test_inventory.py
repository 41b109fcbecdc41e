"""Nodes and gateway URLs come from the inventory, as Ansible itself reads it."""

from __future__ import annotations

import pytest

from tests.support import ROOT
from triptyque.edge.inventory import nodes_from_listing, read_inventory
from triptyque.edge.runner import ansible_tool
from triptyque.errors import TargetError
from triptyque.targets.registry import make_target

EXAMPLE = ROOT / "playbooks" / "inventories" / "example.yml"


def test_the_example_inventory_names_three_nodes_with_their_gateways():
    nodes = read_inventory(EXAMPLE, 8080, ansible_inventory=ansible_tool("ansible-inventory"))
    assert [n.name for n in nodes] == ["edge-paris-1", "edge-paris-2", "edge-lyon-1"]
    assert nodes[0].gateway_url == "http://192.0.2.11:8080"


def test_hosts_of_child_groups_count_and_a_gateway_url_can_be_set_per_host():
    listing = {
        "_meta": {"hostvars": {"a": {"ansible_host": "10.0.0.1"},
                               "b": {"triptyque_gateway_url": "https://b.example/"},
                               "c": {"ansible_host": "fd00::3"}}},
        "edge": {"children": ["paris"], "hosts": ["a"]},
        "paris": {"hosts": ["b", "c"]},
    }
    nodes = nodes_from_listing(listing, 8080)
    assert [(n.name, n.gateway_url) for n in nodes] == [
        ("a", "http://10.0.0.1:8080"), ("b", "https://b.example"), ("c", "http://[fd00::3]:8080")]


def test_an_inventory_without_edge_hosts_says_where_to_put_them(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("web:\n  hosts:\n    w1:\n")
    with pytest.raises(TargetError, match="no hosts in group 'edge'"):
        read_inventory(inventory, 8080, ansible_inventory=ansible_tool("ansible-inventory"))


def test_a_missing_inventory_file_is_one_line(tmp_path):
    with pytest.raises(TargetError, match=r"inventory .* not found: pass --inventory FILE"):
        read_inventory(tmp_path / "nope.yml", 8080, ansible_inventory="ansible-inventory")


def test_the_registry_asks_for_an_inventory(edge_spec, tmp_path):
    with pytest.raises(TargetError, match="needs an inventory: pass --inventory FILE"):
        make_target("edge", edge_spec, state_root=tmp_path)
    target = make_target("edge", edge_spec, state_root=tmp_path, inventory=EXAMPLE)
    assert target.name == "edge"


def test_an_unknown_engine_build_in_the_inventory_is_one_line_naming_the_node() -> None:
    from triptyque.edge.inventory import EdgeNode, parts_needed

    node = EdgeNode(name="shop", address="10.0.0.1", gateway_url="http://10.0.0.1:8080", device="tpu")
    with pytest.raises(TargetError) as refused:
        parts_needed([node], "cpu", controller=("debian-12-amd64", "3.11"))
    assert str(refused.value) == ("triptyque_engine_device tpu for shop in the inventory: use cpu, gpu or fake")
