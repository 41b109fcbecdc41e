"""``triptyque evidence build``: gather, check, list, sign and pack one target's evidence.

The bundle's files (all paths relative, no absolute path of this machine):

    MANIFEST.json            every other file's SHA-256 and size, sorted; the build's facts
    SIGNATURE.json           Ed25519 signature of MANIFEST.json's bytes, and the public key
    spec/                    the spec file as given, its hash and the spec resolved for the target
    source/git.json          the git revision and whether the tree matched it
    dependencies/            requirements.lock and a CycloneDX SBOM of this Python environment
    images/                  image digests, and the SBOM of each image built here
    rendered/                manifests, rule files, scrape configs, extra vars, promtool tests
    checks/                  policy pack, kubernetes-validate, promtool, ansible-lint (JSON, versions)
    audit/                   the kill-switch audit chain, the state, and whether they hold
    ledger/entries.json      the ledger's rows for this target and revision
    bench/RESULTS.md         the latest benchmark table
"""

from __future__ import annotations

import datetime
import os
import platform as platform_module
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triptyque import __version__
from triptyque.evidence import audit, checks, rendered, signing, sources
from triptyque.evidence.errors import EvidenceError
from triptyque.evidence.layout import MANIFEST, SIGNATURE, manifest, sha256, to_json, write_folder, write_tar
from triptyque.kinds import kind_of
from triptyque.spec import load_spec


@dataclass(frozen=True)
class Bundle:
    folder: Path
    archive: Path
    files: int
    fingerprint: str
    revision: str
    clean: bool
    notes: list[str] = field(default_factory=list)


def bundle_name(target: str) -> str:
    return f"evidence-{target}"


def _created() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (then two builds are byte for byte the same)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch and epoch.isdigit()
              else datetime.datetime.now(datetime.UTC))
    return moment.isoformat(timespec="seconds")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def gather(target: str, *, spec_path: Path, root: Path, state_dir: Path, cache: Path,
           work: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the bundle but the manifest and signature, and the build's facts."""
    try:
        kind = kind_of(target)
    except ValueError as exc:
        raise EvidenceError(str(exc)) from None
    spec = load_spec(spec_path, target=target)
    scrub = sources.scrubber(root, spec_path.parent, work, state_dir)
    revision = sources.revision(root)
    notes: list[str] = []
    files: dict[str, bytes] = {}

    spec_bytes = spec_path.read_bytes()
    files[f"spec/{spec_path.name}"] = spec_bytes
    files["spec/spec.json"] = sources.spec_record(target, spec_path, spec.spec_hash(),
                                                  scrub(spec.model_dump(mode="json")))
    files["source/git.json"] = to_json(revision.as_dict())

    lock = root / "requirements.lock"
    if lock.is_file():
        files["dependencies/requirements.lock"] = lock.read_bytes()
    else:
        notes.append("no requirements.lock in the checkout")
    sbom, about = sources.python_sbom(revision.committed_at)
    if sbom is not None:
        files["dependencies/python-environment.cdx.json"] = sbom
    else:
        notes.append(about)

    references = spec.images.model_dump(mode="json", exclude_none=True) if spec.images is not None else None
    image_summary, image_files = sources.images(references, cache)
    files["images/images.json"] = to_json(image_summary)
    files |= image_files
    if "note" in image_summary:
        notes.append(str(image_summary["note"]))

    artefacts, render_notes = rendered.render_all(target, spec, root, state_dir, work / "render", scrub)
    files |= artefacts
    notes += render_notes

    audit_files, audit_result = audit.collect(kind.platform, state_dir)
    files |= audit_files
    files[audit.RESULT] = to_json(audit_result)
    if audit.LOG in audit_files:
        found = audit.incidents_of(audit_files[audit.LOG])
        files[audit.INCIDENTS] = to_json({"incidents": found} if found is not None
                                         else {"error": "the audit log cannot be read as JSON lines"})

    ledger = sources.ledger_rows(sources.ledger_path(state_dir), target, revision.commit)
    files["ledger/entries.json"] = to_json(scrub(ledger))

    results = root / "bench" / "RESULTS.md"
    if results.is_file():
        files["bench/RESULTS.md"] = results.read_bytes()
    else:
        notes.append("no bench/RESULTS.md in the checkout")

    # The tools read the bundle's own files, from a folder laid out as the bundle is.
    materialised = work / "bundle"
    write_folder(materialised, files)
    files |= checks.run_checks(target, kind.platform, files, root, cache, materialised, scrub)

    facts = {
        "target": target, "platform": kind.platform,
        "revision": revision.commit, "clean": revision.clean,
        "spec": _relative(spec_path, root), "spec_hash": spec.spec_hash(), "spec_sha256": sha256(spec_bytes),
        "requirements_lock_sha256": sha256(files["dependencies/requirements.lock"])
        if "dependencies/requirements.lock" in files else None,
        "builder": {"triptyque": __version__, "python": platform_module.python_version()},
        "sbom": about, "notes": sorted(set(notes)),
    }
    return files, facts


def build_bundle(target: str, *, spec_path: Path, key_path: Path, out_dir: Path, state_dir: Path,
                 root: Path | None = None, cache: Path | None = None) -> Bundle:
    """Write ``out_dir/evidence-<target>/`` and ``out_dir/evidence-<target>.tar``, signed with the key."""
    from triptyque.images.tools import cache_root
    from triptyque.paths import project_root

    key = signing.load_private(key_path)  # before the slow part: a missing key fails at once
    root = root or project_root()
    cache = cache or cache_root()
    try:
        with tempfile.TemporaryDirectory(prefix="triptyque-evidence-") as tmp:
            files, facts = gather(target, spec_path=spec_path, root=root, state_dir=state_dir, cache=cache,
                                  work=Path(tmp))
    except OSError as exc:
        raise EvidenceError(f"cannot gather the evidence: {exc}") from None
    listed = manifest(files, {**facts, "created": _created()})
    signature = to_json(signing.sign(key, listed))
    everything = {**files, MANIFEST: listed, SIGNATURE: signature}
    name = bundle_name(target)
    folder, archive = out_dir / name, out_dir / f"{name}.tar"
    write_folder(folder, everything)
    write_tar(archive, name, everything)
    return Bundle(folder, archive, len(everything), signing.fingerprint(key.public_key()),
                  str(facts["revision"]), bool(facts["clean"]), list(facts["notes"]))
