"""A fleet of real Debian hosts on this machine, for the edge target's tests.

Each node is a debootstrapped Debian booted by ``systemd-nspawn`` with systemd as
PID 1 and sshd, on its own overlayfs over one cached base root filesystem, in its
own network namespace joined to the host by a veth pair:

    host  10.213.<n>.1/30  <-- veth -->  10.213.<n>.2/30  node n (no default route)

Nodes reach nothing but the host's end of their veth, so anything they install must
come from the bundle the playbook copies over SSH. Several fleets may run at once (the test
suite's two lanes, a bench): machines, namespaces and links are named by run, and subnets
are chosen under a lock. Everything a fleet creates
(containers, mounts, namespaces, links, run folders) is recorded in a state file as
it is made and removed by ``Fleet.stop()``, by ``atexit`` and, for runs that died
before cleaning up, by ``reap_stale()`` at the next start.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml

from triptyque.cachefill import locked
from triptyque.rootfs import RootfsError, debootstrap_once
from triptyque.wait import WaitTimeout, wait_until

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("TRIPTYQUE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What an edge node is expected to have before triptyque touches it: an init, sshd
# and Python for Ansible. Everything else comes from the bundle.
BASE_PACKAGES = ("systemd-sysv", "dbus", "openssh-server", "python3")
# Installed but inactive, as on many Debian servers; Fleet(firewalled=...) turns it on.
FIREWALL_PACKAGE = "ufw"
HOST_PACKAGES = {  # command -> Debian package that provides it
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "ssh": "openssh-client",
}
SUBNET_PREFIX = "10.213"
RUN_ROOT = Path(os.environ.get("TRIPTYQUE_FLEET_RUN_ROOT", "/var/tmp/triptyque-fleet"))
# Every node's systemd (PID 1, journald, logind, udev...) opens inotify instances as root, the
# host's own uid here (no user namespace), and the kernel's default cap is 128 per uid: past about
# 20 nodes a node's systemd cannot start (seen here: the 22nd of 32 never answered). Podman raises
# the same limit for its machines (containers/podman#19849). The fleet raises it, never lowers it.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_NODE = 16


class FleetError(RuntimeError):
    pass


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise FleetError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def ensure_host_packages() -> list[str]:
    """Install the harness's own Debian packages when a command is missing; return them."""
    missing = sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return missing


# Other distributions a node may run (``Fleet(distribution=...)``): the suite, and the
# triptyque platform whose archive and verified keyring debootstrap then uses.
SUITES = {DEBIAN_SUITE: None, "noble": "ubuntu-24.04"}


def _debootstrap_source(suite: str, cache_dir: Path) -> tuple[str, list[str], list[str]]:
    """The mirror and extra debootstrap arguments for ``suite``: Debian's from this machine's
    keyring; another distribution's with its keyring checked against the SHA-256 pinned in
    triptyque.edge.platforms, and the script of its family when this debootstrap predates it
    (all Ubuntu releases since 7.10 use the ``gutsy`` script)."""
    if suite not in SUITES:
        raise FleetError(f"no fleet base for {suite!r}: use one of {', '.join(SUITES)}")
    release = SUITES[suite]
    if release is None:
        return DEBIAN_MIRROR, [], []
    from triptyque.edge.platforms import DISTRIBUTIONS, verified_keyring

    distribution = DISTRIBUTIONS[release]
    keyring = verified_keyring(distribution, "amd64", cache_dir)
    script = Path("/usr/share/debootstrap/scripts") / suite
    return (distribution.mirror("amd64"), [f"--keyring={keyring}"],
            [] if script.exists() else [str(script.with_name("gutsy"))])


def base_image(cache_dir: Path, suite: str = DEBIAN_SUITE) -> Path:
    """The debootstrapped root filesystem, built once and reused while its recipe holds."""
    packages = sorted({*BASE_PACKAGES, FIREWALL_PACKAGE})
    mirror, options, script = _debootstrap_source(suite, cache_dir)
    recipe = json.dumps([suite, mirror, packages, 1])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    home = cache_dir / "fleet" / f"base-{suite}-{key}"
    try:
        return debootstrap_once(home, suite=suite, mirror=mirror, packages=packages, options=options,
                                script=script, recipe=recipe, prepare=_prepare_base, timeout=900)
    except RootfsError as exc:
        raise FleetError(str(exc)) from None


def _prepare_base(rootfs: Path) -> None:
    # Nodes are offline: apt has nothing to reach, and the package cache is dead weight.
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    # A container has no consoles to log in on.
    for unit in ("getty@tty1.service", "console-getty.service"):
        (rootfs / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (rootfs / "etc/systemd/system" / unit).symlink_to("/dev/null")


@dataclass
class Node:
    name: str
    index: int
    address: str
    host_address: str
    netns: str
    host_link: str
    machine: str
    workdir: str
    pid: int = 0
    mounted: bool = False

    @property
    def root(self) -> Path:
        return Path(self.workdir) / "merged"


@dataclass
class FleetState:
    run_id: str
    owner_pid: int
    nodes: list[Node] = field(default_factory=list)


class Fleet:
    """``with Fleet(2) as fleet:`` boots two nodes and removes every trace on exit."""

    def __init__(self, size: int, *, cache_dir: Path, boot_timeout: float = 60.0,
                 firewalled: tuple[int, ...] = (), distribution: str = DEBIAN_SUITE) -> None:
        self.size = size
        self.distribution = distribution  # the nodes' suite: bookworm, or noble (Ubuntu 24.04)
        self.firewalled = firewalled
        self.cache_dir = cache_dir
        self.boot_timeout = boot_timeout
        self.run_id = secrets.token_hex(3)
        self.run_dir = RUN_ROOT / self.run_id
        self.state = FleetState(self.run_id, os.getpid())
        self.key = self.run_dir / "id_ed25519"
        self._stopped = False
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise FleetError("the test fleet needs root (namespaces, mounts, systemd-nspawn)")
        ensure_host_packages()
        reap_stale()
        _ensure_inotify_instances(128 + INOTIFY_PER_NODE * self.size)
        base = base_image(self.cache_dir, self.distribution)
        self.run_dir.mkdir(parents=True)
        atexit.register(self.stop)
        self._save()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fleet-{self.run_id}",
             "-f", str(self.key))
        try:
            # Another fleet may be starting beside this one (the suite's two lanes, a bench):
            # its subnets are taken once its links carry them, so choose and claim under a lock.
            with locked(RUN_ROOT / "subnets"):
                octets = _free_octets(self.size)
                for index, octet in enumerate(octets, start=1):
                    self._boot(index, octet, base)
            for node in self.state.nodes:
                self._wait_for_ssh(node)
                if node.index in self.firewalled:
                    self.ssh(node, "ufw allow 22/tcp && ufw --force enable")
        except BaseException:
            self.stop()
            raise

    def _boot(self, index: int, octet: int, base: Path) -> None:
        tag = f"{self.run_id}{index}"
        node = Node(
            name=f"edge{index}", index=index,
            address=f"{SUBNET_PREFIX}.{octet}.2", host_address=f"{SUBNET_PREFIX}.{octet}.1",
            netns=f"tq-{tag}", host_link=f"tq{tag}", machine=f"tq-{tag}",
            workdir=str(self.run_dir / f"edge{index}"),
        )
        self.state.nodes.append(node)
        self._save()
        work = Path(node.workdir)
        for sub in ("upper", "work", "merged"):
            (work / sub).mkdir(parents=True)
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={work / 'upper'},workdir={work / 'work'}", str(node.root))
        node.mounted = True
        self._save()
        _run("ip", "netns", "add", node.netns)
        _run("ip", "link", "add", node.host_link, "type", "veth", "peer", "name", "host0",
             "netns", node.netns)
        _run("ip", "addr", "add", f"{node.host_address}/30", "dev", node.host_link)
        _run("ip", "link", "set", node.host_link, "up")
        _run("ip", "-n", node.netns, "addr", "add", f"{node.address}/30", "dev", "host0")
        _run("ip", "-n", node.netns, "link", "set", "host0", "up")
        _run("ip", "-n", node.netns, "link", "set", "lo", "up")
        self._personalise(node)
        self._spawn(node)

    def _spawn(self, node: Node) -> None:
        """Boot the node's systemd in its overlay and network namespace (both outlive a reboot)."""
        console = open(Path(node.workdir) / "console.log", "ab")  # noqa: SIM115  # lives as long as the node
        process = subprocess.Popen(
            # CAP_NET_ADMIN acts only inside the node's own network namespace (its firewall).
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
             "--capability=CAP_NET_ADMIN",
             f"--directory={node.root}", f"--machine={node.machine}",
             f"--network-namespace-path=/run/netns/{node.netns}", "--console=passive"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()
        self._processes.append(process)
        node.pid = process.pid
        self._save()

    def reboot(self, name: str) -> str:
        """Power-cycle one node: an orderly poweroff of its systemd, then a fresh boot on the
        same disk and address; returns once SSH answers again (the drill times the service)."""
        node = next(n for n in self.state.nodes if n.name == name)
        _stop_container(node.pid)
        self._spawn(node)
        self._wait_for_ssh(node)
        return f"systemd-nspawn poweroff and boot of {name}"

    def _personalise(self, node: Node) -> None:
        root = node.root
        (root / "etc/hostname").write_text(f"{node.name}\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {node.name}\n")
        (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())

    def _wait_for_ssh(self, node: Node) -> None:
        def booted() -> bool:
            answer = self.ssh(node, "systemctl is-system-running --wait", check=False, timeout=30)
            return answer.stdout.strip() in {"running", "degraded"}

        try:
            wait_until(booted, timeout=self.boot_timeout, what=f"{node.name} answering SSH", interval=0.3)
        except WaitTimeout:
            log = (Path(node.workdir) / "console.log").read_text(errors="replace")[-2000:]
            raise FleetError(f"{node.name} did not answer SSH within {self.boot_timeout:.0f}s:\n{log}") from None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        teardown(self.state)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "fleet.json").write_text(json.dumps(asdict(self.state), indent=2))

    # -- using the nodes -------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return self.state.nodes

    def ssh_args(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]

    def ssh(self, node: Node, command: str, *, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(["ssh", *self.ssh_args(), f"root@{node.address}", command],
                                    capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return subprocess.CompletedProcess([command], 124, "", "timeout")
        if check and result.returncode != 0:
            raise FleetError(f"{node.name}: {command!r} failed ({result.returncode}): "
                             f"{result.stderr.strip() or result.stdout.strip()}")
        return result

    def write_inventory(self, path: Path, group: str = "edge",
                        host_vars: dict[str, dict[str, object]] | None = None, *,
                        engine: str | None = None,
                        group_vars: dict[str, object] | None = None) -> Path:
        """``engine="fake"`` is the scale-test node profile (triptyque_engine_device: the real
        gateway and units in front of bench/fake_engine.py, no vLLM wheels in the bundle)."""
        common = " ".join(f"'{a}'" if " " in a else a for a in self.ssh_args()[2:])
        profile = {"triptyque_engine_device": engine} if engine else {}
        hosts = {
            node.name: {"ansible_host": node.address, **profile,
                        **(host_vars or {}).get(node.name, {})}
            for node in self.nodes
        }
        inventory = {group: {
            "hosts": hosts,
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": common,
                "ansible_python_interpreter": "/usr/bin/python3",
                **(group_vars or {}),
            },
        }}
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path


    def disconnect(self, name: str) -> None:
        """Take a node off the network, as a site that went offline: it keeps running until
        ``reconnect``. The node's end of the veth goes down, not the host's: the host keeps its
        route to the node's subnet (on a link without carrier), so connections to the node fail
        here instead of leaving this machine by its default route."""
        node = self.node(name)
        _run("ip", "-n", node.netns, "link", "set", "host0", "down")

    def reconnect(self, name: str) -> None:
        node = self.node(name)
        _run("ip", "-n", node.netns, "link", "set", "host0", "up")
        # The node's connected route returns with the link; SSH answers again.
        self._wait_for_ssh(node)

    def node(self, name: str) -> Node:
        found = [n for n in self.nodes if n.name == name]
        if not found:
            raise FleetError(f"no node {name!r} in fleet {self.run_id}")
        return found[0]

    def memory(self, name: str) -> int:
        """Bytes the node's processes hold (proportional set size: shared pages split between
        the processes that map them), systemd-nspawn included."""
        try:
            root = psutil.Process(self.node(name).pid)
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_full_info().pss
            return total
        except psutil.Error:
            return 0


def _ensure_inotify_instances(needed: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int(INOTIFY_INSTANCES.read_text()) < needed:
            INOTIFY_INSTANCES.write_text(f"{needed}\n")


def _free_octets(count: int) -> list[int]:
    """Third octets of 10.213.x.0/30 subnets not already on a host link."""
    used = _run("ip", "-o", "-4", "addr", "show").stdout
    free = [o for o in range(1, 255) if f" {SUBNET_PREFIX}.{o}." not in used]
    if len(free) < count:
        raise FleetError(f"no free {SUBNET_PREFIX}.x.0/30 subnets left for {count} nodes")
    return free[:count]


def teardown(state: FleetState) -> None:
    """Undo what ``state`` records, newest first; every step tolerates a half-made node."""
    for node in reversed(state.nodes):
        if node.pid:
            _stop_container(node.pid)
        if node.mounted and _run("umount", str(node.root), check=False).returncode != 0:
            _run("umount", "--lazy", str(node.root), check=False)
        _run("ip", "link", "del", node.host_link, check=False)
        _run("ip", "netns", "del", node.netns, check=False)
        shutil.rmtree(node.workdir, ignore_errors=True)


def _stop_container(pid: int, grace: float = 20.0) -> None:
    # nspawn turns SIGTERM into an orderly poweroff of the container's systemd.
    if not _is_nspawn(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        # Killing the container's init ends its whole PID namespace; nspawn follows.
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _is_nspawn(pid: int) -> bool:
    try:
        return any("systemd-nspawn" in part for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def reap_stale() -> list[str]:
    """Tear down fleets whose owning process died without cleaning up."""
    reaped: list[str] = []
    if not RUN_ROOT.is_dir():
        return reaped
    for state_file in RUN_ROOT.glob("*/fleet.json"):
        data = json.loads(state_file.read_text())
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(data["owner_pid"], 0)
            continue
        state = FleetState(data["run_id"], data["owner_pid"],
                           [Node(**node) for node in data["nodes"]])
        teardown(state)
        shutil.rmtree(state_file.parent, ignore_errors=True)
        reaped.append(state.run_id)
    return reaped


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=timeout):
        return True
    return False


@contextlib.contextmanager
def fleet(size: int, cache_dir: Path) -> Iterator[Fleet]:
    with Fleet(size, cache_dir=cache_dir) as running:
        yield running


def main() -> None:
    """Keep a fleet up by hand: python -m tests.support.fleet --nodes 2 --inventory inv.yml."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.fleet")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--firewalled", type=int, nargs="*", default=[1])
    parser.add_argument("--cache", type=Path, default=Path(".cache/triptyque"))
    args = parser.parse_args()
    with Fleet(args.nodes, cache_dir=args.cache, firewalled=tuple(args.firewalled)) as running:
        running.write_inventory(args.inventory)
        print(f"fleet {running.run_id} up; inventory {args.inventory}; Ctrl-C or SIGTERM stops it",
              flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
