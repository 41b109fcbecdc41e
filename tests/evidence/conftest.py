"""A clean checkout to build evidence from, a signing key, a state folder with history,
and one bundle per target built once for the session.

The checkout is a copy of what the evidence reads (stack files, spec, charts, lock file,
benchmark table) committed in its own git repository, so "a clean revision" holds
whatever the working tree of the project looks like. The spec carries test digests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT
from triptyque.burden.ledger import Ledger
from triptyque.evidence import Bundle, build_bundle, generate
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.settings import AUDIT_FILE, STATE_FILE
from triptyque.gateway.state import FileStateStore, KillState
from triptyque.keys import hash_key

ENGINE_IMAGE = "docker.io/vllm/vllm-openai:v0.32.0@sha256:" + "1" * 64
GATEWAY_IMAGE = "ghcr.io/triptyque/gateway:0.1.0@sha256:" + "2" * 64
COPIED = ("Pulumi.yaml", "Pulumi.onprem.yaml", "charts", "requirements.lock", "bench/RESULTS.md", "serving")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_SYSTEM": os.devnull}


def git(folder: Path, *argv: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *argv], capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    for name in COPIED:
        source, target = ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    spec = root / "serving" / "service.yaml"
    raw = yaml.safe_load(spec.read_text(encoding="utf-8"))
    raw["images"] = {"engine": ENGINE_IMAGE, "gateway": GATEWAY_IMAGE}
    raw["gateway"]["api_keys"] = {"app": {"sha256": hash_key("tq-evidence-app")}}
    raw["gateway"]["admin_keys"] = {"ops": {"sha256": hash_key("tq-evidence-ops")}}
    spec.write_text(yaml.safe_dump(raw), encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "evidence test checkout")
    return root


@pytest.fixture(scope="session")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("keys") / "evidence.key").private


IMAGE_SBOM = b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}\n'


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image cache where `triptyque image build` recorded the gateway image of the spec."""
    root = tmp_path_factory.mktemp("cache")
    home = root / "images" / "gateway-0123456789abcdef"
    home.mkdir(parents=True)
    (home / "built.json").write_text(json.dumps({
        "component": "gateway", "repository": "ghcr.io/triptyque/gateway", "tag": "0.1.0",
        "digest": GATEWAY_IMAGE.split("@", 1)[1], "key": "0123456789abcdef", "home": str(home),
        "local": "localhost/triptyque/gateway:0123456789abcdef", "revision": "unknown",
        "spec_hash": "0" * 16, "seconds": 12.5}))
    (home / "sbom.cdx.json").write_bytes(IMAGE_SBOM)
    return root


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory, checkout: Path) -> Path:
    """A kill and a resume on the local target, and ledger rows of two revisions and two targets."""
    state = tmp_path_factory.mktemp("state")
    folder = state / "local" / "state"
    log = AuditLog(folder / AUDIT_FILE)
    for action in ("kill", "resume"):
        entry = log.append(action=action, operator="ops", reason=f"evidence test {action}", source="cli",
                           changed=True)
    FileStateStore(folder / STATE_FILE).save(KillState(
        engaged=False, operator="ops", reason="evidence test resume", changed_at=entry["ts"],
        audit_head=entry["hash"], audit_seq=entry["seq"]))
    head = git(checkout, "rev-parse", "HEAD")
    ledger = Ledger(state / "ledger.sqlite")
    ledger.record("kill", "kill", target="local", outcome="ok", seconds=0.01, revision=head)
    ledger.record("resume", "resume", target="local", outcome="ok", seconds=0.02, revision=head + "+dirty")
    ledger.record("kill", "kill", target="local", outcome="ok", seconds=0.03, revision="f" * 40)
    ledger.record("deploy", "deploy", target="onprem", outcome="ok", seconds=1.0, revision=head)
    return state


def build(target: str, out: Path, checkout: Path, key: Path, state_dir: Path, cache: Path) -> Bundle:
    return build_bundle(target, spec_path=checkout / "serving" / "service.yaml", key_path=key, out_dir=out,
                        state_dir=state_dir, root=checkout, cache=cache)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, checkout: Path, key: Path, state_dir: Path,
            cache: Path) -> dict[str, Bundle]:
    out = tmp_path_factory.mktemp("bundles")
    return {target: build(target, out, checkout, key, state_dir, cache) for target in ("local", "onprem")}
