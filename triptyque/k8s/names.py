"""Object names and labels for one service in one namespace, decided in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from triptyque import __version__

Component = Literal["engine", "gateway", "killswitch"]

# The port name every Service and probe refers to.
HTTP = "http"
# The gateway's metrics listener: never in the public Service, only in its metrics Service.
METRICS = "metrics"
# On the gateways' metrics Service only: what their ServiceMonitor selects.
LISTENER_LABEL = "triptyque.io/listener"
# Engine mounts.
CACHE_DIR = "/cache"
MODELS_DIR = "/models"
# Gateway settings mount.
SETTINGS_DIR = "/etc/triptyque"
SETTINGS_FILE = "settings.json"
# Keys of the kill-switch ConfigMap (read by triptyque.gateway.state_k8s).
# The engine and gateway run as this unprivileged user (above 10000: no clash with host users).
RUN_AS = 10001


@dataclass(frozen=True)
class Names:
    app: str
    namespace: str

    @property
    def engine(self) -> str:
        return f"{self.app}-engine"

    @property
    def gateway(self) -> str:
        return f"{self.app}-gateway"

    @property
    def gateway_metrics(self) -> str:
        return f"{self.app}-gateway-metrics"

    @property
    def gateway_settings(self) -> str:
        return f"{self.app}-gateway-settings"

    @property
    def killswitch(self) -> str:
        return f"{self.app}-killswitch"

    @property
    def model_cache(self) -> str:
        return f"{self.app}-model-cache"

    @property
    def model_files(self) -> str:
        return f"{self.app}-model-files"

    def selector(self, component: Component) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.app, "app.kubernetes.io/component": component}

    def labels(self, component: Component) -> dict[str, str]:
        return {
            **self.selector(component),
            "app.kubernetes.io/part-of": "triptyque",
            "app.kubernetes.io/managed-by": "triptyque",
            "app.kubernetes.io/version": __version__,
        }

    def metadata(
        self, name: str, component: Component, *, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name, "namespace": self.namespace, "labels": self.labels(component),
        }
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta
