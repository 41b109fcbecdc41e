"""``triptyque evidence verify BUNDLE``: the signature, every file's hash, the audit chain.

The first thing that does not match is named in one line: ``bad signature: ...``,
``missing file: PATH``, ``changed: PATH ...``, ``extra file: PATH`` or ``audit chain: ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.evidence import audit, signing
from triptyque.evidence.errors import EvidenceError
from triptyque.evidence.layout import FORMAT, MANIFEST, RESERVED, SIGNATURE, read_bundle, sha256


@dataclass(frozen=True)
class Checked:
    files: int
    fingerprint: str
    target: str
    revision: str
    clean: bool
    created: str
    audit: str


def _json(files: dict[str, bytes], name: str, what: str) -> Any:
    try:
        return json.loads(files[name])
    except (ValueError, UnicodeDecodeError):
        raise EvidenceError(f"{what}: {name} is not JSON") from None


def _audit(files: dict[str, bytes]) -> str:
    found = audit.check(files.get(audit.LOG), files.get(audit.STATE))
    recorded = _json(files, audit.RESULT, "changed") if audit.RESULT in files else None
    if found.get("ok") is False:
        raise EvidenceError(f"audit chain: {found['error']}")
    if isinstance(recorded, dict) and recorded.get("ok") != found.get("ok"):
        raise EvidenceError(f"audit chain: {audit.RESULT} says ok={recorded.get('ok')} but the chain "
                            f"in the bundle gives ok={found.get('ok')}")
    if found.get("ok"):
        return f"audit chain intact ({found['entries']} entries, {found['state']})"
    return "no audit chain in the bundle"


def verify_bundle(path: Path, trusted: Path | None = None) -> Checked:
    """Check a bundle folder or archive; EvidenceError names the first mismatch."""
    trusted_key = signing.load_public(trusted) if trusted is not None else None
    files = read_bundle(path)
    for name in (MANIFEST, SIGNATURE):
        if name not in files:
            raise EvidenceError(f"missing file: {name}")
    fingerprint = signing.check(_json(files, SIGNATURE, "bad signature"), files[MANIFEST], trusted_key)
    listed = _json(files, MANIFEST, "bad signature")
    if not isinstance(listed, dict) or listed.get("format") != FORMAT or not isinstance(listed.get("files"), list):
        raise EvidenceError(f"changed: {MANIFEST} is not a format-{FORMAT} evidence manifest")
    names = set()
    for entry in listed["files"]:
        name = str(entry.get("path"))
        names.add(name)
        if name not in files:
            raise EvidenceError(f"missing file: {name}")
        actual = sha256(files[name])
        if actual != entry.get("sha256"):
            raise EvidenceError(f"changed: {name} (SHA-256 {actual[:16]}..., the manifest says "
                                f"{str(entry.get('sha256'))[:16]}...)")
    extra = sorted(set(files) - names - RESERVED)
    if extra:
        raise EvidenceError(f"extra file: {extra[0]} is not in the manifest")
    return Checked(files=len(names), fingerprint=fingerprint, target=str(listed.get("target")),
                   revision=str(listed.get("revision")), clean=bool(listed.get("clean")),
                   created=str(listed.get("created")), audit=_audit(files))
