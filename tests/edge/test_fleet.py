"""A real two-node edge fleet, walked through its life in file order.

edge1 runs real vLLM, edge2 the fake engine profile (tests/edge/conftest.py says why): the
failures that need a real engine (a crash, an upgrade vLLM refuses) are driven on edge1.

The nodes are Debian hosts booted with systemd and sshd (see fleet.py), with no
route anywhere but their veth: everything they run comes from the offline bundle.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from tests.edge.conftest import ENGINES, Log, gateway, wait_ready
from tests.support import ROOT
from tests.support.fleet import Fleet, Node
from triptyque.edge.bundle import Manifest
from triptyque.targets.edge import EdgeTarget

pytestmark = pytest.mark.fleet

ENGINE, GATEWAY = "triptyque-engine", "triptyque-gateway"
# Stopped. systemd in a container on cgroup v1 (this CI machine) may wait out
# TimeoutStopSec for the emptied cgroup and call a clean stop "failed"; what counts is
# that no engine process is left.
STOPPED = {"inactive", "failed"}


def unit(fleet: Fleet, node: Node, name: str, prop: str) -> str:
    return fleet.ssh(node, f"systemctl show -p {prop} --value {name}").stdout.strip()


def engine_processes(fleet: Fleet, node: Node) -> str:
    return fleet.ssh(node, "pgrep -a -u triptyque-engine", check=False).stdout.strip()


def current_release(fleet: Fleet, node: Node) -> str:
    return Path(fleet.ssh(node, "readlink /opt/triptyque/current").stdout.strip()).name


def chat(edge: EdgeTarget, url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=60.0,
                      headers={"Authorization": f"Bearer {edge.secrets()['api_key']}"},
                      json={"model": edge.spec.model.served_name, "max_tokens": 8,
                            "messages": [{"role": "user", "content": "Bonjour"}]})


def test_the_nodes_have_no_route_off_their_veth(fleet: Fleet):
    probe = ("import errno, socket\n"
             "try:\n    socket.create_connection(('151.101.0.223', 443), timeout=3)\n"
             "except OSError as e:\n    print(errno.errorcode.get(e.errno, e))\n")
    for node in fleet.nodes:
        routes = fleet.ssh(node, "cat /proc/net/route").stdout.splitlines()[1:]
        assert all(line.split()[1] != "00000000" for line in routes), f"{node.name} has a default route"
        # No route means the kernel refuses at once: nothing leaves the node.
        assert fleet.ssh(node, f"python3 -c \"{probe}\"").stdout.strip() == "ENETUNREACH"


def test_check_mode_on_new_nodes_reports_changes_and_changes_nothing(fleet: Fleet, edge: EdgeTarget):
    summary = edge.converge(Log(), check=True, diff=True)
    assert summary.ok, summary.failures
    assert summary.changed() > 0
    for node in fleet.nodes:
        assert fleet.ssh(node, "test -e /opt/triptyque", check=False).returncode != 0


def test_first_converge_installs_from_the_bundle_and_serves(fleet: Fleet, edge: EdgeTarget,
                                                             bundle: tuple[Path, Manifest]):
    log = Log()
    endpoints = edge.up(log)
    assert [e.url for e in endpoints] == [
        f"{gateway(n, edge.spec.gateway.port)}/v1" for n in fleet.nodes]
    runs = sorted((edge.root / "runs").glob("*-site"))
    summary = json.loads((runs[-1] / "summary.json").read_text())
    assert summary["status"] == "successful"
    assert (runs[-1] / "events.jsonl").stat().st_size > 0
    components = bundle[1].components
    assert {"engine-cpu", "engine-fake"} <= set(components)  # the bundle holds both builds
    for node in fleet.nodes:
        verified = fleet.ssh(node, "cat /opt/triptyque/store/*/.verified").stdout.split()
        # Each node stages only its own engine build.
        assert sorted(verified) == sorted(
            c.sha256 for name, c in components.items()
            if not name.startswith("engine-") or name == f"engine-{ENGINES[node.name]}")


def test_second_converge_changes_nothing(edge: EdgeTarget):
    summary = edge.converge(Log())
    assert summary.ok, summary.failures
    assert {host: counts.changed for host, counts in summary.hosts.items()} == {
        "edge1": 0, "edge2": 0}


def test_every_gateway_answers_a_real_chat_completion(fleet: Fleet, edge: EdgeTarget):
    for node in fleet.nodes:
        response = chat(edge, gateway(node, edge.spec.gateway.port))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == edge.spec.model.served_name
        assert body["usage"]["completion_tokens"] > 0


def test_engine_and_gateway_run_as_hardened_units_without_root(fleet: Fleet):
    for node in fleet.nodes:
        for name, user in ((ENGINE, "triptyque-engine"), (GATEWAY, "triptyque-gateway")):
            props = dict(line.split("=", 1) for line in fleet.ssh(node, (
                f"systemctl show {name} -p User -p NoNewPrivileges -p PrivateTmp -p ProtectSystem "
                "-p Restart -p MemoryMax -p ActiveState")).stdout.splitlines())
            assert props == {**props, "User": user, "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                             "ProtectSystem": "strict", "Restart": "on-failure",
                             "ActiveState": "active"}, f"{node.name} {name}"
            assert props["MemoryMax"] != "infinity"
            pid = unit(fleet, node, name, "MainPID")
            assert fleet.ssh(node, f"ps -o user= -p {pid}").stdout.strip() == user


def test_node_exporter_serves_and_the_firewall_lets_the_service_through(fleet: Fleet,
                                                                       edge: EdgeTarget):
    for node in fleet.nodes:
        metrics = httpx.get(f"http://{node.address}:9100/metrics", timeout=10.0)
        assert metrics.status_code == 200 and "node_cpu_seconds_total" in metrics.text
    guarded = fleet.nodes[0]
    status = fleet.ssh(guarded, "ufw status").stdout
    assert "Status: active" in status
    assert f"{edge.spec.gateway.port}/tcp" in status and "9100/tcp" in status


def test_status_reports_each_node_ready_with_its_release(fleet: Fleet, edge: EdgeTarget):
    reports = edge.status()
    assert [(r.node, r.reachable, r.ready, r.engaged) for r in reports] == [
        ("edge1", True, True, False), ("edge2", True, True, False)]
    for report, node in zip(reports, fleet.nodes, strict=True):
        assert report.extra["release"] == current_release(fleet, node)
        assert report.extra["units"][f"{ENGINE}.service"]["ActiveState"] == "active"


def test_fleet_kill_stops_every_gateway_and_resume_brings_them_back(fleet: Fleet,
                                                                    edge: EdgeTarget):
    reports = edge.kill("ci", "fleet kill test")
    assert [(r.node, r.reachable, r.engaged) for r in reports] == [
        ("edge1", True, True), ("edge2", True, True)]
    assert all(0 < r.seconds < 5 for r in reports)
    for node in fleet.nodes:
        assert chat(edge, gateway(node, edge.spec.gateway.port)).status_code == 503
    reports = edge.resume("ci", "fleet kill test over")
    assert [(r.reachable, r.engaged) for r in reports] == [(True, False), (True, False)]
    for node in fleet.nodes:
        assert chat(edge, gateway(node, edge.spec.gateway.port)).status_code == 200


def test_the_cli_reports_an_unreachable_node_loudly_and_exits_non_zero(
        fleet: Fleet, edge: EdgeTarget, state_root: Path, inventory: Path):
    from triptyque.cli import app

    # A gateway that does not answer: a closed port on a node we made (edge2's firewall is
    # off, so the connection is refused at once and nothing leaves the fleet's links).
    hosts = yaml.safe_load(inventory.read_text())
    hosts["edge"]["hosts"]["edge-ghost"] = {
        "ansible_host": fleet.nodes[1].address,
        "triptyque_gateway_url": f"http://{fleet.nodes[1].address}:9"}
    ghost = state_root / "with-ghost.yml"
    ghost.write_text(yaml.safe_dump(hosts))
    runner = CliRunner()
    args = ["--spec", str(ROOT / "serving" / "service.yaml"), "--state-dir", str(state_root),
            "--target", "edge", "--inventory", str(ghost), "--operator", "ci"]
    killed = runner.invoke(app, ["kill", *args, "--reason", "ghost test"])
    assert killed.exit_code == 1, killed.output
    assert "edge-ghost" in killed.output and "NO" in killed.output
    for node in fleet.nodes:
        assert httpx.get(f"{gateway(node, edge.spec.gateway.port)}/readyz").status_code == 503
    resumed = runner.invoke(app, ["resume", *[a if a != str(ghost) else str(inventory) for a in args],
                                  "--reason", "ghost test over"])
    assert resumed.exit_code == 0, resumed.output


def test_a_crashed_engine_is_restarted_by_systemd_and_readiness_returns(fleet: Fleet,
                                                                       edge: EdgeTarget):
    node = fleet.nodes[0]
    restarts = int(unit(fleet, node, ENGINE, "NRestarts"))
    fleet.ssh(node, f"kill -9 {unit(fleet, node, ENGINE, 'MainPID')}")
    url = gateway(node, edge.spec.gateway.port)
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
        assert time.monotonic() < deadline, "readiness never dropped after the engine was killed"
        time.sleep(0.5)
    seconds = wait_ready(url, timeout=300)
    print(f"{node.name}: ready again {seconds:.0f} s after the engine was killed")
    assert int(unit(fleet, node, ENGINE, "NRestarts")) == restarts + 1
    assert chat(edge, url).status_code == 200


def test_an_upgrade_that_fails_readiness_stops_the_rollout_and_rolls_back(
        fleet: Fleet, edge: EdgeTarget, bundle: tuple[Path, Manifest]):
    first, second = fleet.nodes
    before = {node.name: current_release(fleet, node) for node in fleet.nodes}
    # The tiny model has 512 positions: vLLM refuses a longer context and exits at start.
    spec = edge.spec.model_copy(update={"engine": edge.spec.engine.model_copy(
        update={"max_model_len": 4096})})
    broken = EdgeTarget(spec, edge.root, edge.inventory, bundle_dir=bundle[0],
                        cache_dir=edge.cache_dir)
    other = gateway(second, edge.spec.gateway.port)
    answers: list[int] = []
    stop = threading.Event()

    def watch_other_node() -> None:
        while not stop.is_set():
            try:
                answers.append(httpx.get(f"{other}/readyz", timeout=5).status_code)
            except httpx.HTTPError:
                answers.append(0)
            stop.wait(1.0)

    watcher = threading.Thread(target=watch_other_node)
    watcher.start()
    try:
        summary = broken.converge(Log())
    finally:
        stop.set()
        watcher.join()
    assert not summary.ok
    message = " ".join(summary.failures)
    assert "edge1" in message and "failed its health gate" in message
    assert f"Rolled back to {before['edge1']}, which serves again" in message
    assert "crashed during the health gate" in message
    assert "edge2" not in message
    assert summary.result("edge2", "Service | Point current at the staged release") is None
    assert {n.name: current_release(fleet, n) for n in fleet.nodes} == before
    staged = summary.result("edge1", "Configure | Describe the staged release for the rollout")
    assert staged is not None
    new_release = staged.facts["triptyque_staged"]["id"]
    assert new_release != before["edge1"]
    assert fleet.ssh(first, f"test -d /opt/triptyque/releases/{new_release}").returncode == 0
    assert answers and set(answers) == {200}, f"edge2 stopped serving during the rollout: {answers}"
    for node in fleet.nodes:
        assert chat(edge, gateway(node, edge.spec.gateway.port)).status_code == 200


def test_hard_kill_stops_the_engines_through_systemd_and_resume_starts_them(fleet: Fleet,
                                                                            edge: EdgeTarget):
    reports = edge.kill("ci", "hard kill test", hard=True)
    assert [(r.reachable, r.engaged, r.extra["engine_stopped"]) for r in reports] == [
        (True, True, True), (True, True, True)]
    for node in fleet.nodes:
        assert unit(fleet, node, ENGINE, "ActiveState") in STOPPED
        assert engine_processes(fleet, node) == ""
        assert unit(fleet, node, GATEWAY, "ActiveState") == "active"
    reports = edge.resume("ci", "hard kill test over", Log())
    assert [(r.reachable, r.engaged, r.extra["engine_started"]) for r in reports] == [
        (True, False, True), (True, False, True)]
    for node in fleet.nodes:
        assert wait_ready(gateway(node, edge.spec.gateway.port), timeout=60) < 60


def test_check_mode_of_the_other_playbooks_changes_nothing(fleet: Fleet, edge: EdgeTarget):
    from triptyque.edge.runner import run_playbook

    for playbook, extra in (("engine.yml", {"triptyque_engine_state": "stopped"}),
                            ("down.yml", {}), ("status.yml", {})):
        summary = run_playbook(playbook, inventory=edge.inventory, extravars=extra,
                               state_dir=edge.root, progress=Log(), check=True, diff=True)
        assert summary.ok, (playbook, summary.failures)
    for node in fleet.nodes:
        assert unit(fleet, node, ENGINE, "ActiveState") == "active"


def test_down_stops_the_service_and_keeps_the_releases(fleet: Fleet, edge: EdgeTarget):
    edge.down(Log())
    for node in fleet.nodes:
        assert unit(fleet, node, ENGINE, "ActiveState") in STOPPED
        assert engine_processes(fleet, node) == ""
        assert unit(fleet, node, GATEWAY, "ActiveState") == "inactive"
        assert fleet.ssh(node, "test -L /opt/triptyque/current").returncode == 0
    reports = edge.status()
    assert not any(r.reachable for r in reports)
    assert all(r.extra["release"] for r in reports)
