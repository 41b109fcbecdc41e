"""The playbooks pass ansible-lint's production profile and Ansible's syntax check."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from triptyque.edge.runner import ansible_tool

PLAYBOOKS = ROOT / "playbooks"
EXAMPLE = PLAYBOOKS / "inventories" / "example.yml"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "NO_COLOR": "1"}


def test_ansible_lint_production_profile_is_clean():
    result = subprocess.run([ansible_tool("ansible-lint"), "--offline", "playbooks"], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml")
                                            if p.name != "requirements.yml"))
def test_every_playbook_passes_the_syntax_check(playbook):
    result = subprocess.run([ansible_tool("ansible-playbook"), "--syntax-check", "-i", str(EXAMPLE),
                             playbook], cwd=PLAYBOOKS, env=ENV, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_role_documents_its_arguments_and_declares_handlers_it_notifies():
    for role in (PLAYBOOKS / "roles").iterdir():
        assert (role / "meta" / "argument_specs.yml").is_file(), role.name
        assert (role / "defaults" / "main.yml").is_file(), role.name
        tasks = "".join(p.read_text() for p in (role / "tasks").glob("*.yml"))
        if "notify:" in tasks:
            assert (role / "handlers" / "main.yml").is_file(), role.name


# ---- issue 14: settings the inventory holds reach the play ------------------------------------

LOCAL_HOST = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _play(tmp_path: Path, inventory: dict[str, Any], playbook: list[dict[str, Any]],
          extravars: dict[str, Any] | None = None, roles: Path | None = None, rc: int = 0) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    (tmp_path / "vars.json").write_text(json.dumps(extravars or {}))
    env = {**ENV, "ANSIBLE_ROLES_PATH": str(roles or PLAYBOOKS / "roles"), "ANSIBLE_STDOUT_CALLBACK": "json"}
    result = subprocess.run([ansible_tool("ansible-playbook"), "-i", "inventory.yml", "play.yml",
                             "-e", "@vars.json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == rc, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _messages(stdout: str, task: str) -> dict[str, list[Any]]:
    """Per host, the debug messages of ``task`` in play order (json callback output)."""
    found: dict[str, list[Any]] = {}
    for play in json.loads(stdout)["plays"]:
        for entry in play["tasks"]:
            if entry["task"]["name"].split(" : ")[-1] == task:
                for host, result in entry["hosts"].items():
                    found.setdefault(host, []).append(result["msg"])
    return found


def test_a_mixed_fleet_runs_each_node_s_device_from_the_inventory_over_the_spec_s(tmp_path, edge_spec):
    """The role's own defaults and vars, resolved by Ansible with the rendered extra vars."""
    from tests.edge.test_render import render

    probe = tmp_path / "roles" / "probe"
    (probe / "tasks").mkdir(parents=True)
    for part in ("defaults", "vars"):
        (probe / part).mkdir()
        (probe / part / "main.yml").symlink_to(PLAYBOOKS / "roles" / "triptyque" / part / "main.yml")
    (probe / "tasks" / "main.yml").write_text(yaml.safe_dump([{
        "name": "Device",
        "ansible.builtin.debug": {"msg": "{{ triptyque_engine_device }} {{ _triptyque_engine_argv[-1] }}"}}]))
    gpu_spec = edge_spec.model_copy(update={"resources": edge_spec.resources.model_copy(
        update={"gpu_count": 1, "gpu_type": "nvidia-l4"})})
    rendered = render(gpu_spec, "gpu")
    inventory = {"edge": {"hosts": {"gpu-node": {}, "cpu-node": {"triptyque_engine_device": "cpu"}},
                          "vars": LOCAL_HOST}}
    stdout = _play(tmp_path, inventory, [{"name": "Probe", "hosts": "edge", "gather_facts": False,
                                          "roles": ["probe"]}], rendered, tmp_path / "roles")
    messages = _messages(stdout, "Device")
    assert set(messages) == {"cpu-node", "gpu-node"}, stdout[-2000:]
    assert messages["cpu-node"][0].startswith("cpu ") and messages["gpu-node"][0].startswith("gpu ")
    assert messages["cpu-node"][0].endswith("--enforce-eager")  # the CPU build's argv


def test_the_example_inventory_needs_both_engine_builds():
    from triptyque.edge.inventory import devices_needed, read_inventory

    nodes = read_inventory(EXAMPLE, 8080, ansible_inventory=ansible_tool("ansible-inventory"))
    assert devices_needed(nodes, "gpu") == ("cpu", "gpu")
    assert devices_needed(nodes, "cpu") == ("cpu",)


def test_the_batch_size_set_in_the_inventory_reaches_the_rollout_s_serial(tmp_path):
    from triptyque.edge.inventory import read_play_vars

    site = yaml.safe_load((PLAYBOOKS / "site.yml").read_text())
    rollout = next(play for play in site if "serial" in play)
    inventory = {"edge": {"hosts": {f"n{i}": {} for i in range(4)},
                          "vars": {**LOCAL_HOST, "triptyque_serial": 2}}}
    play = [{"name": "Batches", "hosts": "edge", "gather_facts": False, "serial": rollout["serial"],
             "tasks": [{"name": "Batch", "ansible.builtin.debug": {"msg": "{{ ansible_play_batch | join(',') }}"}}]}]
    # Ansible alone: serial cannot see the inventory's variable (ansible/ansible#18131, #27166),
    # so the rollout would go one node at a time whatever the inventory says.
    alone = _messages(_play(tmp_path / "alone", inventory, play), "Batch")
    assert alone["n0"] == ["n0"]
    # Through the controller, which reads it from the inventory and passes it as an extra var.
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "inventory.yml").write_text(yaml.safe_dump(inventory))
    extravars = read_play_vars(tmp_path / "inv" / "inventory.yml", ansible_inventory=ansible_tool("ansible-inventory"))
    assert extravars == {"triptyque_serial": 2}
    batches = _messages(_play(tmp_path / "controller", inventory, play, extravars), "Batch")
    assert batches["n0"] == ["n0,n1"] and batches["n2"] == ["n2,n3"]


def test_one_dead_node_does_not_stop_the_staging_of_the_others(tmp_path):
    site = yaml.safe_load((PLAYBOOKS / "site.yml").read_text())
    staging, rollout = site
    assert "any_errors_fatal" not in staging
    assert rollout["max_fail_percentage"] == 0  # a failed health gate still stops the rollout
    # Ansible with site.yml's own keywords: one of three nodes fails staging; the other two
    # are staged and rolled out, and the failed one is reported.
    inventory = {"edge": {"hosts": {"n0": {}, "n1": {"broken": True}, "n2": {}}, "vars": LOCAL_HOST}}
    plays = [
        {"name": "Stage", "hosts": "edge", "gather_facts": False,
         "max_fail_percentage": staging["max_fail_percentage"],
         "tasks": [{"name": "Stage", "ansible.builtin.fail": {"msg": "disk full"},
                    "when": "broken | default(false)"}]},
        {"name": "Roll", "hosts": "edge", "gather_facts": False, "serial": rollout["serial"],
         "max_fail_percentage": 0, "tasks": [{"name": "Roll", "ansible.builtin.debug": {"msg": "rolled"}}]},
    ]
    stdout = _play(tmp_path, inventory, plays, rc=2)
    assert set(_messages(stdout, "Roll")) == {"n0", "n2"}
    assert json.loads(stdout)["stats"]["n1"]["failures"] == 1


def _release(root: Path, release: str, components: list[str] | None) -> None:
    folder = root / "releases" / release
    folder.mkdir(parents=True)
    inputs = {} if components is None else {"components": components}
    (folder / "release.json").write_text(json.dumps({"release": release, "inputs": inputs}))


def _prune(tmp_path: Path, root: Path) -> None:
    _play(tmp_path / "run", {"edge": {"hosts": {"node": LOCAL_HOST}}}, [{
        "name": "Prune", "hosts": "edge", "gather_facts": False,
        "vars": {"triptyque_staged": {"root": str(root)}},
        "tasks": [{"name": "Prune", "ansible.builtin.include_role": {
            "name": "triptyque_rollout", "tasks_from": "prune.yml"}}]}])


def test_components_and_virtualenvs_no_kept_release_uses_are_removed(tmp_path):
    root = tmp_path / "opt"
    kept = ["engine-gpu-new", "gateway-new", "model-same", "system-same"]
    _release(root, "r-new", kept)
    _release(root, "r-old", ["engine-gpu-old", "gateway-new", "model-same", "system-same"])
    for folder in ("store", "envs"):
        for component in ["engine-gpu-new", "engine-gpu-old", "engine-gpu-older", "gateway-new", "gateway-older"]:
            (root / folder / component).mkdir(parents=True)
    for component in ("model-same", "system-same", "model-older"):
        (root / "store" / component).mkdir(parents=True)
    _prune(tmp_path, root)
    used = {"engine-gpu-new", "engine-gpu-old", "gateway-new"}
    assert {p.name for p in (root / "envs").iterdir()} == used
    assert {p.name for p in (root / "store").iterdir()} == used | {"model-same", "system-same"}


def test_nothing_is_pruned_while_a_kept_release_does_not_say_what_it_uses(tmp_path):
    root = tmp_path / "opt"
    _release(root, "r-new", ["engine-cpu-new"])
    _release(root, "r-legacy", None)
    for component in ("engine-cpu-new", "engine-cpu-legacy"):
        (root / "envs" / component).mkdir(parents=True)
    (root / "store").mkdir()
    _prune(tmp_path, root)
    assert {p.name for p in (root / "envs").iterdir()} == {"engine-cpu-new", "engine-cpu-legacy"}


def _probe_role(roles: Path, tasks: list[dict[str, Any]]) -> None:
    """A role with the triptyque role's own defaults and vars, running ``tasks``."""
    probe = roles / "probe"
    (probe / "tasks").mkdir(parents=True)
    for part in ("defaults", "vars"):
        (probe / part).mkdir()
        (probe / part / "main.yml").symlink_to(PLAYBOOKS / "roles" / "triptyque" / part / "main.yml")
    (probe / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))


def test_the_disk_check_is_sized_by_the_node_s_device(tmp_path, edge_spec):
    """The preflight's own disk tasks, with df faked at 8 GiB free: enough for the CPU build,
    not for a GPU engine environment (vLLM + CUDA torch wheels of about 4 GB)."""
    from tests.edge.test_render import manifest
    from triptyque.edge.bundle import Component
    from triptyque.edge.render import render_vars

    preflight = yaml.safe_load((PLAYBOOKS / "roles/triptyque/tasks/preflight.yml").read_text())
    disk = [t for t in preflight if t["name"] in ("Preflight | Look for the bundle components already staged here",
                                                 "Preflight | Check the free disk space")]
    assert len(disk) == 2
    fake_df = {"name": "Fake df", "ansible.builtin.set_fact": {
        "__triptyque_df": {"stdout_lines": ["Avail Mounted on", "8192M /"]}}}
    _probe_role(tmp_path / "roles", [fake_df, *disk])
    sizes = {"engine-cpu": 400 << 20, "engine-gpu": 4 << 30, "gateway": 60 << 20, "model": 1 << 20,
             "system": 30 << 20}
    base = manifest("cpu")
    components = {n: Component(n, f"{n}-{'0' * 16}", f"{n}-{'0' * 16}.tar", "f" * 64, 1, size)
                  for n, size in sizes.items()}
    both = dataclasses.replace(base, devices=("cpu", "gpu"), components=components)
    rendered = render_vars(edge_spec, both, bundle_dir=Path("/srv"), api_key_hashes={}, admin_key_hashes={})
    rendered["triptyque_root"] = str(tmp_path / "opt")
    inventory = {"edge": {"hosts": {"cpu-node": {"triptyque_engine_device": "cpu"},
                                    "gpu-node": {"triptyque_engine_device": "gpu"}}, "vars": LOCAL_HOST}}
    stdout = _play(tmp_path / "run", inventory, [{"name": "Probe", "hosts": "edge", "gather_facts": False,
                                                  "roles": ["probe"]}], rendered, tmp_path / "roles", rc=2)
    results = {host: r for play in json.loads(stdout)["plays"] for t in play["tasks"]
               if t["task"]["name"].endswith("Check the free disk space") for host, r in t["hosts"].items()}
    assert not results["cpu-node"].get("failed")
    assert results["gpu-node"]["failed"] and "engine-gpu" in results["gpu-node"]["msg"]
    assert rendered["triptyque_bundle_components"]["engine-gpu"]["disk_mib"] > 10 * 1024


# Ansible's facts for a release: distribution_version is Ubuntu's VERSION_ID (24.04) and
# Debian's point release (12.5, from /etc/debian_version); /etc/os-release's VERSION_ID is
# "24.04" and "12". Before, the bundle said ubuntu-24.04 and the node ubuntu-24.
NODE_FACTS = [
    ({"distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
      "architecture": "x86_64"}, ("ubuntu", "24.04", "amd64"), "ubuntu-24.04-amd64"),
    ({"distribution": "Debian", "distribution_version": "12.5", "distribution_major_version": "12",
      "architecture": "x86_64"}, ("debian", "12", "amd64"), "debian-12-amd64"),
    ({"distribution": "Ubuntu", "distribution_version": "22.04", "distribution_major_version": "22",
      "architecture": "aarch64"}, ("ubuntu", "22.04", "arm64"), "ubuntu-22.04-arm64"),
]


def test_the_bundle_and_the_node_name_a_platform_alike(tmp_path):
    from triptyque.edge.bundle import platform_name

    _probe_role(tmp_path / "roles", [{"name": "Platform",
                                      "ansible.builtin.debug": {"msg": "{{ _triptyque_node_platform }}"}}])
    for index, (facts, os_release, expected) in enumerate(NODE_FACTS):
        assert platform_name(*os_release) == expected  # the controller, from /etc/os-release
        stdout = _play(tmp_path / f"run{index}", {"edge": {"hosts": {"node": LOCAL_HOST}}},
                       [{"name": "Probe", "hosts": "edge", "gather_facts": False, "roles": ["probe"]}],
                       {"_triptyque_node_os": facts}, tmp_path / "roles")
        assert _messages(stdout, "Platform")["node"] == [expected]  # the node, from its facts


def test_a_gpu_node_whose_driver_is_older_than_the_engine_s_cuda_is_refused(tmp_path):
    """The preflight's own driver tasks against a fake nvidia-smi; its -q output carries
    "CUDA Version : X.Y", the highest CUDA the installed driver supports."""
    preflight = yaml.safe_load((PLAYBOOKS / "roles/triptyque/tasks/preflight.yml").read_text())
    driver = [t for t in preflight if "NVIDIA driver" in t["name"]]
    assert len(driver) == 2
    _probe_role(tmp_path / "roles", driver)
    results = {}
    for supported in ("12.4", "12.9"):
        bin_dir = tmp_path / f"bin-{supported}"
        bin_dir.mkdir()
        smi = bin_dir / "nvidia-smi"
        smi.write_text("#!/bin/sh\nprintf 'Driver Version                            : 550.54.15\\n"
                       f"CUDA Version                              : {supported}\\n'\n")
        smi.chmod(0o755)
        inventory = {"edge": {"hosts": {"node": {**LOCAL_HOST, "ansible_env_path": str(bin_dir)}}}}
        play = [{"name": "Probe", "hosts": "edge", "gather_facts": False,
                 "environment": {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, "roles": ["probe"]}]
        stdout = _play(tmp_path / f"run-{supported}", inventory, play,
                       {"triptyque_engine_device": "gpu", "triptyque_bundle_cuda": "12.8"},
                       tmp_path / "roles", rc=2 if supported == "12.4" else 0)
        results[supported] = {t["task"]["name"].split(" : ")[-1]: t["hosts"]["node"]
                              for play in json.loads(stdout)["plays"] for t in play["tasks"]}
    check = "Preflight | Check that the NVIDIA driver runs the engine's CUDA"
    assert results["12.4"][check]["failed"] and "CUDA 12.8" in results["12.4"][check]["msg"]
    assert not results["12.9"][check].get("failed")


def test_the_node_installs_only_the_bundle_s_packages_it_lacks_in_one_dpkg_run(tmp_path):
    install = yaml.safe_load((PLAYBOOKS / "roles/triptyque/tasks/install.yml").read_text())
    task = next(t for t in install if t["name"] == "Install | Install the missing Debian packages from the bundle")
    assert task["ansible.builtin.command"]["argv"].startswith("{{ ['dpkg', '--install'] +")
    debs = ["/s/debs/gcc_12.2.0-14_amd64.deb", "/s/debs/libc6_2.36-9_amd64.deb",
            "/s/debs/libstdc++6_12.2.0-14_amd64.deb", "/s/debs/libc6-dev_2.36-9_amd64.deb"]
    _probe_role(tmp_path / "roles", [{"name": "Missing", "vars": task["vars"],
                                      "ansible.builtin.debug": {"msg": "{{ _triptyque_deb_missing }}"}}])
    facts = {"__triptyque_debs": {"files": [{"path": p} for p in debs]},
             "__triptyque_dpkg": {"stdout_lines": ["gcc not-installed", "libc6 installed", "libstdc++6 installed"]}}
    stdout = _play(tmp_path / "run", {"edge": {"hosts": {"node": LOCAL_HOST}}},
                   [{"name": "Probe", "hosts": "edge", "gather_facts": False, "roles": ["probe"]}],
                   facts, tmp_path / "roles")
    assert _messages(stdout, "Missing")["node"] == [["/s/debs/gcc_12.2.0-14_amd64.deb",
                                                     "/s/debs/libc6-dev_2.36-9_amd64.deb"]]


def test_node_exporter_is_opened_only_to_the_networks_that_scrape_it(tmp_path):
    site = yaml.safe_load((PLAYBOOKS / "site.yml").read_text())
    firewall = next(r for r in site[0]["roles"] if r["role"] == "firewall")
    probe = tmp_path / "roles" / "probe"
    (probe / "tasks").mkdir(parents=True)
    (probe / "vars").mkdir()
    (probe / "vars" / "main.yml").symlink_to(PLAYBOOKS / "roles" / "firewall" / "vars" / "main.yml")
    (probe / "tasks" / "main.yml").write_text(yaml.safe_dump([{"name": "Ports", "ansible.builtin.debug": {
        "msg": "{{ {'any': _firewall_ports, 'sourced': _firewall_sourced | map('last') | list,"
               " 'ports': _firewall_sourced | map('first') | map(attribute='key') | unique | list} }}"}}]))
    common = {"triptyque_gateway_port": 8080, "node_exporter_port": 9100}
    for inventory_vars, sources in (({}, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
                                    ({"triptyque_scrape_sources": ["198.51.100.7/32"]}, ["198.51.100.7/32"])):
        inventory = {"edge": {"hosts": {"node": {**LOCAL_HOST, **inventory_vars}}}}
        play = [{"name": "Probe", "hosts": "edge", "gather_facts": False,
                 "roles": [{"role": "probe", "vars": firewall["vars"]}]}]
        stdout = _play(tmp_path / f"run{len(sources)}", inventory, play, common, tmp_path / "roles")
        shown = _messages(stdout, "Ports")["node"][0]
        assert shown["any"] == [22, 8080]  # SSH and the gateway: the service itself
        assert shown["ports"] == ["9100"] and shown["sourced"] == sources
