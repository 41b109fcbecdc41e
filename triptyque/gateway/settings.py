"""What one gateway process needs to run, rendered from the service spec.

Every target writes one of these as JSON next to the gateway (a file on local and
edge, a ConfigMap on Kubernetes) and starts ``python -m triptyque.gateway --settings FILE``.
It holds key *hashes* only: the keys themselves never reach the gateway's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triptyque import __version__
from triptyque.spec import KillSwitch, Limits, ServiceSpec

# The kill switch's files in a file-backed gateway's state folder.
STATE_FILE, AUDIT_FILE = "killswitch.json", "audit.jsonl"
# On Kubernetes, the audit chain's older entries move to numbered immutable ConfigMaps
# (gateway.state_k8s); the gateways' Role names each one it may read back.
AUDIT_ARCHIVES = 100


def audit_archive_name(configmap: str, number: int) -> str:
    return f"{configmap}-audit-{number:03d}"


class ClusterState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    configmap: str


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    # A second listener that serves /metrics alone; the API port then answers 404 there. None:
    # /metrics on the API port (local, and edge where the firewall admits only the scrapers).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    upstream_url: str
    served_model: str
    api_keys: dict[str, str] = Field(description="key name -> hex SHA-256 of the key")
    admin_keys: dict[str, str]
    limits: Limits
    kill_switch: KillSwitch
    state_backend: Literal["file", "kubernetes"] = "file"
    state_path: Path = Path("state/killswitch.json")
    audit_path: Path = Path("state/audit.jsonl")
    # The audit chain's HMAC key (``triptyque.keys.audit_key``), outside the state folder; created
    # on first start. None: the chain is hashed but not signed.
    audit_key_path: Path | None = None
    cluster: ClusterState | None = None
    # Client headers passed to the engine besides the gateway's allowlist (``proxy.FORWARDED``),
    # lower case: a test engine's controls, a tracing header of your own.
    forward_headers: tuple[str, ...] = ()
    target: str = "local"
    spec_hash: str = ""
    version: str = __version__
    log_json: bool = True

    @model_validator(mode="after")
    def _two_ports(self) -> GatewaySettings:
        if self.metrics_port == self.port:
            raise ValueError(f"metrics_port must differ from port ({self.port}); leave it out to serve "
                             "/metrics on the API port")
        return self


def settings_from_spec(
    spec: ServiceSpec,
    *,
    upstream_url: str,
    state_dir: Path,
    extra_api_keys: dict[str, str] | None = None,
    extra_admin_keys: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> GatewaySettings:
    """The file-backed settings used by the local and edge targets."""
    return GatewaySettings(
        host=host,
        port=spec.gateway.port,
        upstream_url=upstream_url,
        served_model=spec.model.served_name,
        api_keys={name: k.sha256 for name, k in spec.gateway.api_keys.items()} | (extra_api_keys or {}),
        admin_keys={name: k.sha256 for name, k in spec.gateway.admin_keys.items()}
        | (extra_admin_keys or {}),
        limits=spec.gateway.limits,
        kill_switch=spec.kill_switch,
        state_path=state_dir / STATE_FILE,
        audit_path=state_dir / AUDIT_FILE,
        target=spec.target or "local",
        spec_hash=spec.spec_hash(),
    )
