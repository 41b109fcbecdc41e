"""The target's rendered artefacts, by the project's own renderers, as bundle files.

Kubernetes targets: the manifests ``triptyque render`` writes (``rendered/kubernetes/``).
The local target: the Prometheus and Alertmanager configs and rules it starts with
(``rendered/local/``). Edge targets: their rule files and, when the offline bundle is
built, the playbook's extra vars (``rendered/edge/``). Every target: the generated
monitoring files with their promtool tests (``rendered/monitoring/``). Paths of this
machine are written as ``.``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from triptyque.kinds import kind_of
from triptyque.spec import ServiceSpec


def _texts(folder: Path, prefix: str, scrub: Any) -> dict[str, bytes]:
    """The files under ``folder``; a path into it is written relative to it (``./rules/...``)."""
    here = sorted({str(folder.resolve()), str(folder)}, key=len, reverse=True)

    def text(path: Path) -> str:
        value = path.read_text(encoding="utf-8")
        for name in here:
            value = value.replace(name, ".")
        return str(scrub(value))

    return {f"{prefix}/{p.relative_to(folder).as_posix()}": text(p).encode()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def kubernetes(target: str, spec: ServiceSpec, root: Path, work: Path, scrub: Any) -> dict[str, bytes]:
    from triptyque.k8s.render import render_target

    out = work / "kubernetes"
    render_target(target, spec, out, root)
    return _texts(out, "rendered/kubernetes", scrub)


def local(spec: ServiceSpec, work: Path, scrub: Any) -> dict[str, bytes]:
    from triptyque.monitoring.local import render
    from triptyque.targets.local import LocalPorts

    ports = LocalPorts()
    out = work / "local"
    render(spec, out, gateway=f"127.0.0.1:{spec.gateway.port}", engine=f"127.0.0.1:{spec.engine.port}",
           alertmanager=f"127.0.0.1:{ports.alertmanager}", webhook=f"127.0.0.1:{ports.webhook}")
    return _texts(out, "rendered/local", scrub)


def edge(spec: ServiceSpec, state_dir: Path, scrub: Any) -> tuple[dict[str, bytes], list[str]]:
    from triptyque.edge.bundle import Manifest
    from triptyque.edge.render import render_vars
    from triptyque.errors import TargetError
    from triptyque.monitoring import rulefiles

    files = {f"rendered/edge/rules/{name}": text.encode()
             for name, text in rulefiles.documents(spec, "edge").items()}
    bundle = state_dir / "edge" / "bundle"
    try:
        manifest = Manifest.load(bundle)
    except TargetError:
        return files, ["edge: no offline bundle built (`triptyque bundle`): the playbook's extra vars "
                       "name its archives, so they are not rendered"]
    variables = render_vars(spec, manifest, bundle_dir=bundle, api_key_hashes={}, admin_key_hashes={})
    files["rendered/edge/extravars.json"] = (json.dumps(scrub(variables), indent=2, sort_keys=True) + "\n").encode()
    return files, ["edge: extra vars without the per-inventory keys (kept beside the inventory)"]


def monitoring(spec: ServiceSpec) -> dict[str, bytes]:
    from triptyque.monitoring.generate import documents

    return {f"rendered/{path.as_posix()}": text.encode() for path, text in sorted(documents(spec).items())}


def render_all(target: str, spec: ServiceSpec, root: Path, state_dir: Path, work: Path,
               scrub: Any) -> tuple[dict[str, bytes], list[str]]:
    """Every rendered file of the target, and notes on what could not be rendered here."""
    platform = kind_of(target).platform
    notes: list[str] = []
    files = monitoring(spec)
    if platform == "kubernetes":
        files |= kubernetes(target, spec, root, work, scrub)
    elif platform == "local":
        files |= local(spec, work, scrub)
    else:
        found, notes = edge(spec, state_dir, scrub)
        files |= found
    return files, notes
