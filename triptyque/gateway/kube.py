"""How triptyque reaches a Kubernetes API server: the official client's configuration.

The gateway's cluster backend and the Kubernetes targets use the official
``kubernetes`` client, so its authentication (in-cluster service-account tokens that
rotate, kubeconfig exec plugins and OIDC), TLS settings and error types apply. This
module only builds a ``Configuration``; the callers make the API objects.
"""

from __future__ import annotations

import json
import os
from typing import Any

from triptyque.errors import StateError


def _client() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise StateError("the kubernetes package is missing: pip install 'triptyque[k8s]'") from None
    return kubernetes


def in_cluster() -> Any:
    """The pod's service account (token and CA mounted by the kubelet)."""
    kubernetes = _client()
    from kubernetes.config.config_exception import ConfigException

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        raise StateError(
            f"not running in a Kubernetes pod ({exc}); the kubernetes state backend needs the "
            "pod's service account"
        ) from None
    return configuration


def from_kubeconfig(context: str | None, config_file: str | None = None) -> Any:
    """Credentials from a kubeconfig (exec plugins and OIDC included)."""
    kubernetes = _client()
    from kubernetes.config.config_exception import ConfigException

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(config_file=config_file, context=context,
                                           client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        where = config_file or os.environ.get("KUBECONFIG", "~/.kube/config")
        raise StateError(f"cannot use kubeconfig {where} (context {context}): {exc}") from None
    return configuration


def for_server(server: str, token: str, *, ca_file: str | None = None) -> Any:
    """A server URL and a bearer token (tests, and scripts with a token at hand)."""
    configuration = _client().client.Configuration(host=server)
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.ssl_ca_cert = ca_file
    return configuration


def api_message(error: Any) -> str:
    """The API server's own message from an ``ApiException``."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(error.reason or error)[:200]
