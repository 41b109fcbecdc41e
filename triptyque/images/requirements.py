"""The gateway's dependencies: the closure of the package's own, pinned by requirements.lock.

The image gets what the gateway imports, not the whole lock (no vLLM, torch, Pulumi,
Ansible or test tools): the project's ``dependencies`` plus the official Kubernetes client
that the cluster state backend (``triptyque.gateway.state_k8s``) uses in a pod. Each
requirement's own requirements are read from the installed distributions' metadata and
their markers evaluated for this interpreter (the image runs the same Python minor and
platform); every version comes from the lock.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from triptyque.images.tools import ImageError

# Beyond [project].dependencies: imported by the gateway in a pod (the ConfigMap backend).
GATEWAY_EXTRA = ("kubernetes",)


def read_lock(lock: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as locked, version)."""
    pins: dict[str, tuple[str, str]] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "==" not in line:
            continue
        name, version = line.split("==", 1)
        pins[canonicalize_name(name)] = (name.strip(), version.strip())
    return pins


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = {key: str(value) for key, value in default_environment().items()}
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras or {""})


def gateway_requirements(root: Path) -> list[tuple[str, str]]:
    """(name, version) of every distribution the gateway needs, sorted, pinned by the lock."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = read_lock(root / "requirements.lock")
    pending = [Requirement(text) for text in (*project["dependencies"], *GATEWAY_EXTRA)]
    extras_of: dict[str, set[str]] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - extras_of.get(name, set())
        if name in extras_of and not new_extras:
            continue
        extras_of.setdefault(name, set()).update(requirement.extras)
        if name not in pins:
            raise ImageError(f"{requirement.name} is needed by the gateway but not pinned in requirements.lock")
        try:
            requires = metadata.requires(pins[name][0]) or []
        except metadata.PackageNotFoundError:
            raise ImageError(f"{requirement.name} is not installed here: run `make venv` first") from None
        for text in requires:
            child = Requirement(text)
            if _wanted(child, extras_of[name]):
                pending.append(child)
    return sorted((pins[name][0], pins[name][1]) for name in extras_of)
