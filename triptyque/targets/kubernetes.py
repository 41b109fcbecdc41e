"""The Kubernetes targets (onprem, cloud): a Pulumi stack (``pulumi.py``) and the
cluster it deploys to (``cluster.py``) for kill, resume, status and scaling."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from triptyque.errors import StateError, TargetError
from triptyque.gateway import kube
from triptyque.k8s.render import names_for
from triptyque.spec import ServiceSpec
from triptyque.targets.cluster import Cluster
from triptyque.targets.hooks import DrillHooks
from triptyque.targets.pulumi import PulumiStack, StackFactory, Which, automation_stack
from triptyque.types import Endpoint, NodeReport, Progress

KubeTarget = Literal["onprem", "cloud"]


class KubernetesTarget(PulumiStack):
    def __init__(
        self,
        name: KubeTarget,
        spec: ServiceSpec,
        *,
        state_root: Path,
        root: Path | None = None,
        env: Mapping[str, str] | None = None,
        configuration: Any | None = None,
        which: Which = shutil.which,
        stack_factory: StackFactory = automation_stack,
    ) -> None:
        super().__init__(name, spec, root=root, env=env, which=which, stack_factory=stack_factory)
        self.state_dir = state_root / name
        self.names = names_for(spec, self.config)
        self._configuration = configuration
        self._cluster: Cluster | None = None

    @property
    def kubeconfig_file(self) -> Path:
        return self.state_dir / "kubeconfig"

    def up(self, progress: Progress) -> list[Endpoint]:
        outputs = self._pulumi_up(progress)
        if outputs.get("kubeconfig"):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.kubeconfig_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(str(outputs["kubeconfig"]))
            progress(f"kubeconfig of the {self.name} cluster saved to {self.kubeconfig_file}")
        return [Endpoint("gateway", str(outputs.get("gatewayUrl", "")))]

    # ---- the cluster side: kill, resume, status -------------------------------------------

    def drill_hooks(self) -> DrillHooks:
        raise TargetError(f"drills cannot run on {self.name} here: Kubernetes drills are modelled "
                          "(see `triptyque compare`)")

    def cluster(self) -> Cluster:
        if self._cluster is None:
            configuration = self._configuration
            try:
                if configuration is not None:
                    pass
                elif self.name == "onprem":
                    configuration = kube.from_kubeconfig(self.config.kube_context)
                elif self.kubeconfig_file.is_file():
                    configuration = kube.from_kubeconfig(None, str(self.kubeconfig_file))
                else:
                    raise TargetError(
                        f"no kubeconfig for the cloud cluster at {self.kubeconfig_file}: run "
                        "`triptyque up cloud` (it saves it there), or `pulumi stack output "
                        f"kubeconfig --show-secrets -s cloud > {self.kubeconfig_file}`"
                    )
            except StateError as exc:
                raise TargetError(str(exc)) from None
            self._cluster = Cluster(configuration, self.names.namespace, self.name)
        return self._cluster

    def _confirm(self, engaged: bool | None, started: float) -> list[NodeReport]:
        return self.cluster().gateway_reports(self.names.selector("gateway"), self.spec.gateway.port,
                                              engaged, started)

    def status(self) -> list[NodeReport]:
        return self._confirm(None, time.perf_counter())

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        started = time.perf_counter()
        asyncio.run(self.cluster().decide(self.names.killswitch, "kill", operator, reason))
        reports = self._confirm(True, started)
        if hard:
            if not self.spec.kill_switch.stop_engine_on_hard_kill:
                raise TargetError("--hard: kill_switch.stop_engine_on_hard_kill is false in the spec; "
                                  "the gateways are stopped, the engine keeps its GPUs")
            reports.append(self.cluster().scale(self.names.engine, 0))
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        started = time.perf_counter()
        engine = self.cluster().scale(self.names.engine, self.config.engine.replicas)
        asyncio.run(self.cluster().decide(self.names.killswitch, "resume", operator, reason))
        return [*self._confirm(False, started), engine]
