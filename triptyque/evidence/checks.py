"""The checks an auditor asks for, run over the bundle's own rendered files.

Each result is one JSON document: the tool, its version, the command (paths relative to
the bundle), whether it passed, and its findings. Tools run in a folder holding the
bundle's files, so what they report names bundle paths. A result depends only on the
tool's version and the files it read, so it is kept in the cache under the hash of
both: a second build of the same revision reads it back instead of waiting again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from triptyque.evidence.layout import sha256

Result = dict[str, Any]
CUSTOM_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")  # the oldest and newest schemas kubernetes-validate bundles


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def not_run(tool: str, why: str) -> Result:
    return {"tool": tool, "ran": False, "passed": None, "why": why}


def memo(cache: Path, key_parts: list[Any], compute: Callable[[], Result]) -> Result:
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    path = cache / "evidence" / "checks" / f"{key}.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(found, dict):
            return found
    except (OSError, ValueError):
        pass
    result = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
        partial.write_text(json.dumps(result, sort_keys=True), encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return result


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


# ---- the CrossGuard policy pack ------------------------------------------------------------

def _pulumi_type(manifest: Mapping[str, Any]) -> str:
    api = str(manifest.get("apiVersion", ""))
    group_version = api if "/" in api else f"core/{api}"
    return f"kubernetes:{group_version}:{manifest.get('kind')}"


def _rules(root: Path) -> Any:
    try:
        return importlib.import_module("stacks.policies.rules")
    except ImportError:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module("stacks.policies.rules")


def policy_pack(target: str, files: Mapping[str, bytes], root: Path) -> Result:
    """Every rule of ``stacks/policies`` over every rendered Kubernetes object, as the pack
    checks what Pulumi registers (the same objects: the stack and ``render`` share them)."""
    manifests = {name: yaml.safe_load(data) for name, data in sorted(files.items())
                 if name.startswith("rendered/kubernetes/") and name.endswith(".yaml")}
    if not manifests:
        return not_run("policy-pack", "no Kubernetes resources: the pack guards what the Kubernetes and "
                                      "cloud stacks create, and this target creates none")
    try:
        module = _rules(root)
    except ImportError as exc:
        return not_run("policy-pack", f"the pack cannot be loaded here: {exc}")
    pack = root / "stacks" / "policies" / "rules.py"
    results = []
    for rule in module.RULES:
        violations = []
        for name, manifest in manifests.items():
            kind = _pulumi_type(manifest)
            urn = f"urn:pulumi:{target}::triptyque::{kind}::{manifest['metadata']['name']}"
            violations += [{"file": name, "message": message}
                           for message in rule.check(module.Seen(kind, urn, manifest, {}))]
        results.append({"policy": rule.name, "description": rule.description, "violations": violations})
    return {"tool": "policy-pack", "ran": True, "version": _version("pulumi-policy"),
            "pack": "stacks/policies/rules.py", "pack_sha256": sha256(pack.read_bytes()) if pack.is_file() else None,
            "resources": sorted(manifests), "passed": all(not r["violations"] for r in results),
            "results": results}


# ---- kubernetes-validate ---------------------------------------------------------------------

def kubernetes_validate(files: Mapping[str, bytes], folder: Path, cache: Path) -> Result:
    tool = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    version = _version("kubernetes-validate")
    names = sorted(n for n in files if n.startswith("rendered/kubernetes/") and n.endswith(".yaml"))
    if not names:
        return not_run("kubernetes-validate", "no Kubernetes manifests for this target")
    if version is None or not Path(tool).exists():
        return not_run("kubernetes-validate", "not installed here (pip install -e '.[k8s]')")
    core = [n for n in names if yaml.safe_load(files[n]).get("kind") not in CUSTOM_KINDS]
    custom = [n for n in names if n not in core]

    def compute() -> Result:
        runs = []
        for k8s in KUBERNETES_VERSIONS:
            argv = ["kubernetes-validate", "--strict", "-k", k8s, *core]
            done = _run([tool, *argv[1:]], folder, 300)
            runs.append({"kubernetes": k8s, "command": argv, "exit_code": done.returncode,
                         "output": _lines(done.stdout + done.stderr)})
        return {"tool": "kubernetes-validate", "ran": True, "version": version, "strict": True,
                "passed": all(r["exit_code"] == 0 for r in runs), "runs": runs,
                "not_validated": {n: "a Prometheus operator custom resource: kubernetes-validate has no schema "
                                     "for it" for n in custom}}

    return memo(cache, ["kubernetes-validate", version, {n: sha256(files[n]) for n in core}], compute)


# ---- checkov ---------------------------------------------------------------------------------

def _checkov_tool(root: Path) -> str | None:
    """checkov's own venv (tests/k8s/setup_checkov.sh) in the checkout or this package's, else PATH."""
    from triptyque.paths import project_root

    for checkout in (root, project_root(Path(__file__))):
        beside = checkout / ".venv-checkov" / "bin" / "checkov"
        if beside.exists():
            return str(beside)
    return shutil.which("checkov")


def checkov(files: Mapping[str, bytes], folder: Path, root: Path, cache: Path) -> Result:
    """checkov's Kubernetes checks over the manifests; skips carry their reason (an annotation)."""
    names = sorted(n for n in files if n.startswith("rendered/kubernetes/") and n.endswith(".yaml"))
    if not names:
        return not_run("checkov", "no Kubernetes manifests for this target")
    tool = _checkov_tool(root)
    if tool is None:
        return not_run("checkov", "not installed here (bash tests/k8s/setup_checkov.sh)")
    argv = ["checkov", "-d", "rendered/kubernetes", "--framework", "kubernetes", "--skip-download", "-o", "json"]

    def compute() -> Result:
        done = _run([tool, *argv[1:]], folder, 600)
        try:
            report = json.loads(done.stdout)
            if isinstance(report, list):
                report = report[0]
            results, summary = report["results"], report["summary"]
        except (ValueError, KeyError, IndexError, TypeError):
            return {"tool": "checkov", "ran": True, "version": None, "command": argv, "exit_code": done.returncode,
                    "passed": False, "output": _lines(done.stdout + done.stderr)[-40:]}

        def rows(kind: str) -> list[dict[str, Any]]:
            found = [{"check": c["check_id"], "name": c.get("check_name"), "resource": c.get("resource"),
                      "file": str(c.get("file_path", "")).lstrip("/"),
                      **({"reason": c["check_result"].get("suppress_comment")} if kind == "skipped_checks" else {})}
                     for c in results.get(kind, [])]
            return sorted(found, key=lambda r: (r["file"], str(r["resource"]), r["check"]))

        return {"tool": "checkov", "ran": True, "version": summary.get("checkov_version"), "command": argv,
                "exit_code": done.returncode, "passed": done.returncode == 0 and not results.get("failed_checks"),
                "summary": {k: summary.get(k) for k in ("passed", "failed", "skipped", "parsing_errors",
                                                        "resource_count")},
                "failed": rows("failed_checks"), "skipped": rows("skipped_checks"),
                "passed_checks": rows("passed_checks")}

    version = _run([tool, "--version"], folder, 120).stdout.strip()
    return memo(cache, ["checkov", version, {n: sha256(files[n]) for n in names}], compute)


# ---- promtool --------------------------------------------------------------------------------

def _promtool_version(tool: str) -> str:
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else "unknown"


def promtool(files: Mapping[str, bytes], folder: Path, cache: Path) -> Result:
    tool = shutil.which("promtool")
    if tool is None:
        return not_run("promtool", "promtool is not installed here (Debian package prometheus)")
    tests = sorted(n for n in files if n.startswith("rendered/monitoring/tests/") and n.endswith(".yaml"))
    rules = sorted(n for n in files if n.endswith((".rules.yaml", ".alerts.yaml")))
    tested = sorted({*tests, *(n for n in rules if n.startswith("rendered/monitoring/"))})
    version = _promtool_version(tool)

    def one(argv: list[str], inputs: list[str]) -> dict[str, Any]:
        def compute() -> Result:
            done = _run([tool, *argv[1:]], folder, 600)
            return {"command": argv, "exit_code": done.returncode, "output": _lines(done.stdout + done.stderr)}

        # Each run is kept on its own: the unit tests (the slow part) are the same for most targets.
        return memo(cache, ["promtool", version, argv, {n: sha256(files[n]) for n in inputs}], compute)

    runs = [one(["promtool", "test", "rules", *tests], tested)] if tests else []
    if rules:
        runs.append(one(["promtool", "check", "rules", *rules], rules))
    return {"tool": "promtool", "ran": True, "version": version,
            "passed": bool(runs) and all(r["exit_code"] == 0 for r in runs), "runs": runs}


def ansible_lint(platform: str, root: Path, cache: Path, scrub: Callable[[Any], Any]) -> Result:
    """ansible-lint's production profile over ``playbooks/`` (the repository's .ansible-lint), as JSON."""
    if platform != "edge":
        return not_run("ansible-lint", "no Ansible for this target")
    from triptyque.edge.runner import ansible_tool
    from triptyque.errors import MissingToolError

    version = _version("ansible-lint")
    try:
        tool = ansible_tool("ansible-lint")
    except MissingToolError as exc:
        return not_run("ansible-lint", str(exc))
    inputs = sorted(p for p in (root / "playbooks").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    config = root / ".ansible-lint"
    hashes = {p.relative_to(root).as_posix(): sha256(p.read_bytes()) for p in [*inputs, config] if p.is_file()}
    argv = ["ansible-lint", "--offline", "-f", "json", "playbooks"]

    def compute() -> Result:
        env = {**os.environ, "ANSIBLE_CONFIG": str(root / "playbooks" / "ansible.cfg"), "NO_COLOR": "1"}
        try:
            done = subprocess.run([tool, *argv[1:]], cwd=root, env=env, capture_output=True, text=True,
                                  timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return not_run("ansible-lint", "did not finish within 600 s")
        try:
            issues = json.loads(done.stdout or "[]")
        except ValueError:
            issues = _lines(done.stdout)
        summary = [line for line in _lines(done.stderr) if "profile" in line.lower() or "failed" in line.lower()]
        return {"tool": "ansible-lint", "ran": True, "version": version, "command": argv,
                "exit_code": done.returncode, "passed": done.returncode == 0, "issues": scrub(issues),
                "summary": [scrub(line) for line in summary]}

    return memo(cache, ["ansible-lint", version, hashes], compute)


def run_checks(target: str, platform: str, files: Mapping[str, bytes], root: Path, cache: Path,
               folder: Path, scrub: Callable[[Any], Any]) -> dict[str, bytes]:
    """``checks/<tool>.json`` for each check; ``folder`` holds the bundle's files already."""
    results = {
        "policy-pack": policy_pack(target, files, root),
        "kubernetes-validate": kubernetes_validate(files, folder, cache),
        "checkov": checkov(files, folder, root, cache),
        "promtool": promtool(files, folder, cache),
        "ansible-lint": ansible_lint(platform, root, cache, scrub),
    }
    return {f"checks/{name}.json": (json.dumps(result, indent=2, sort_keys=True) + "\n").encode()
            for name, result in results.items()}
